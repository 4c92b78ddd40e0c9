#include "linalg.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "../common/gptq_math.h"
#include "../cpu/linalg.h"

namespace gfc {

namespace {

__global__ void finite_kernel(int64_t n, const float* H, int* bad) {
  int local = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    if (!isfinite(H[i])) local = 1;
  if (local) atomicOr(bad, 1);
}

__global__ void diag_kernel(int64_t K, const float* H, float* diag) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < K) diag[i] = H[i * K + i];
}

// A[r, c] (fp64; symmetric, so row- and column-major agree) = Hp[K−1−r, K−1−c] with
// Hp[i, j] = H[perm[i], perm[j]], diag zeros replaced by 1, plus `add` on the diagonal.
template <class T>
__global__ void build_flipped_kernel(int64_t K, const float* H, const int32_t* perm, double add,
                                     T* A) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (c >= K) return;
  const int64_t i = perm[K - 1 - r], j = perm[K - 1 - c];
  double v = H[i * K + j];
  if (r == c) v = (v == 0 ? 1.0 : v) + add;
  A[r * K + c] = (T)v;
}

// U[i, j] (fp32 row-major) = L⁻¹(K−1−i, K−1−j) for j ≥ i, 0 below; L⁻¹ column-major in A
// (element (r, c) at c·K + r), so U[i, j] = A[(K−1−j)·K + (K−1−i)]. 32 × 32 tiles through
// shared memory keep both sides coalesced.
template <class T>
__global__ void flip_transpose_kernel(int64_t K, const T* A, float* U) {
  __shared__ float tile[32][33];
  const int64_t i0 = (int64_t)blockIdx.y * 32, j0 = (int64_t)blockIdx.x * 32;
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int r = ty; r < 32; r += 8) {
    const int64_t i = i0 + tx, j = j0 + r;  // tile[r][tx] = U[i][j]
    if (i < K && j < K) tile[r][tx] = j >= i ? (float)A[(K - 1 - j) * K + (K - 1 - i)] : 0.0f;
  }
  __syncthreads();
  for (int r = ty; r < 32; r += 8) {
    const int64_t i = i0 + r, j = j0 + tx;
    if (i < K && j < K) U[i * K + j] = tile[tx][r];
  }
}

}  // namespace

PreparedHessian analyse_hessian(Context& ctx, int64_t K, const float* H, bool act_order) {
  DevBuf<float> diag(K);
  DevBuf<int> bad(1);
  CUDA_CHECK(cudaMemsetAsync(bad.get(), 0, sizeof(int), ctx.stream));
  finite_kernel<<<1024, 256, 0, ctx.stream>>>(K * K, H, bad.get());
  CUDA_LAUNCH_CHECK();
  diag_kernel<<<blocks_for(K, 256), 256, 0, ctx.stream>>>(K, H, diag.get());
  CUDA_LAUNCH_CHECK();
  std::vector<float> d(K);
  int hbad = 0;
  CUDA_CHECK(cudaMemcpyAsync(d.data(), diag.get(), K * sizeof(float), cudaMemcpyDeviceToHost, ctx.stream));
  CUDA_CHECK(cudaMemcpyAsync(&hbad, bad.get(), sizeof(int), cudaMemcpyDeviceToHost, ctx.stream));
  ctx.sync();
  if (hbad) throw std::runtime_error("the Hessian has NaN or Inf entries");
  PreparedHessian p;
  p.dead.assign(K, 0);
  for (int64_t i = 0; i < K; ++i)
    if (d[i] == 0) { d[i] = 1; p.dead[i] = 1; ++p.dead_columns; }
  // fasterquant: if actorder: perm = torch.argsort(torch.diag(H), descending=True) (stable)
  p.perm.resize(K);
  gf::act_order_perm(K, act_order, [&](int32_t i) { return d[i]; }, p.perm.data());
  double s = 0;
  for (int64_t i = 0; i < K; ++i) s += d[p.perm[i]];
  p.mean_diag = s / (double)K;
  return p;
}

