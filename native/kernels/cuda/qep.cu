#include "qep.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../common/gptq_math.h"

namespace gfc {

namespace {

// D[t, k] = (Xf[t, k] − X[t, k]) / 2 rounded to fp16 (row stride ldx in, K out).
__global__ void half_diff_kernel(int64_t T, int64_t K, const __half* Xf, const __half* X, int64_t ldx, __half* D) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < T * K; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = i / K, k = i % K;
    D[i] = __float2half_rn((__half2float(Xf[t * ldx + k]) - __half2float(X[t * ldx + k])) * 0.5f);
  }
}

__global__ void cross_ref_kernel(int64_t T, int64_t K, const __half* Xf, const __half* X, int64_t ldx, float* C,
                                 float alpha, float beta) {
  const int64_t i = blockIdx.y, j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= K) return;
  double s = 0;
  for (int64_t t = 0; t < T; ++t)
    s += ((double)__half2float(Xf[t * ldx + i]) - (double)__half2float(X[t * ldx + i])) * (double)__half2float(X[t * ldx + j]);
  C[i * K + j] = (float)((double)beta * (beta == 0 ? 0.0 : (double)C[i * K + j]) + (double)alpha * s);
}

// bad |= 1 where a has a non-finite entry, |= 2 where b has.
__global__ void finite2_kernel(int64_t n, const float* a, const float* b, int* bad) {
  int local = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    if (!isfinite(a[i])) local |= 1;
    if (!isfinite(b[i])) local |= 2;
  }
  if (local) atomicOr(bad, local);
}

__global__ void diag_kernel(int64_t K, const float* H, float* diag) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < K) diag[i] = H[i * K + i];
}

// A [K, K] fp64 (symmetric: row- and column-major agree) = H with dead diagonal entries → 1,
// plus `add` on the diagonal.
__global__ void build_damped_kernel(int64_t K, const float* H, double add, double* A) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (c >= K) return;
  double v = H[r * K + c];
  if (r == c) v = (v == 0 ? 1.0 : v) + add;
  A[r * K + c] = v;
}

// Wl [n, K] fp32 = W's rows with the dead columns zeroed (the CPU engine's W_live).
template <class Wt>
__global__ void live_rows_kernel(int64_t n, int64_t K, const Wt* W, const uint8_t* dead, float* Wl) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n * K; i += (int64_t)gridDim.x * blockDim.x)
    Wl[i] = dead[i % K] ? 0.0f : (float)W[i];
}

__global__ void widen_kernel(int64_t n, const float* a, double* b) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    b[i] = (double)a[i];
}

__device__ __forceinline__ void store_w(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_w(__half* p, float v) { *p = __float2half_rn(v); }

// W[i] ← (float)((double)W[i] + α·Y[i]) (then fp16 for a half W), Y [n, K] = the rows' solutions.
template <class Wt>
__global__ void apply_kernel(int64_t n, Wt* W, const double* Y, float alpha) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store_w(W + i, (float)((double)(float)W[i] + (double)alpha * Y[i]));
}

