// Checks of native/kernels/cuda/hessian.h: xtx_accumulate (block rows nb = 1, 3, 8; alpha,
// beta; accumulation over two calls; row strides > K; K below one 128 tile and not a multiple
// of it) + symmetrize_lower, and the GPU reference xtx_accumulate_ref, against G = β·G0 + α·XᵀX
// in fp64 on the host; symmetrize_lower alone (bit-exact); timings per nb.
//   build/cuda/checks/hessian_check          exit 0 only when every case passes
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../hessian.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

// ref = beta·G0 + alpha·XᵀX, absx = |alpha|·Σ_t |x_ti·x_tj| (fp64, full matrix).
void xtx_ref(int64_t T, int64_t K, const std::vector<__half>& X, int64_t ldx, double alpha, double beta, const std::vector<float>& G0,
             std::vector<double>& ref, std::vector<double>& absx) {
  ref.assign(K * K, 0);
  absx.assign(K * K, 0);
  std::vector<double> x(T * K);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < K; ++i) x[t * K + i] = h2f(X[t * ldx + i]);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0, a = 0;
      for (int64_t t = 0; t < T; ++t) { s += x[t * K + i] * x[t * K + j]; a += std::fabs(x[t * K + i] * x[t * K + j]); }
      ref[i * K + j] = alpha * s + (G0.empty() ? 0.0 : beta * G0[i * K + j]);
      ref[j * K + i] = alpha * s + (G0.empty() ? 0.0 : beta * G0[j * K + i]);
      absx[i * K + j] = absx[j * K + i] = std::fabs(alpha) * a;
    }
}

// fp16 products are exact in fp32; the fp32 sum over T of them errs by ≤ T·u32·Σ|x·x| (2T·u32:
// tensor-core adds may truncate); alpha·s, beta·g and their sum: 3 more fp32 roundings.
double xtx_tol(int64_t T, double absx, double ref, double bg) { return 2.0 * T * kFloatU * absx + 4 * kFloatU * (std::fabs(ref) + std::fabs(bg)); }

void check_xtx(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t T, K, pad; int nb; float alpha, beta; };
  const Case cases[] = {{1000, 384, 0, 3, 0.5f, 0.0f}, {77, 200, 0, 8, 2.0f / 77, 0.0f}, {513, 1000, 0, 8, 0.25f, 0.5f},
                        {64, 64, 8, 8, 1.0f, 0.0f},    {1, 5, 3, 1, 1.0f, 1.0f},          {300, 640, 0, 1, 1.0f, 2.0f}};
  for (const Case& c : cases) {
    const int64_t ldx = c.K + c.pad;
    const auto X = random_halves(rng, c.T * ldx, 1.0f);
    std::vector<float> G0;
    if (c.beta != 0) {  // a symmetric G0 to accumulate onto
      G0 = random_floats(rng, c.K * c.K, 10.0f);
      for (int64_t i = 0; i < c.K; ++i)
        for (int64_t j = 0; j < i; ++j) G0[j * c.K + i] = G0[i * c.K + j];
    }
    std::vector<double> ref, absx;
    xtx_ref(c.T, c.K, X, ldx, c.alpha, c.beta, G0, ref, absx);
    auto dX = upload(ctx, X);
    DevBuf<float> G(c.K * c.K);
    const std::string shape = strf("T=%lld K=%lld ldx=K+%lld alpha=%g beta=%g", (long long)c.T, (long long)c.K, (long long)c.pad, c.alpha, c.beta);
    for (int variant = 0; variant < 2; ++variant) {
      if (c.beta != 0) {
        const auto g0 = upload(ctx, G0);
        CUDA_CHECK(cudaMemcpyAsync(G.get(), g0.get(), c.K * c.K * sizeof(float), cudaMemcpyDeviceToDevice, ctx.stream));
        ctx.sync();
      } else if (variant == 0) {
        poison(ctx, G.get(), c.K * c.K);  // beta = 0: cuBLAS does not read G (NaN stays out)
      } else {
        CUDA_CHECK(cudaMemsetAsync(G.get(), 0, c.K * c.K * sizeof(float), ctx.stream));  // the reference reads β·G
      }
      if (variant == 0) {
        xtx_accumulate(ctx, c.T, c.K, dX.get(), ldx, G.get(), c.alpha, c.beta, c.nb);
        symmetrize_lower(ctx, c.K, G.get());
      } else {
        xtx_accumulate_ref(ctx, c.T, c.K, dX.get(), ldx, G.get(), c.alpha, c.beta);
      }
      validate_result(strf("%s %s", variant ? "xtx_accumulate_ref" : strf("xtx_accumulate nb=%d + symmetrize_lower", c.nb).c_str(), shape.c_str()),
                      to_double(download(ctx, G.get(), c.K * c.K)), ref,
                      [&](size_t i) { return xtx_tol(c.T, absx[i], ref[i], G0.empty() ? 0.0 : c.beta * G0[i]); });
    }
  }
  // Two calls (windows): H = (2/n)·(X1ᵀX1 + X2ᵀX2) as a pipeline accumulates it.
  const int64_t T1 = 500, T2 = 300, K = 256;
  const auto X = random_halves(rng, (T1 + T2) * K, 1.0f);
  std::vector<double> ref, absx;
  const float alpha = 2.0f / 2;
  xtx_ref(T1 + T2, K, X, K, alpha, 0, {}, ref, absx);
  auto dX = upload(ctx, X);
  DevBuf<float> G(K * K);
  poison(ctx, G.get(), K * K);
  xtx_accumulate(ctx, T1, K, dX.get(), K, G.get(), alpha, 0.0f);
  xtx_accumulate(ctx, T2, K, dX.get() + T1 * K, K, G.get(), alpha, 1.0f);
  symmetrize_lower(ctx, K, G.get());
  validate_result("xtx_accumulate over two calls (beta 0 then 1) + symmetrize_lower, T=500+300 K=256",
                  to_double(download(ctx, G.get(), K * K)), ref, [&](size_t i) { return xtx_tol(T1 + T2, absx[i], ref[i], absx[i]); });  // |first call| ≤ Σ|x·x|
}

