#include "attention.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace gfc {

namespace {

constexpr int BC = 64;  // keys per shared-memory tile
constexpr int kDefaultWarps = 4;  // 4 and 8 warps within 2 % on an H200 (build/cuda/eval_check)

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// d[4] += a[4] · b[2]: one m16n8k16 tensor-core product, fp16 inputs, fp32 accumulators.
// Fragments (PTX ISA, "mma.m16n8k16"), g = lane / 4, c = lane % 4:
//   a: {A[g][2c..], A[g+8][2c..], A[g][2c+8..], A[g+8][2c+8..]} (pairs of halves)
//   b: {B[2c..][g], B[2c+8..][g]} (k pairs; B is k × n)
//   d: {D[g][2c], D[g][2c+1], D[g+8][2c], D[g+8][2c+1]}
__device__ __forceinline__ void mma16816(float* d, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// One block: BR = 16·WARPS queries [q0, q0 + BR) of head h in window w; warp i owns rows
// q0 + 16i .. +15. Keys/values of the window's kv head stream through Ks/Vs (BC × D, rows
// padded by 8 halves: conflict-free 32-bit reads and ldmatrix rows), loaded with cp.async:
// K of the next tile is fetched while the softmax and P·V of this one run, V likewise.
template <int D, int WARPS>
__global__ void __launch_bounds__(WARPS * 32)
flash_kernel(int S, int nqb, int group, const __half* __restrict__ q, int64_t ldq,
             const __half* __restrict__ k, int64_t ldk, const __half* __restrict__ v, int64_t ldv,
             __half* __restrict__ out, int64_t ldo, float scale_log2) {
  constexpr int BR = 16 * WARPS, LDS = D + 8, KS = D / 16, NTO = D / 8, NTS = BC / 8;
  constexpr int CH = D / 8;  // 16-byte chunks per row
  __shared__ __align__(16) __half Ks[BC * LDS];
  __shared__ __align__(16) __half Vs[BC * LDS];
  const int qb = nqb - 1 - (int)blockIdx.x;  // the longest blocks (last queries) first
  const int h = blockIdx.y, kvh = h / group;
  const int64_t t0 = (int64_t)blockIdx.z * S;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  const int q0 = qb * BR, wq0 = q0 + warp * 16;
  const int r0 = wq0 + g, r1 = r0 + 8;  // this thread's two query rows (positions in the window)

  const __half* kbase = k + t0 * ldk + (int64_t)kvh * D;
  const __half* vbase = v + t0 * ldv + (int64_t)kvh * D;
  auto load_tile = [&](__half* dst, const __half* base, int64_t ld, int kb) {
    for (int i = threadIdx.x; i < BC * CH; i += WARPS * 32) {
      const int r = i / CH, cc = i % CH, key = kb * BC + r;
      const __half* src = base + (int64_t)min(key, S - 1) * ld + cc * 8;
      cp_async16(dst + r * LDS + cc * 8, src, key < S ? 16 : 0);  // zero-fill past the window
    }
  };

  const int last_q = min(q0 + BR, S) - 1;
  const int nkb = last_q / BC + 1;
  load_tile(Ks, kbase, ldk, 0);
  cp_async_commit();
  load_tile(Vs, vbase, ldv, 0);
  cp_async_commit();

  // Q fragments of this warp's 16 rows, straight from global memory (read once).
  uint32_t qf[KS][4];
  {
    const __half* qb0 = q + (t0 + min(r0, S - 1)) * ldq + (int64_t)h * D;
    const __half* qb1 = q + (t0 + min(r1, S - 1)) * ldq + (int64_t)h * D;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      const int col = ks * 16 + 2 * c;
      qf[ks][0] = r0 < S ? *reinterpret_cast<const uint32_t*>(qb0 + col) : 0u;
      qf[ks][1] = r1 < S ? *reinterpret_cast<const uint32_t*>(qb1 + col) : 0u;
      qf[ks][2] = r0 < S ? *reinterpret_cast<const uint32_t*>(qb0 + col + 8) : 0u;
      qf[ks][3] = r1 < S ? *reinterpret_cast<const uint32_t*>(qb1 + col + 8) : 0u;
    }
  }

  float o[NTO][4];
#pragma unroll
  for (int j = 0; j < NTO; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int kb = 0; kb < nkb; ++kb) {
    cp_async_wait<1>();  // K of this tile (V may still be in flight)
    __syncthreads();
    float s[NTS][4];
#pragma unroll
    for (int j = 0; j < NTS; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks)
#pragma unroll
      for (int j = 0; j < NTS; ++j) {
        const __half* kr = Ks + (j * 8 + g) * LDS + ks * 16 + 2 * c;
        mma16816(s[j], qf[ks], *reinterpret_cast<const uint32_t*>(kr), *reinterpret_cast<const uint32_t*>(kr + 8));
      }
    __syncthreads();  // every warp is done with Ks
    if (kb + 1 < nkb) load_tile(Ks, kbase, ldk, kb + 1);
    cp_async_commit();

    // Scale into the log2 domain; mask keys after each row's query (only near the diagonal).
    const bool diag = kb * BC + BC - 1 > wq0;
#pragma unroll
    for (int j = 0; j < NTS; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[j][e] * scale_log2;
        if (diag) {
          const int key = kb * BC + j * 8 + 2 * c + (e & 1);
          if (key > (e < 2 ? r0 : r1)) x = -INFINITY;
        }
        s[j][e] = x;
      }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < NTS; ++j) {
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
#pragma unroll
    for (int off = 1; off <= 2; off <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
    }
    // Block 0 holds key 0 ≤ every row, so the running max is finite from the first tile on.
    const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
    const float a0 = exp2f(m0 - n0), a1 = exp2f(m1 - n1);
    m0 = n0;
    m1 = n1;
    float sum0 = 0.0f, sum1 = 0.0f;
    uint32_t pa[BC / 16][4];
#pragma unroll
    for (int j = 0; j < NTS; ++j) {
      const float p0 = exp2f(s[j][0] - n0), p1 = exp2f(s[j][1] - n0);
      const float p2 = exp2f(s[j][2] - n1), p3 = exp2f(s[j][3] - n1);
      sum0 += p0 + p1;
      sum1 += p2 + p3;
      // S tiles 2kk and 2kk+1 are the A operand (keys kk·16 .. +15) of P·V.
      pa[j / 2][(j % 2) * 2 + 0] = pack_half2(p0, p1);
      pa[j / 2][(j % 2) * 2 + 1] = pack_half2(p2, p3);
    }
    l0 = l0 * a0 + sum0;
    l1 = l1 * a1 + sum1;
#pragma unroll
    for (int j = 0; j < NTO; ++j) {
      o[j][0] *= a0;
      o[j][1] *= a0;
      o[j][2] *= a1;
      o[j][3] *= a1;
    }

    cp_async_wait<1>();  // V of this tile (the next K may still be in flight)
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk)
#pragma unroll
      for (int dt = 0; dt < NTO / 2; ++dt) {
        // Four 8×8 matrices, transposed: keys kk·16 + {0..7, 8..15} × dims dt·16 + {0..7, 8..15}.
        const int mi = lane / 8, ri = lane % 8;
        const __half* addr = Vs + (kk * 16 + (mi & 1) * 8 + ri) * LDS + dt * 16 + (mi >> 1) * 8;
        uint32_t b0, b1, b2, b3;
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3)
                     : "r"((unsigned)__cvta_generic_to_shared(addr)));
        mma16816(o[2 * dt], pa[kk], b0, b1);
        mma16816(o[2 * dt + 1], pa[kk], b2, b3);
      }
    __syncthreads();  // every warp is done with Vs
    if (kb + 1 < nkb) load_tile(Vs, vbase, ldv, kb + 1);
    cp_async_commit();
  }
  cp_async_wait<0>();

