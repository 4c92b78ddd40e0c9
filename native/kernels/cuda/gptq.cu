#include "gptq.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "gptq_grid.cuh"

namespace gfc {

namespace {

constexpr int B = (int)gf::kCudaBlockSize;  // blocksize (columns)
constexpr int WARPS = 16;         // rows per thread block of the fused block kernel

struct SolveArgs {
  int64_t N, K, g;                // g: group size (K without groups)
  float maxq;
  bool sym, grouped, static_groups, act_order;
  const int32_t* perm;            // [K] device
  const float* row_scale;         // [N]   no groups
  const float* row_zero;
  const float* st_scale;          // [G, N] static groups
  const float* st_zero;
  float* scales;                  // [G, N] out (dynamic groups)
  int32_t* zeros;
  double* row_loss;               // [N] Σ (w − q)² / d² / 2 per row (zeroed first)
  const uint8_t* dead;            // [K] device, original order: 1 where diag H = 0
};

// GPTAQ: Cp [K, K] = C[perm][:, perm] with the dead columns zeroed (gptaq_utils.py:
// dXXT[:, dead] = 0; dXXT = dXXT[perm][:, perm]). Grid (⌈K/256⌉, K): y is the row.
__global__ void gptaq_permute_kernel(int64_t K, const float* C, const int32_t* perm, const uint8_t* dead, float* Cp) {
  const int64_t i = blockIdx.y, j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= K) return;
  Cp[i * K + j] = dead[perm[j]] ? 0.0f : C[(int64_t)perm[i] * K + perm[j]];
}

// A [K, K] row-major: A[i, k] = 0 for k ≤ i (torch's triu_(diagonal=1)). Grid (⌈K/256⌉, K).
__global__ void triu1_kernel(int64_t K, float* A) {
  const int64_t i = blockIdx.y, k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (k < K && k <= i) A[i * K + k] = 0.0f;
}

// The grid of x[0..n) by the calling warp: find_params without or with (MSE) the mse search.
template <bool MSE>
__device__ __forceinline__ Grid warp_find_params(const float* x, int64_t n, float maxq, bool sym) {
  if constexpr (MSE) return warp_grid_mse(x, n, maxq, sym);
  else return warp_grid(x, n, maxq, sym);
}

// fasterquant: self.quantizer.find_params(W) (no groups) / groups[...] (static_groups): rows
// whose weights are exactly the original (no groups) or dead-zeroed (static) W: one warp
// per row (no groups) or per (group, row) (static groups). W [N, K]; scale, zero [N] / [G, N].
template <bool MSE>
__global__ void row_grid_kernel(int64_t N, int64_t K, const float* W, float maxq, bool sym,
                                float* scale, float* zero) {
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= N) return;
  const Grid g = warp_find_params<MSE>(W + r * K, K, maxq, sym);
  if (threadIdx.x % 32 == 0) { scale[r] = g.scale; zero[r] = g.zero; }
}

template <bool MSE>
__global__ void static_grid_kernel(int64_t N, int64_t K, int64_t g, const float* W, float maxq,
                                   bool sym, float* scale, float* zero) {
  const int64_t G = K / g, item = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (item >= N * G) return;
  const int64_t r = item % N, j = item / N;
  const Grid gr = warp_find_params<MSE>(W + r * K + j * g, g, maxq, sym);
  if (threadIdx.x % 32 == 0) { scale[j * N + r] = gr.scale; zero[j * N + r] = gr.zero; }
}

// The reference of both with the mse search: one thread per (group, row), gf::find_params's
// serial search. W [N, K], groups of g columns (g = K: one per row); scale, zero [K / g, N].
__global__ void grid_ref_kernel(int64_t N, int64_t K, int64_t g, const float* W, float maxq, bool sym,
                                float* scale, float* zero) {
  const int64_t item = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= N * (K / g)) return;
  const int64_t r = item % N, j = item / N;
  const Grid gr = gf::find_params(W + r * K + j * g, g, maxq, sym, true);
  scale[j * N + r] = gr.scale;
  zero[j * N + r] = gr.zero;
}

