#include "dequant.h"

#include <stdexcept>
#include <string>

namespace gfc {

namespace {

// Field i (`bits` wide) of a little-endian bit stream whose word j is p[j·stride].
__device__ __forceinline__ uint32_t field(const int32_t* p, int64_t stride, int64_t i, int bits) {
  const int64_t pos = i * bits, wi = pos >> 5;
  const int off = (int)(pos & 31);
  uint32_t v = (uint32_t)p[wi * stride] >> off;
  if (off + bits > 32) v |= (uint32_t)p[(wi + 1) * stride] << (32 - off);
  return v & ((1u << bits) - 1u);
}

__device__ __forceinline__ __half dequant_one(const int32_t* qweight, const int32_t* qzeros, const __half* scales,
                                              const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits,
                                              int64_t k, int64_t n, int* flags) {
  int64_t g = g_idx[k];
  if (g < 0 || g >= G) {
    atomicAdd(&flags[0], 1);
    g = 0;
  }
  const int code = (int)field(qweight + n, N, k, bits);
  const int zero = (int)field(qzeros + g * (N * bits / 32), 1, n, bits) + 1;
  const __half r = __float2half_rn(__half2float(scales[g * N + n]) * (float)(code - zero));
  if (__hisinf(r) || __hisnan(r)) atomicAdd(&flags[1], 1);
  return r;
}

// A tile of 32 output rows (n) × 64 columns (k): reads along n (coalesced qweight/scales),
// transposed through shared memory, writes along k.
__global__ void dequant_kernel(const int32_t* qweight, const int32_t* qzeros, const __half* scales,
                               const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits, __half* w,
                               int64_t ldw, int* flags) {
  __shared__ __half tile[32][64 + 2];
  const int64_t n0 = (int64_t)blockIdx.x * 32, k0 = (int64_t)blockIdx.y * 64;
  const int tx = threadIdx.x, ty = threadIdx.y;  // 32 × 8
  for (int kk = ty; kk < 64; kk += 8) {
    const int64_t k = k0 + kk;
    if (k < K) tile[tx][kk] = dequant_one(qweight, qzeros, scales, g_idx, K, N, G, bits, k, n0 + tx, flags);
  }
  __syncthreads();
  for (int r = ty; r < 32; r += 8)
    for (int kk = tx; kk < 64; kk += 32)
      if (k0 + kk < K) w[(n0 + r) * ldw + k0 + kk] = tile[r][kk];
}

__global__ void dequant_ref_kernel(const int32_t* qweight, const int32_t* qzeros, const __half* scales,
                                   const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits, __half* w,
                                   int64_t ldw, int* flags) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= N * K) return;
  const int64_t n = idx / K, k = idx % K;
  int64_t g = g_idx[k];
  if (g < 0 || g >= G) {
    atomicAdd(&flags[0], 1);
    g = 0;
  }
  uint32_t code = 0, zf = 0;
  for (int b = 0; b < bits; ++b) {
    const int64_t pos = k * bits + b;
    code |= (((uint32_t)qweight[(pos >> 5) * N + n] >> (pos & 31)) & 1u) << b;
    const int64_t zp = n * bits + b;
    zf |= (((uint32_t)qzeros[g * (N * bits / 32) + (zp >> 5)] >> (zp & 31)) & 1u) << b;
  }
  const __half r = __float2half_rn(__half2float(scales[g * N + n]) * (float)((int)code - (int)zf - 1));
  if (__hisinf(r) || __hisnan(r)) atomicAdd(&flags[1], 1);
  w[n * ldw + k] = r;
}

void check_dims(int64_t K, int64_t N, int64_t G, int bits, int64_t ldw) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw std::runtime_error("dequantize_gptq: bits must be 2, 3, 4 or 8, got " + std::to_string(bits));
  if (K <= 0 || K % 32 || N <= 0 || N % 32 || G <= 0 || ldw < K)
    throw std::runtime_error("dequantize_gptq: bad dimensions K=" + std::to_string(K) + " N=" + std::to_string(N));
}

}  // namespace

void dequantize_gptq(Context& ctx, const int32_t* qweight, const int32_t* qzeros, const __half* scales,
                     const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits, __half* w, int64_t ldw,
                     int* flags) {
  check_dims(K, N, G, bits, ldw);
  const dim3 grid((unsigned)(N / 32), (unsigned)((K + 63) / 64)), block(32, 8);
  dequant_kernel<<<grid, block, 0, ctx.stream>>>(qweight, qzeros, scales, g_idx, K, N, G, bits, w, ldw, flags);
  CUDA_LAUNCH_CHECK();
}

void dequantize_gptq_ref(Context& ctx, const int32_t* qweight, const int32_t* qzeros, const __half* scales,
                         const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits, __half* w, int64_t ldw,
                         int* flags) {
  check_dims(K, N, G, bits, ldw);
  dequant_ref_kernel<<<blocks_for(N * K, 256), 256, 0, ctx.stream>>>(qweight, qzeros, scales, g_idx, K, N, G, bits, w,
                                                                      ldw, flags);
  CUDA_LAUNCH_CHECK();
}

}  // namespace gfc
