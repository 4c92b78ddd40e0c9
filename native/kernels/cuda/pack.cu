#include "pack.h"

namespace gfc {

namespace {

// Word w of a stream of `bits`-bit values v(i): bits [32w, 32w + 32) of Σ v(i) << (bits·i).
// Values overlapping the word: i from floor(32w / bits) to floor((32w + 31) / bits).
template <class Get>
__device__ __forceinline__ uint32_t stream_word(int64_t w, int bits, Get get) {
  const int64_t lo = 32 * w, first = lo / bits, last = (lo + 31) / bits;
  const uint32_t mask = (1u << bits) - 1u;
  uint64_t acc = 0;
  for (int64_t i = first; i <= last; ++i) {
    const int64_t shift = i * bits - lo;  // may be negative for the first value
    const uint64_t val = (uint64_t)(get(i) & mask);
    acc |= shift >= 0 ? (val << shift) : (val >> (-shift));
  }
  return (uint32_t)acc;
}

// One thread per (word row, column n); consecutive threads take consecutive n (coalesced
// writes; reads stride K, cached rows).
__global__ void pack_qweight_kernel(const uint8_t* codes, int64_t ldc, int64_t N, int64_t K, int bits,
                                    int32_t* qweight) {
  const int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, w = blockIdx.y;
  if (n >= N) return;
  const uint8_t* row = codes + n * ldc;
  qweight[w * N + n] = (int32_t)stream_word(w, bits, [&](int64_t i) { return (uint32_t)row[i]; });
}

__global__ void pack_qzeros_kernel(const int32_t* zeros, int64_t ldz, int64_t N, int bits, int64_t words,
                                   int32_t* qzeros) {
  const int64_t w = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, g = blockIdx.y;
  if (w >= words) return;
  const int32_t* row = zeros + g * ldz;
  qzeros[g * words + w] = (int32_t)stream_word(w, bits, [&](int64_t i) { return (uint32_t)(row[i] - 1); });
}

__global__ void scales_kernel(const float* s, int64_t lds, int64_t G, int64_t N, __half* out) {
  const int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, g = blockIdx.y;
  if (n < N) out[g * N + n] = __float2half_rn(s[g * lds + n]);
}

__global__ void pack_qweight_ref_kernel(const uint8_t* codes, int64_t ldc, int64_t N, int64_t K, int bits,
                                        int32_t* qweight) {
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, rows = K * bits / 32;
  if (idx >= rows * N) return;
  const int64_t w = idx / N, n = idx % N;
  uint32_t word = 0;
  for (int b = 0; b < 32; ++b) {
    const int64_t sbit = 32 * w + b, i = sbit / bits, j = sbit % bits;
    word |= (uint32_t)((codes[n * ldc + i] >> j) & 1) << b;
  }
  qweight[w * N + n] = (int32_t)word;
}

}  // namespace

void pack_qweight(Context& ctx, const uint8_t* codes, int64_t ldc, int64_t N, int64_t K, int bits,
                  int32_t* qweight) {
  pack_qweight_kernel<<<dim3(blocks_for(N, 128), (unsigned)(K * bits / 32)), 128, 0, ctx.stream>>>(
      codes, ldc, N, K, bits, qweight);
  CUDA_LAUNCH_CHECK();
}

void pack_qzeros(Context& ctx, const int32_t* zeros, int64_t ldz, int64_t G, int64_t N, int bits,
                 int32_t* qzeros) {
  const int64_t words = N * bits / 32;
  pack_qzeros_kernel<<<dim3(blocks_for(words, 128), (unsigned)G), 128, 0, ctx.stream>>>(zeros, ldz, N, bits, words, qzeros);
  CUDA_LAUNCH_CHECK();
}

void scales_to_f16(Context& ctx, const float* scales, int64_t lds, int64_t G, int64_t N, __half* out) {
  scales_kernel<<<dim3(blocks_for(N, 256), (unsigned)G), 256, 0, ctx.stream>>>(scales, lds, G, N, out);
  CUDA_LAUNCH_CHECK();
}

void pack_qweight_ref(Context& ctx, const uint8_t* codes, int64_t ldc, int64_t N, int64_t K, int bits,
                      int32_t* qweight) {
  pack_qweight_ref_kernel<<<blocks_for(K * bits / 32 * N, 128), 128, 0, ctx.stream>>>(codes, ldc, N, K, bits, qweight);
  CUDA_LAUNCH_CHECK();
}

}  // namespace gfc