// Wp[r, c] = dead[perm[c]] ? 0 : W[r, perm[c]]
__global__ void permute_kernel(int64_t N, int64_t K, const float* W, const int32_t* perm,
                               const uint8_t* dead, float* Wp) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (c >= K) return;
  const int32_t k = perm[c];
  Wp[r * K + c] = dead[k] ? 0.0f : W[r * K + k];
}

__global__ void zero_dead_kernel(int64_t N, int64_t K, const uint8_t* dead, float* W) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (c < K && dead[c]) W[r * K + c] = 0.0f;
}

// Out[r, k] = In[r, inv[k]] (un-permute Q and codes into the original column order).
template <class T>
__global__ void unpermute_kernel(int64_t N, int64_t K, const T* in, const int32_t* inv, T* out) {
  const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (k < K) out[r * K + k] = in[r * K + inv[k]];
}

// One lazy-batch block [i1, i1 + count) for all rows. Warp w of the thread block owns ROWS
// rows; lane l holds columns l, l+32, l+64, l+96 of the block of each row in registers. Column
// i is quantised by every lane (its value broadcast from its owner), and the owner lanes of
// the later columns apply W1[:, j] −= err · Hinv1[i, j]. Q (permuted order) replaces the
// block's columns of Wp, the codes go to Cp, the errors to Err [N, B] for the trailing GEMM.
// Hinv1 is staged once per thread block (WARPS · ROWS rows share it). MSE: dynamic group grids
// with the mse search (warp_grid_mse). GPTAQ: P1 = P[i1:i2, i1:i2] staged beside it (P [K, K]),
// and W1[:, j] += x · P1[i, j] after GPTQ's update (x: column i before quantization).
template <int ROWS, bool MSE, bool GPTAQ>
__global__ void __launch_bounds__(WARPS * 32) gptq_block_kernel(SolveArgs a, int64_t i1, int count,
                                                                 float* Wp, const float* U,
                                                                 uint8_t* Cp, float* Err, int ldE, const float* P) {
  extern __shared__ float Ub[];  // [B][B] = U[i1 + i, i1 + j]; GPTAQ: then Pb [B][B] = P[i1 + i, i1 + j]
  float* Pb = Ub + B * B;
  const int lane = threadIdx.x % 32;
  for (int idx = threadIdx.x; idx < B * B; idx += blockDim.x) {
    const int i = idx / B, j = idx % B;
    Ub[idx] = (i < count && j < count) ? U[(i1 + i) * a.K + i1 + j] : 0.0f;
    if constexpr (GPTAQ) Pb[idx] = (i < count && j < count) ? P[(i1 + i) * a.K + i1 + j] : 0.0f;
  }
  __syncthreads();
  const int64_t r0 = ((int64_t)blockIdx.x * WARPS + threadIdx.x / 32) * ROWS;
  if (r0 >= a.N) return;
  float w[ROWS][4], q[ROWS][4], e[ROWS][4], code[ROWS][4];
  Grid gr[ROWS];
  double loss[ROWS];
#pragma unroll
  for (int k = 0; k < ROWS; ++k) {
    const int64_t r = min(r0 + k, a.N - 1);  // rows past N repeat the last one, never stored
    const float* wrow = Wp + r * a.K;
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int j = s * 32 + lane;
      w[k][s] = j < count ? wrow[i1 + j] : 0.0f;
      q[k][s] = 0; e[k][s] = 0; code[k][s] = 0;
    }
    gr[k] = Grid{0, 0};
    loss[k] = 0;
    if (!a.grouped) gr[k] = Grid{a.row_scale[r], a.row_zero[r]};
    else if (!a.static_groups && i1 % a.g != 0) {
      // A group that began in an earlier block (g > B): its grid was stored then.
      const int64_t j = i1 / a.g;
      gr[k] = Grid{a.scales[j * a.N + r], (float)a.zeros[j * a.N + r]};
    }
  }
