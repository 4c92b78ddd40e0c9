#include "hessian.h"

#include <algorithm>

namespace gfc {

void xtx_accumulate(Context& ctx, int64_t T, int64_t K, const __half* X, int64_t ldx, float* G,
                    float alpha, float beta, int nb) {
  // Column-major view (cuBLAS): X row-major [T, K] is Xc [K, T] with ld = ldx, and G = Xc·Xcᵀ.
  // Block row b covers rows [r0, r1) of Xc and computes G(r0:r1, r0:K) = Xc[r0:r1]·Xc[r0:K]ᵀ,
  // i.e. the column-major upper part = row-major lower part (G is symmetric).
  nb = (int)std::max<int64_t>(1, std::min<int64_t>(nb, K / 128));
  const int64_t step = ((K + nb - 1) / nb + 127) / 128 * 128;  // block rows of whole tiles
  for (int64_t r0 = 0; r0 < K; r0 += step) {
    const int64_t m = std::min(step, K - r0), n = K - r0;
    CUBLAS_CHECK(cublasGemmEx(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)m, (int)n, (int)T, &alpha,
                              X + r0, CUDA_R_16F, (int)ldx, X + r0, CUDA_R_16F, (int)ldx, &beta,
                              G + r0 + r0 * K, CUDA_R_32F, (int)K, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
  }
}

double xtx_flops(int64_t T, int64_t K, int nb) {
  nb = (int)std::max<int64_t>(1, std::min<int64_t>(nb, K / 128));
  const int64_t step = ((K + nb - 1) / nb + 127) / 128 * 128;  // block rows of whole tiles
  double f = 0;
  for (int64_t r0 = 0; r0 < K; r0 += step) f += 2.0 * (double)std::min(step, K - r0) * (double)(K - r0) * (double)T;
  return f;
}

__global__ void xtx_ref_kernel(int64_t T, int64_t K, const __half* X, int64_t ldx, float* G,
                               float alpha, float beta) {
  const int64_t i = blockIdx.y, j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= K) return;
  float s = 0;
  for (int64_t t = 0; t < T; ++t) s += __half2float(X[t * ldx + i]) * __half2float(X[t * ldx + j]);
  G[i * K + j] = beta * G[i * K + j] + alpha * s;
}

void xtx_accumulate_ref(Context& ctx, int64_t T, int64_t K, const __half* X, int64_t ldx,
                        float* G, float alpha, float beta) {
  xtx_ref_kernel<<<dim3(blocks_for(K, 128), (unsigned)K), 128, 0, ctx.stream>>>(T, K, X, ldx, G,
                                                                                alpha, beta);
  CUDA_LAUNCH_CHECK();
}

// 32 × 32 tiles above the diagonal, each filled from its mirror tile through shared memory so
// that both the reads and the writes are coalesced.
__global__ void symmetrize_lower_kernel(int64_t K, float* G) {
  __shared__ float tile[32][33];
  const int64_t bi = blockIdx.y, bj = blockIdx.x;  // destination tile (bi, bj), bi ≤ bj
  if (bi > bj) return;
  const int tx = threadIdx.x, ty = threadIdx.y;  // 32 × 8
  for (int r = ty; r < 32; r += 8) {
    const int64_t si = bj * 32 + r, sj = bi * 32 + tx;  // source: lower tile (bj, bi)
    if (si < K && sj < K) tile[r][tx] = G[si * K + sj];
  }
  __syncthreads();
  for (int r = ty; r < 32; r += 8) {
    const int64_t di = bi * 32 + r, dj = bj * 32 + tx;
    if (di < K && dj < K && dj > di) G[di * K + dj] = tile[tx][r];
  }
}

void symmetrize_lower(Context& ctx, int64_t K, float* G) {
  const unsigned nt = blocks_for(K, 32);
  symmetrize_lower_kernel<<<dim3(nt, nt), dim3(32, 8), 0, ctx.stream>>>(K, G);
  CUDA_LAUNCH_CHECK();
}

}  // namespace gfc