void check_symmetrize(Context& ctx, std::mt19937& rng) {
  for (int64_t K : {int64_t(1), int64_t(31), int64_t(33), int64_t(100)}) {
    const auto G0 = random_floats(rng, K * K, 1.0f);
    std::vector<float> ref(G0);
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = i + 1; j < K; ++j) ref[i * K + j] = G0[j * K + i];  // upper ← lower, lower and diagonal kept
    auto G = upload(ctx, G0);
    symmetrize_lower(ctx, K, G.get());
    validate_exact(strf("symmetrize_lower K=%lld (32×32 tiles, partial ones)", (long long)K), download(ctx, G.get(), K * K), ref);
  }
}

void timings(Context& ctx, std::mt19937& rng) {
  const int64_t T = 16384, K = 8192;  // 4 windows of 4096 tokens, Llama-2-70B hidden
  DevBuf<__half> X(T * K);
  fill_device_halves(ctx, X.get(), T * K, 1.0f, rng());
  DevBuf<float> G(K * K);
  for (int nb : {1, 2, 4, 8}) {
    const double ms = time_ms(ctx, 5, [&] { xtx_accumulate(ctx, T, K, X.get(), K, G.get(), 1.0f, 1.0f, nb); });
    timing_line(strf("xtx_accumulate T=%lld K=%lld nb=%d", (long long)T, (long long)K, nb), ms,
                strf("%.1f TFLOP/s (%.0f %% of the full GEMM's FLOPs)", xtx_flops(T, K, nb) / ms / 1e9, 100 * xtx_flops(T, K, nb) / (2.0 * T * K * K)));
  }
  const double ms = time_ms(ctx, 10, [&] { symmetrize_lower(ctx, K, G.get()); });
  timing_line(strf("symmetrize_lower K=%lld", (long long)K), ms, strf("%.0f GB/s", 4.0 * K * K / ms / 1e6));
}

}  // namespace

int main() {
  return run_check("hessian_check", [](Context& ctx) {
    std::mt19937 rng(1306);
    check_xtx(ctx, rng);
    check_symmetrize(ctx, rng);
    if (timing_enabled()) timings(ctx, rng);
  });
}