namespace {

inline cusolverStatus_t potrf_buffer(cusolverDnHandle_t h, int n, double* A, int* lwork) {
  return cusolverDnDpotrf_bufferSize(h, CUBLAS_FILL_MODE_LOWER, n, A, n, lwork);
}
inline cusolverStatus_t potrf_buffer(cusolverDnHandle_t h, int n, float* A, int* lwork) {
  return cusolverDnSpotrf_bufferSize(h, CUBLAS_FILL_MODE_LOWER, n, A, n, lwork);
}
inline cusolverStatus_t potrf(cusolverDnHandle_t h, int n, double* A, double* ws, int lwork, int* info) {
  return cusolverDnDpotrf(h, CUBLAS_FILL_MODE_LOWER, n, A, n, ws, lwork, info);
}
inline cusolverStatus_t potrf(cusolverDnHandle_t h, int n, float* A, float* ws, int lwork, int* info) {
  return cusolverDnSpotrf(h, CUBLAS_FILL_MODE_LOWER, n, A, n, ws, lwork, info);
}
inline cublasStatus_t trmm(cublasHandle_t h, cublasSideMode_t side, int m, int n, const double* alpha,
                           const double* A, int lda, double* B, int ldb) {
  return cublasDtrmm(h, side, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, m, n, alpha, A, lda, B, ldb, B, ldb);
}
inline cublasStatus_t trmm(cublasHandle_t h, cublasSideMode_t side, int m, int n, const float* alpha,
                           const float* A, int lda, float* B, int ldb) {
  return cublasStrmm(h, side, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT, m, n, alpha, A, lda, B, ldb, B, ldb);
}
template <class T> constexpr cudaDataType dtype_of();
template <> constexpr cudaDataType dtype_of<double>() { return CUDA_R_64F; }
template <> constexpr cudaDataType dtype_of<float>() { return CUDA_R_32F; }

// In place: the lower-triangular n × n block at A (column-major, ld lda) becomes its inverse.
// Recursive halving: [A 0; B C]⁻¹ = [A⁻¹ 0; −C⁻¹ B A⁻¹ C⁻¹], the off-diagonal block by two
// triangular matrix products (cuBLAS trmm, GEMM-speed); blocks of ≤ base columns by cuSOLVER's
// trtri (slow on large matrices: 0.77 s of 1.0 s at K = 28672 in fp64 on an H200).
template <class T>
void tri_inv_lower(Context& ctx, int64_t n, T* A, int64_t lda, int64_t base, T* ws, size_t ws_bytes,
                   std::vector<char>& host_ws, int* info) {
  if (n <= base) {
    CUSOLVER_CHECK(cusolverDnXtrtri(ctx.solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n, dtype_of<T>(),
                                    A, lda, ws, ws_bytes, host_ws.data(), host_ws.size(), info));
    return;
  }
  const int64_t n1 = (n / 2 + 127) / 128 * 128, n2 = n - n1;
  tri_inv_lower(ctx, n1, A, lda, base, ws, ws_bytes, host_ws, info);
  tri_inv_lower(ctx, n2, A + n1 + n1 * lda, lda, base, ws, ws_bytes, host_ws, info);
  const T one = 1, minus = -1;
  T* B = A + n1;  // rows [n1, n), columns [0, n1)
  CUBLAS_CHECK(trmm(ctx.blas, CUBLAS_SIDE_RIGHT, (int)n2, (int)n1, &one, A, (int)lda, B, (int)lda));
  CUBLAS_CHECK(trmm(ctx.blas, CUBLAS_SIDE_LEFT, (int)n2, (int)n1, &minus, A + n1 + n1 * lda, (int)lda, B, (int)lda));
}

template <class T>
void chol_inv(Context& ctx, int64_t K, const float* H, float damp_percent, PreparedHessian& p, T* work,
              float* U, CholTimes* times, int64_t trtri_base) {
  DevBuf<int32_t> perm(K);
  DevBuf<int> info(1);
  CUDA_CHECK(cudaMemcpyAsync(perm.get(), p.perm.data(), K * sizeof(int32_t), cudaMemcpyHostToDevice, ctx.stream));
  int lwork = 0;
  CUSOLVER_CHECK(potrf_buffer(ctx.solver, (int)K, work, &lwork));
  size_t tri_dev = 0, tri_host = 0;
  const int64_t base = trtri_base > 0 ? std::min(trtri_base, K) : K;
  CUSOLVER_CHECK(cusolverDnXtrtri_bufferSize(ctx.solver, CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, base,
                                             dtype_of<T>(), work, K, &tri_dev, &tri_host));
  DevBuf<T> ws(std::max<size_t>((size_t)lwork, (tri_dev + sizeof(T) - 1) / sizeof(T)) + 1);
  std::vector<char> host_ws(tri_host);
  cudaEvent_t ev[4];
  for (auto& e : ev) CUDA_CHECK(cudaEventCreate(&e));
  // fasterquant: H[diag, diag] += percdamp * mean(diag H); H = torch.linalg.cholesky(H), with
  // the damping raised while potrf fails (gf::damp_until_pd, as the CPU engine).
  const gf::DampUsed damp = gf::damp_until_pd(damp_percent, [&](float percent) {
    CUDA_CHECK(cudaEventRecord(ev[0], ctx.stream));
    build_flipped_kernel<T><<<dim3(blocks_for(K, 256), (unsigned)K), 256, 0, ctx.stream>>>(
        K, H, perm.get(), gf::damping(percent, p.mean_diag), work);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaEventRecord(ev[1], ctx.stream));
    CUSOLVER_CHECK(potrf(ctx.solver, (int)K, work, ws.get(), lwork, info.get()));
    CUDA_CHECK(cudaEventRecord(ev[2], ctx.stream));
    int h = 0;
    CUDA_CHECK(cudaMemcpyAsync(&h, info.get(), sizeof(int), cudaMemcpyDeviceToHost, ctx.stream));
    ctx.sync();
    if (times) {
      float a = 0, b = 0;
      CUDA_CHECK(cudaEventElapsedTime(&a, ev[0], ev[1]));
      CUDA_CHECK(cudaEventElapsedTime(&b, ev[1], ev[2]));
      times->build_ms += a;
      times->potrf_ms += b;
    }
    if (h < 0) throw std::runtime_error("potrf: invalid argument " + std::to_string(-h));
    return h == 0;
  });
  p.damp_percent = damp.damp_percent;
  p.damp_raises = damp.raises;
  // fasterquant: H = torch.cholesky_inverse(H); H = torch.linalg.cholesky(H, upper=True): here
  // U = R⁻¹ from the factor of the flipped matrix (linalg.h), by a triangular inverse.
  CUDA_CHECK(cudaEventRecord(ev[0], ctx.stream));
  CUBLAS_CHECK(cublasSetMathMode(ctx.blas, CUBLAS_DEFAULT_MATH));
  tri_inv_lower<T>(ctx, K, work, K, base, ws.get(), tri_dev, host_ws, info.get());
  CUDA_CHECK(cudaEventRecord(ev[1], ctx.stream));
  int h = 0;
  CUDA_CHECK(cudaMemcpyAsync(&h, info.get(), sizeof(int), cudaMemcpyDeviceToHost, ctx.stream));
  const unsigned nt = blocks_for(K, 32);
  flip_transpose_kernel<T><<<dim3(nt, nt), dim3(32, 8), 0, ctx.stream>>>(K, work, U);
  CUDA_LAUNCH_CHECK();
  CUDA_CHECK(cudaEventRecord(ev[2], ctx.stream));
  ctx.sync();
  if (times) {
    float a = 0, b = 0;
    CUDA_CHECK(cudaEventElapsedTime(&a, ev[0], ev[1]));
    CUDA_CHECK(cudaEventElapsedTime(&b, ev[1], ev[2]));
    times->trtri_ms += a;
    times->build_ms += b;
  }
  for (auto& e : ev) cudaEventDestroy(e);
  if (h != 0) throw std::runtime_error("trtri failed: info " + std::to_string(h));
}

}  // namespace