template <class Wt>
gf::QepResult correct(Context& ctx, int64_t N, int64_t K, Wt* W, const float* H, const float* C, float alpha,
                      float damp_percent, const RowRanges& rows, int64_t row_chunk) {
  if (N < 1 || K < 1 || row_chunk < 1) throw std::invalid_argument("qep_correct: N, K and row_chunk must be positive");
  for (auto& r : rows)
    if (r.first < 0 || r.second > N || r.first > r.second)
      throw std::invalid_argument("qep_correct: row range [" + std::to_string(r.first) + ", " + std::to_string(r.second) +
                                  ") not within [0, " + std::to_string(N) + ")");
  // The finite checks, the dead columns and mean(diag H) after the dead-column fix, summed in
  // column order in fp64 as the CPU engine's setup.
  DevBuf<int> bad(1);
  DevBuf<float> diag(K);
  CUDA_CHECK(cudaMemsetAsync(bad.get(), 0, sizeof(int), ctx.stream));
  finite2_kernel<<<1024, 256, 0, ctx.stream>>>(K * K, H, C, bad.get());
  CUDA_LAUNCH_CHECK();
  diag_kernel<<<blocks_for(K, 256), 256, 0, ctx.stream>>>(K, H, diag.get());
  CUDA_LAUNCH_CHECK();
  std::vector<float> d(K);
  int hbad = 0;
  CUDA_CHECK(cudaMemcpyAsync(d.data(), diag.get(), K * sizeof(float), cudaMemcpyDeviceToHost, ctx.stream));
  CUDA_CHECK(cudaMemcpyAsync(&hbad, bad.get(), sizeof(int), cudaMemcpyDeviceToHost, ctx.stream));
  ctx.sync();
  if (hbad & 1) throw std::runtime_error("qep: the Hessian has NaN or Inf entries");
  if (hbad & 2) throw std::runtime_error("qep: the cross term has NaN or Inf entries");
  std::vector<uint8_t> dead(K, 0);
  double mean_diag = 0;
  for (int64_t i = 0; i < K; ++i) {
    double v = d[i];
    if (v == 0) { v = 1; dead[i] = 1; }
    mean_diag += v;
  }
  mean_diag /= (double)K;
  DevBuf<uint8_t> dead_d(K);
  CUDA_CHECK(cudaMemcpyAsync(dead_d.get(), dead.data(), K, cudaMemcpyHostToDevice, ctx.stream));
  // H + λI = L Lᵀ (fp64, lower), λ raised while potrf reports not PD.
  DevBuf<double> A(K * K);
  DevBuf<int> info(1);
  int lwork = 0;
  CUSOLVER_CHECK(cusolverDnDpotrf_bufferSize(ctx.solver, CUBLAS_FILL_MODE_LOWER, (int)K, A.get(), (int)K, &lwork));
  DevBuf<double> ws((size_t)std::max(lwork, 1));
  const gf::DampUsed used = gf::damp_until_pd(damp_percent, [&](float percent) {
    build_damped_kernel<<<dim3(blocks_for(K, 256), (unsigned)K), 256, 0, ctx.stream>>>(K, H, gf::damping(percent, mean_diag),
                                                                                       A.get());
    CUDA_LAUNCH_CHECK();
    CUSOLVER_CHECK(cusolverDnDpotrf(ctx.solver, CUBLAS_FILL_MODE_LOWER, (int)K, A.get(), (int)K, ws.get(), lwork, info.get()));
    int h = 0;
    CUDA_CHECK(cudaMemcpyAsync(&h, info.get(), sizeof(int), cudaMemcpyDeviceToHost, ctx.stream));
    ctx.sync();
    if (h < 0) throw std::runtime_error("qep potrf: invalid argument " + std::to_string(-h));
    return h == 0;
  });
  // Per piece of nb rows: Wl [nb, K] = W_live rows; R = Wl·C, i.e. column-major Rᵀ [K, nb] = Cᵀ·Wlᵀ
  // with both read column-major (C row-major is Cᵀ column-major); Y = (H + λI)⁻¹ Rᵀ (potrs on
  // the fp64 copy of R: column r of Y is row r's solution, i.e. Y row-major [nb, K]); W += α·Y.
  const int64_t chunk = std::min<int64_t>(row_chunk, N);
  DevBuf<float> Wl(chunk * K), R(chunk * K);
  DevBuf<double> Y(chunk * K);
  CUBLAS_CHECK(cublasSetMathMode(ctx.blas, CUBLAS_DEFAULT_MATH));  // fp32, as the CPU engine's GEMM
  const float one = 1, zero = 0;
  int potrs_info = 0;
  for (auto& range : rows)
    for (int64_t r = range.first; r < range.second; r += chunk) {
      const int64_t nb = std::min(chunk, range.second - r);
      live_rows_kernel<Wt><<<2048, 256, 0, ctx.stream>>>(nb, K, W + r * K, dead_d.get(), Wl.get());
      CUDA_LAUNCH_CHECK();
      CUBLAS_CHECK(cublasSgemm(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)K, (int)nb, (int)K, &one, C, (int)K, Wl.get(),
                               (int)K, &zero, R.get(), (int)K));
      widen_kernel<<<2048, 256, 0, ctx.stream>>>(nb * K, R.get(), Y.get());
      CUDA_LAUNCH_CHECK();
      CUSOLVER_CHECK(cusolverDnDpotrs(ctx.solver, CUBLAS_FILL_MODE_LOWER, (int)K, (int)nb, A.get(), (int)K, Y.get(), (int)K,
                                      info.get()));
      CUDA_CHECK(cudaMemcpyAsync(&potrs_info, info.get(), sizeof(int), cudaMemcpyDeviceToHost, ctx.stream));
      apply_kernel<Wt><<<2048, 256, 0, ctx.stream>>>(nb * K, W + r * K, Y.get(), alpha);
      CUDA_LAUNCH_CHECK();
      ctx.sync();  // potrs_info is read now; the pieces reuse Wl, R, Y (same stream)
      if (potrs_info != 0) throw std::runtime_error("qep potrs: invalid argument " + std::to_string(-potrs_info));
    }
  ctx.sync();
  gf::QepResult res;
  res.damp_percent = used.damp_percent;
  res.damp_raises = used.raises;
  return res;
}

}  // namespace