#pragma unroll
  for (int s = 0; s < 4; ++s) {
    for (int l = 0; l < 32; ++l) {
      const int i = s * 32 + l;
      if (i >= count) break;
      const int64_t c = i1 + i;
      const float d = Ub[i * B + i];
#pragma unroll
      for (int k = 0; k < ROWS; ++k) {
        const int64_t r = min(r0 + k, a.N - 1);
        if (a.grouped) {
          if (!a.static_groups) {
            if (c % a.g == 0) {
              // fasterquant: if (i1 + i) % groupsize == 0: find_params(W[:, (i1 + i):(i1 + i + groupsize)])
              // From Wp: carries the earlier blocks' updates, not this block's (in registers).
              gr[k] = warp_find_params<MSE>(Wp + r * a.K + c, a.g, a.maxq, a.sym);
              if (lane == 0 && r0 + k < a.N) {
                a.scales[(c / a.g) * a.N + r] = gr[k].scale;
                a.zeros[(c / a.g) * a.N + r] = (int32_t)gr[k].zero;
              }
            }
          } else {
            // fasterquant: idx = perm[i1 + i] (actorder); self.quantizer = groups[idx // groupsize]
            const int64_t j = gf::static_group_of(c, a.perm, a.act_order, a.g);
            gr[k] = Grid{a.st_scale[j * a.N + r], a.st_zero[j * a.N + r]};
          }
        }
        // fasterquant: q = quantize(w, scale, zero, maxq); err1 = (w - q) / d
        const float x = __shfl_sync(0xffffffffu, w[k][s], l);
        const float cd = gf::quant_code(x, gr[k], a.maxq);
        const float qq = gf::dequant(cd, gr[k]);
        const float err = __fdiv_rn(x - qq, d);
        if (lane == 0) loss[k] += (double)((x - qq) * (x - qq)) / ((double)d * d);  // Losses1[:, i]
        if (lane == l) { q[k][s] = qq; e[k][s] = err; code[k][s] = cd; }
        // fasterquant: W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
#pragma unroll
        for (int s2 = s; s2 < 4; ++s2) {
          const int j = s2 * 32 + lane;
          if (j > i) w[k][s2] -= err * Ub[i * B + j];
        }
        if constexpr (GPTAQ) {
          // gptaq: W1[:, i:] -= ... - w.unsqueeze(1).matmul(P1[i, i:].unsqueeze(0)); its own loop,
          // so that P = 0 leaves GPTQ's values as they are.
#pragma unroll
          for (int s2 = s; s2 < 4; ++s2) {
            const int j = s2 * 32 + lane;
            if (j > i) w[k][s2] += x * Pb[i * B + j];
          }
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < ROWS; ++k) {
    const int64_t r = r0 + k;
    if (r >= a.N) break;
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int j = s * 32 + lane;
      if (j < count) {
        Wp[r * a.K + i1 + j] = q[k][s];
        Cp[r * a.K + i1 + j] = (uint8_t)code[k][s];
      }
      Err[r * ldE + j] = j < count ? e[k][s] : 0.0f;
    }
    if (lane == 0) a.row_loss[r] += loss[k] / 2;  // the row's only writer in this launch
  }
}

// The reference: one thread per row, the CPU engine's loops over global memory (w1 and err in
// per-row scratch rows of Scr [N, 2B]); MSE: dynamic group grids by gf::find_params's serial search.
template <bool MSE>
__global__ void gptq_ref_kernel(SolveArgs a, float* Wp, const float* U, uint8_t* Cp, float* Scr) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= a.N) return;
  float* w = Wp + r * a.K;
  float* w1 = Scr + r * 2 * B;
  float* err = w1 + B;
  Grid gr{0, 0};
  if (!a.grouped) gr = Grid{a.row_scale[r], a.row_zero[r]};
  double loss = 0;
  for (int64_t i1 = 0; i1 < a.K; i1 += B) {
    const int64_t i2 = min(i1 + B, a.K), count = i2 - i1;
    for (int64_t i = 0; i < count; ++i) w1[i] = w[i1 + i];
    for (int64_t i = 0; i < count; ++i) {
      const int64_t c = i1 + i;
      if (a.grouped) {
        if (!a.static_groups) {
          if (c % a.g == 0) {
            gr = gf::find_params(w + c, a.g, a.maxq, a.sym, MSE);
            a.scales[(c / a.g) * a.N + r] = gr.scale;
            a.zeros[(c / a.g) * a.N + r] = (int32_t)gr.zero;
          }
        } else {
          const int64_t j = gf::static_group_of(c, a.perm, a.act_order, a.g);
          gr = Grid{a.st_scale[j * a.N + r], a.st_zero[j * a.N + r]};
        }
      }
      const float x = w1[i], cd = gf::quant_code(x, gr, a.maxq), q = gf::dequant(cd, gr);
      const float d = U[c * a.K + c];
      loss += (double)((x - q) * (x - q)) / ((double)d * d);
      err[i] = __fdiv_rn(x - q, d);
      Cp[r * a.K + c] = (uint8_t)cd;
      w1[i] = q;
      for (int64_t j = i + 1; j < count; ++j) w1[j] -= err[i] * U[c * a.K + i1 + j];
    }
    for (int64_t b = 0; b < count; ++b)
      for (int64_t j = i2; j < a.K; ++j) w[j] -= err[b] * U[(i1 + b) * a.K + j];
    for (int64_t i = 0; i < count; ++i) w[i1 + i] = w1[i];
  }
  a.row_loss[r] = loss / 2;
}

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Everything both versions share: grids that come before the solve, dead columns, the
// permuted working copy. Runs `solve(args, Wp, Cp)`, then un-permutes into W and codes.
template <class Solve>
gf::GptqResult run_solve(Context& ctx, int64_t N, int64_t K, float* W, const float* H,
                         const gf::GptqOptions& o, uint8_t* codes, float* scales, int32_t* zeros,
                         int32_t* g_idx, int32_t* perm, bool reference, bool chol_fp32,
                         SolveTimes* times, std::vector<double>* row_loss, Solve solve) {
  gf::check_gptq_options(K, o, gf::Engine::cuda);
  const auto t0 = std::chrono::steady_clock::now();
  const bool grouped = o.group_size != -1;
  const int64_t g = grouped ? o.group_size : K, G = K / g;
  const float maxq = (float)((1 << o.bits) - 1);
  PreparedHessian p = analyse_hessian(ctx, K, H, o.act_order);

  // The grids that come before the solve (gs columns per group, gs = K: one per row): a warp
  // each; the reference's mse grids by the serial search.
  auto grids = [&](bool per_row, int64_t gs, float* scale, float* zero) {
    if (reference && o.mse) grid_ref_kernel<<<blocks_for(N * (K / gs), 64), 64, 0, ctx.stream>>>(N, K, gs, W, maxq, o.sym, scale, zero);
    else if (per_row) (o.mse ? row_grid_kernel<true> : row_grid_kernel<false>)<<<blocks_for(N, 8), 256, 0, ctx.stream>>>(N, K, W, maxq, o.sym, scale, zero);
    else (o.mse ? static_grid_kernel<true> : static_grid_kernel<false>)<<<blocks_for(N * (K / gs), 8), 256, 0, ctx.stream>>>(N, K, gs, W, maxq, o.sym, scale, zero);
    CUDA_LAUNCH_CHECK();
  };
  DevBuf<float> row_scale(grouped ? 0 : N), row_zero(grouped ? 0 : N);
  if (!grouped) grids(true, K, row_scale.get(), row_zero.get());
  DevBuf<uint8_t> dead(K);
  DevBuf<int32_t> dperm(K), inv(K);
  std::vector<int32_t> hinv(K);
  for (int64_t i = 0; i < K; ++i) hinv[p.perm[i]] = (int32_t)i;
  CUDA_CHECK(cudaMemcpyAsync(dead.get(), p.dead.data(), K, cudaMemcpyHostToDevice, ctx.stream));
  CUDA_CHECK(cudaMemcpyAsync(dperm.get(), p.perm.data(), K * 4, cudaMemcpyHostToDevice, ctx.stream));
  CUDA_CHECK(cudaMemcpyAsync(inv.get(), hinv.data(), K * 4, cudaMemcpyHostToDevice, ctx.stream));
  DevBuf<float> st_scale, st_zero;
  if (grouped && o.static_groups) {
    if (p.dead_columns) {
      zero_dead_kernel<<<dim3(blocks_for(K, 256), (unsigned)N), 256, 0, ctx.stream>>>(N, K, dead.get(), W);
      CUDA_LAUNCH_CHECK();
    }
    st_scale.alloc(G * N);
    st_zero.alloc(G * N);
    grids(false, g, st_scale.get(), st_zero.get());
  }

  DevBuf<float> U(K * K);
  if (reference) {
    upper_cholesky_of_inverse_ref(ctx, K, H, o.damp_percent, p, U.get());
  } else if (chol_fp32) {
    DevBuf<float> work(K * K);
    upper_cholesky_of_inverse_f32(ctx, K, H, o.damp_percent, p, work.get(), U.get(), times ? &times->chol : nullptr);
  } else {
    DevBuf<double> work(K * K);
    upper_cholesky_of_inverse(ctx, K, H, o.damp_percent, p, work.get(), U.get(), times ? &times->chol : nullptr);
  }
  ctx.sync();
  if (times) times->prepare_ms += ms_since(t0);
  const auto t1 = std::chrono::steady_clock::now();

  DevBuf<float> Wp(N * K);
  DevBuf<uint8_t> Cp(N * K);
  DevBuf<double> loss(N);
  CUDA_CHECK(cudaMemsetAsync(loss.get(), 0, N * sizeof(double), ctx.stream));
  permute_kernel<<<dim3(blocks_for(K, 256), (unsigned)N), 256, 0, ctx.stream>>>(N, K, W, dperm.get(), dead.get(), Wp.get());
  CUDA_LAUNCH_CHECK();
  SolveArgs a{N, K, g, maxq, o.sym, grouped, o.static_groups, o.act_order, dperm.get(),
              row_scale.get(), row_zero.get(), st_scale.get(), st_zero.get(), scales, zeros, loss.get(), dead.get()};
  solve(a, Wp.get(), U.get(), Cp.get());
  unpermute_kernel<float><<<dim3(blocks_for(K, 256), (unsigned)N), 256, 0, ctx.stream>>>(N, K, Wp.get(), inv.get(), W);
  CUDA_LAUNCH_CHECK();
  unpermute_kernel<uint8_t><<<dim3(blocks_for(K, 256), (unsigned)N), 256, 0, ctx.stream>>>(N, K, Cp.get(), inv.get(), codes);
  CUDA_LAUNCH_CHECK();
  if (!grouped) {
    std::vector<float> rs(N), rz(N);
    std::vector<int32_t> iz(N);
    CUDA_CHECK(cudaMemcpyAsync(rs.data(), row_scale.get(), N * 4, cudaMemcpyDeviceToHost, ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(rz.data(), row_zero.get(), N * 4, cudaMemcpyDeviceToHost, ctx.stream));
    ctx.sync();
    for (int64_t r = 0; r < N; ++r) iz[r] = (int32_t)rz[r];
    CUDA_CHECK(cudaMemcpyAsync(scales, rs.data(), N * 4, cudaMemcpyHostToDevice, ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(zeros, iz.data(), N * 4, cudaMemcpyHostToDevice, ctx.stream));
  } else if (o.static_groups) {
    std::vector<float> z(G * N);
    std::vector<int32_t> iz(G * N);
    CUDA_CHECK(cudaMemcpyAsync(scales, st_scale.get(), G * N * 4, cudaMemcpyDeviceToDevice, ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(z.data(), st_zero.get(), G * N * 4, cudaMemcpyDeviceToHost, ctx.stream));
    ctx.sync();
    for (int64_t i = 0; i < G * N; ++i) iz[i] = (int32_t)z[i];
    CUDA_CHECK(cudaMemcpyAsync(zeros, iz.data(), G * N * 4, cudaMemcpyHostToDevice, ctx.stream));
  }
  gf::GptqResult res;
  std::vector<double> rl(N);
  CUDA_CHECK(cudaMemcpyAsync(rl.data(), loss.get(), N * sizeof(double), cudaMemcpyDeviceToHost, ctx.stream));
  ctx.sync();
  for (double v : rl) res.loss += v;
  if (row_loss) *row_loss = std::move(rl);
  if (times) times->solve_ms += ms_since(t1);
  res.damp_percent = p.damp_percent;
  res.damp_raises = p.damp_raises;
  res.dead_columns = p.dead_columns;
  std::copy(p.perm.begin(), p.perm.end(), perm);
  gf::g_idx_of(K, o.group_size, o.act_order, o.static_groups, perm, g_idx);
  return res;
}

}  // namespace

gf::GptqResult gptq_quantize(Context& ctx, int64_t N, int64_t K, float* W, const float* H,
                             const gf::GptqOptions& o, uint8_t* codes, float* scales,
                             int32_t* zeros, int32_t* g_idx, int32_t* perm, const SolveConfig& cfg,
                             SolveTimes* times, std::vector<double>* row_loss, const GptaqDevice* gptaq) {
  const bool tf32 = cfg.tf32;
  if (gptaq && (!gptaq->C || !(std::isfinite(gptaq->alpha) && gptaq->alpha >= 0)))
    throw std::invalid_argument("gptq_quantize: GPTAQ needs its cross term C and a finite alpha >= 0");
  return run_solve(ctx, N, K, W, H, o, codes, scales, zeros, g_idx, perm, false, cfg.chol_fp32, times, row_loss,
                   [&](const SolveArgs& a, float* Wp, const float* U, uint8_t* Cp) {
    const float minus = -1, one = 1, zero = 0;
    // GPTAQ: P = alpha * ((dXXT @ Hinv.T).triu_(diagonal=1)) @ Hinv, in fp32 (the authors' torch),
    // row-major buffers read by cuBLAS as their transposes (column-major).
    DevBuf<float> P;
    if (gptaq) {
      DevBuf<float> Cperm(K * K), A(K * K);
      P.alloc(K * K);
      const dim3 grid(blocks_for(K, 256), (unsigned)K);
      gptaq_permute_kernel<<<grid, 256, 0, ctx.stream>>>(K, gptaq->C, a.perm, a.dead, Cperm.get());
      CUDA_LAUNCH_CHECK();
      CUBLAS_CHECK(cublasSetMathMode(ctx.blas, CUBLAS_DEFAULT_MATH));
      // A = Cp · Uᵀ  ⇔  Aᵀ = U · Cpᵀ (column-major: op(Uᵀ) = U, times Cpᵀ)
      CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)K, (int)K, (int)K, &one, U, (int)K, Cperm.get(),
                               (int)K, &zero, A.get(), (int)K));
      triu1_kernel<<<grid, 256, 0, ctx.stream>>>(K, A.get());
      CUDA_LAUNCH_CHECK();
      // P = α · A · U  ⇔  Pᵀ = α · Uᵀ · Aᵀ
      CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)K, (int)K, (int)K, &gptaq->alpha, U, (int)K, A.get(),
                               (int)K, &zero, P.get(), (int)K));
    }
    const float* Pd = gptaq ? P.get() : nullptr;
    const int smem = (gptaq ? 2 : 1) * B * B * (int)sizeof(float);
    // 4 rows per warp where there are enough rows to fill the GPU, else 1.
    const bool wide = cfg.rows_per_warp ? cfg.rows_per_warp == 4 : N >= 4 * WARPS * 132;
    auto pick = [&](auto gptaq_tag) {
      constexpr bool GA = decltype(gptaq_tag)::value;
      return o.mse ? (wide ? gptq_block_kernel<4, true, GA> : gptq_block_kernel<1, true, GA>)
                   : (wide ? gptq_block_kernel<4, false, GA> : gptq_block_kernel<1, false, GA>);
    };
    auto kernel = gptaq ? pick(std::true_type{}) : pick(std::false_type{});
    const int rows_per_block = WARPS * (wide ? 4 : 1);
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    // Two levels of lazy batching: within a superblock of SB = 4·B columns, each block's
    // errors update the superblock's later columns at once (k = 128 GEMMs); the columns after
    // the superblock get all of its errors in one GEMM with k = SB (the same sums, grouped;
    // skinny k = 128 GEMMs run at about half the rate). A dynamic group must not reach past its
    // superblock (its grid reads those columns), so SB = B when groups don't tile SB.
    const bool dyn = a.grouped && !a.static_groups;
    const int SB = !dyn || (a.g <= 4 * B && (4 * B) % a.g == 0) ? 4 * B : B;
    DevBuf<float> Err(N * SB);
    CUBLAS_CHECK(cublasSetMathMode(ctx.blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    for (int64_t s1 = 0; s1 < K; s1 += SB) {
      const int64_t s2 = std::min<int64_t>(s1 + SB, K);
      for (int64_t i1 = s1; i1 < s2; i1 += B) {
        const int64_t i2 = std::min<int64_t>(i1 + B, K);
        const int count = (int)(i2 - i1);
        float* E = Err.get() + (i1 - s1);
        kernel<<<blocks_for(N, rows_per_block), WARPS * 32, smem, ctx.stream>>>(a, i1, count, Wp, U, Cp, E, SB, Pd);
        CUDA_LAUNCH_CHECK();
        // Wp[:, i2:s2] −= E[:, :count] · U[i1:i2, i2:s2]  (column-major view: m = s2 − i2, n = N, k = count)
        if (i2 < s2)
          CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(s2 - i2), (int)N, count, &minus,
                                   U + i1 * K + i2, (int)K, E, SB, &one, Wp + i2, (int)K));
        // gptaq: W[:, i2:] -= ... - W1.matmul(P[i1:i2, i2:]), W1 = the block's Q, now in Wp[:, i1:i2]
        if (Pd && i2 < s2)
          CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(s2 - i2), (int)N, count, &one,
                                   Pd + i1 * K + i2, (int)K, Wp + i1, (int)K, &one, Wp + i2, (int)K));
      }
      // fasterquant: W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:]), for the superblock's blocks at once:
      // Wp[:, s2:] −= Err[:, :s2−s1] · U[s1:s2, s2:]
      if (s2 < K)
        CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(K - s2), (int)N, (int)(s2 - s1), &minus,
                                 U + s1 * K + s2, (int)K, Err.get(), SB, &one, Wp + s2, (int)K));
      // gptaq: Wp[:, s2:] += Q[:, s1:s2] · P[s1:s2, s2:]
      if (Pd && s2 < K)
        CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(K - s2), (int)N, (int)(s2 - s1), &one,
                                 Pd + s1 * K + s2, (int)K, Wp + s1, (int)K, &one, Wp + s2, (int)K));
    }
    CUBLAS_CHECK(cublasSetMathMode(ctx.blas, CUBLAS_DEFAULT_MATH));
  });
}

gf::GptqResult gptq_quantize_ref(Context& ctx, int64_t N, int64_t K, float* W, const float* H,
                                 const gf::GptqOptions& o, uint8_t* codes, float* scales,
                                 int32_t* zeros, int32_t* g_idx, int32_t* perm) {
  return run_solve(ctx, N, K, W, H, o, codes, scales, zeros, g_idx, perm, true, false, nullptr, nullptr,
                   [&](const SolveArgs& a, float* Wp, const float* U, uint8_t* Cp) {
    DevBuf<float> scr(N * 2 * B);
    (o.mse ? gptq_ref_kernel<true> : gptq_ref_kernel<false>)<<<blocks_for(N, 64), 64, 0, ctx.stream>>>(a, Wp, U, Cp, scr.get());
    CUDA_LAUNCH_CHECK();
  });
}

}  // namespace gfc