void upper_cholesky_of_inverse(Context& ctx, int64_t K, const float* H, float damp_percent,
                               PreparedHessian& p, double* work, float* U, CholTimes* times,
                               int64_t trtri_base) {
  chol_inv<double>(ctx, K, H, damp_percent, p, work, U, times, trtri_base);
}

void upper_cholesky_of_inverse_f32(Context& ctx, int64_t K, const float* H, float damp_percent,
                                   PreparedHessian& p, float* work, float* U, CholTimes* times,
                                   int64_t trtri_base) {
  chol_inv<float>(ctx, K, H, damp_percent, p, work, U, times, trtri_base);
}

void upper_cholesky_of_inverse_ref(Context& ctx, int64_t K, const float* H, float damp_percent,
                                   PreparedHessian& p, float* U) {
  std::vector<float> h(K * K);
  CUDA_CHECK(cudaMemcpyAsync(h.data(), H, K * K * sizeof(float), cudaMemcpyDeviceToHost, ctx.stream));
  ctx.sync();
  std::vector<double> Hp(K * K), Hd(K * K), Ud(K * K);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double v = h[(int64_t)p.perm[i] * K + p.perm[j]];
      if (i == j && v == 0) v = 1;
      Hp[i * K + j] = v;
    }
  const gf::DampUsed damp = gf::damp_until_pd(damp_percent, [&](float percent) {
    Hd = Hp;
    for (int64_t i = 0; i < K; ++i) Hd[i * K + i] += gf::damping(percent, p.mean_diag);
    return gf::upper_cholesky_of_inverse(K, Hd.data(), Ud.data());
  });
  p.damp_percent = damp.damp_percent;
  p.damp_raises = damp.raises;
  std::vector<float> u(K * K);
  for (int64_t i = 0; i < K * K; ++i) u[i] = (float)Ud[i];
  CUDA_CHECK(cudaMemcpyAsync(U, u.data(), K * K * sizeof(float), cudaMemcpyHostToDevice, ctx.stream));
  ctx.sync();
}

}  // namespace gfc