#pragma unroll
  for (int off = 1; off <= 2; off <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float i0 = 1.0f / l0, i1 = 1.0f / l1;
  __half* ob = out + (int64_t)h * D + 2 * c;
#pragma unroll
  for (int j = 0; j < NTO; ++j) {
    if (r0 < S) *reinterpret_cast<__half2*>(ob + (t0 + r0) * ldo + j * 8) = __floats2half2_rn(o[j][0] * i0, o[j][1] * i0);
    if (r1 < S) *reinterpret_cast<__half2*>(ob + (t0 + r1) * ldo + j * 8) = __floats2half2_rn(o[j][2] * i1, o[j][3] * i1);
  }
}

template <int D, int WARPS>
void launch(Context& ctx, int64_t T, int64_t S, int64_t heads, int64_t kv_heads, const __half* q, int64_t ldq,
            const __half* k, int64_t ldk, const __half* v, int64_t ldv, __half* out, int64_t ldo) {
  constexpr int BR = 16 * WARPS;
  const int nqb = (int)((S + BR - 1) / BR);
  const dim3 grid((unsigned)nqb, (unsigned)heads, (unsigned)(T / S));
  const float scale_log2 = (float)(1.0 / std::sqrt((double)D) * 1.4426950408889634);
  flash_kernel<D, WARPS><<<grid, WARPS * 32, 0, ctx.stream>>>((int)S, nqb, (int)(heads / kv_heads), q, ldq, k, ldk, v,
                                                              ldv, out, ldo, scale_log2);
  CUDA_LAUNCH_CHECK();
}

}  // namespace