void cross_accumulate(Context& ctx, int64_t T, int64_t K, const __half* Xf, const __half* X, int64_t ldx, __half* D,
                      float* C, float alpha, float beta) {
  half_diff_kernel<<<4096, 256, 0, ctx.stream>>>(T, K, Xf, X, ldx, D);
  CUDA_LAUNCH_CHECK();
  // Column-major (cuBLAS): X row-major [T, K] is Xc [K, T] (ld ldx), D is Dc [K, T] (ld K), and
  // C row-major is Cc = Cᵀ column-major: Cc[j, i] = C[i, j] = Σ_t D[t, i] X[t, j] = (Xc·Dcᵀ)[j, i].
  const float a2 = 2.0f * alpha;  // D holds half the difference
  CUBLAS_CHECK(cublasGemmEx(ctx.blas, CUBLAS_OP_N, CUBLAS_OP_T, (int)K, (int)K, (int)T, &a2, X, CUDA_R_16F, (int)ldx, D,
                            CUDA_R_16F, (int)K, &beta, C, CUDA_R_32F, (int)K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void cross_accumulate_ref(Context& ctx, int64_t T, int64_t K, const __half* Xf, const __half* X, int64_t ldx, float* C,
                          float alpha, float beta) {
  cross_ref_kernel<<<dim3(blocks_for(K, 128), (unsigned)K), 128, 0, ctx.stream>>>(T, K, Xf, X, ldx, C, alpha, beta);
  CUDA_LAUNCH_CHECK();
}

double cross_flops(int64_t T, int64_t K) { return 2.0 * (double)T * K * K; }

double qep_flops(int64_t n, int64_t K) { return 4.0 * (double)n * K * K + (double)K * K * K / 3.0; }

gf::QepResult qep_correct(Context& ctx, int64_t N, int64_t K, float* W, const float* H, const float* C, float alpha,
                          float damp_percent, const RowRanges& rows, int64_t row_chunk) {
  return correct<float>(ctx, N, K, W, H, C, alpha, damp_percent, rows, row_chunk);
}

gf::QepResult qep_correct_f16(Context& ctx, int64_t N, int64_t K, __half* W, const float* H, const float* C,
                              float alpha, float damp_percent, const RowRanges& rows, int64_t row_chunk) {
  return correct<__half>(ctx, N, K, W, H, C, alpha, damp_percent, rows, row_chunk);
}

}  // namespace gfc