bool flash_attention_supported(int64_t D) { return D == 64 || D == 128; }

void flash_attention(Context& ctx, int64_t T, int64_t S, int64_t heads, int64_t kv_heads, int64_t D,
                     const __half* q, int64_t ldq, const __half* k, int64_t ldk, const __half* v,
                     int64_t ldv, __half* out, int64_t ldo) {
  flash_attention_variant(ctx, kDefaultWarps, T, S, heads, kv_heads, D, q, ldq, k, ldk, v, ldv, out, ldo);
}

void flash_attention_variant(Context& ctx, int warps, int64_t T, int64_t S, int64_t heads, int64_t kv_heads,
                             int64_t D, const __half* q, int64_t ldq, const __half* k, int64_t ldk,
                             const __half* v, int64_t ldv, __half* out, int64_t ldo) {
  if (warps != 4 && warps != 8) throw std::runtime_error("flash_attention: warps must be 4 or 8");
  if (!flash_attention_supported(D)) throw std::runtime_error("flash_attention: head size " + std::to_string(D) + " is not 64 or 128");
  if (S < 1 || T % S || heads % kv_heads || S > (1 << 30) || heads > 65535 || T / S > 65535)
    throw std::runtime_error("flash_attention: bad dimensions");
  if (ldq % 8 || ldk % 8 || ldv % 8 || ldo % 8) throw std::runtime_error("flash_attention: row strides must be multiples of 8");
  const bool wide = warps == 8;
  if (D == 128 && wide) launch<128, 8>(ctx, T, S, heads, kv_heads, q, ldq, k, ldk, v, ldv, out, ldo);
  else if (D == 128) launch<128, 4>(ctx, T, S, heads, kv_heads, q, ldq, k, ldk, v, ldv, out, ldo);
  else if (wide) launch<64, 8>(ctx, T, S, heads, kv_heads, q, ldq, k, ldk, v, ldv, out, ldo);
  else launch<64, 4>(ctx, T, S, heads, kv_heads, q, ldq, k, ldk, v, ldv, out, ldo);
}

double flash_attention_flops(int64_t T, int64_t S, int64_t heads, int64_t D) {
  // Useful work only: each query's scores and weighted sum over the keys up to itself.
  return 4.0 * (double)D * (double)heads * ((double)S * (double)(S + 1) / 2.0) * (double)(T / S);
}

}  // namespace gfc
