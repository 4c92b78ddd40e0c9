// Helpers of the GPTQ solve checks (gptq_check.cu): random Hessians, the GPU and CPU solves of
// one W/H with their outputs on the host, and the comparisons the bars are stated in.
#pragma once
#include <cmath>
#include <random>
#include <vector>

#include "../../cpu/gptq.h"
#include "../gptq.h"
#include "check_util.cuh"

namespace gfc::check {

// H = (2/4)·XᵀX from random correlated activations (fp64 sums, rounded to fp32).
inline std::vector<float> random_hessian(std::mt19937& rng, int64_t K, int64_t T, int dead) {
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> X(T * K), H(K * K, 0.0f), colscale(K);
  for (auto& c : colscale) c = std::exp(0.7f * nd(rng));
  for (int64_t t = 0; t < T; ++t) {
    const float common = nd(rng);
    for (int64_t k = 0; k < K; ++k) X[t * K + k] = colscale[k] * (nd(rng) + 0.3f * common);
  }
  for (int d = 0; d < dead; ++d) {
    const int64_t k = (int64_t)(rng() % K);
    for (int64_t t = 0; t < T; ++t) X[t * K + k] = 0;
  }
  std::vector<float> Xt(K * T);  // Xᵀ: the sums below read contiguous rows (same order, same values)
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) Xt[k * T + t] = X[t * K + k];
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) s += (double)Xt[i * T + t] * Xt[j * T + t];
      H[i * K + j] = H[j * K + i] = (float)(2.0 * s / 4.0);
    }
  return H;
}

struct SolveOut {
  std::vector<float> q, scales;
  std::vector<uint8_t> codes;
  std::vector<int32_t> zeros, g_idx;
  std::vector<double> row_loss;
  gf::GptqResult res;
  SolveTimes times;
};

// C (GPTAQ's cross term [K, K], empty: plain GPTQ) and alpha: the fast solve only.
inline SolveOut solve_gpu(Context& ctx, int64_t N, int64_t K, const std::vector<float>& W, const std::vector<float>& H,
                   const gf::GptqOptions& o, bool reference, const SolveConfig& cfg = SolveConfig(),
                   const std::vector<float>& C = {}, float alpha = 0) {
  const int64_t G = o.group_size == -1 ? 1 : K / o.group_size;
  auto dW = upload(ctx, W);
  auto dH = upload(ctx, H);
  DevBuf<uint8_t> codes(N * K);
  DevBuf<float> scales(G * N);
  DevBuf<int32_t> zeros(G * N);
  SolveOut s;
  s.g_idx.resize(K);
  std::vector<int32_t> perm(K);
  DevBuf<float> dC;
  GptaqDevice ga;
  if (!C.empty()) {
    dC = upload(ctx, C);
    ga = GptaqDevice{dC.get(), alpha};
  }
  s.res = reference ? gptq_quantize_ref(ctx, N, K, dW.get(), dH.get(), o, codes.get(), scales.get(), zeros.get(), s.g_idx.data(), perm.data())
                    : gptq_quantize(ctx, N, K, dW.get(), dH.get(), o, codes.get(), scales.get(), zeros.get(), s.g_idx.data(), perm.data(), cfg,
                                    &s.times, &s.row_loss, C.empty() ? nullptr : &ga);
  s.q = download(ctx, dW.get(), N * K);
  s.codes = download(ctx, codes.get(), N * K);
  s.scales = download(ctx, scales.get(), G * N);
  s.zeros = download(ctx, zeros.get(), G * N);
  return s;
}

inline SolveOut solve_cpu(int64_t N, int64_t K, std::vector<float> W, const std::vector<float>& H, const gf::GptqOptions& o,
                          const std::vector<float>& C = {}, float alpha = 0) {
  const int64_t G = o.group_size == -1 ? 1 : K / o.group_size;
  SolveOut s;
  s.codes.resize(N * K);
  s.scales.resize(G * N);
  s.zeros.resize(G * N);
  s.g_idx.resize(K);
  std::vector<int32_t> perm(K);
  const gf::GptaqInput ga{C.empty() ? nullptr : C.data(), alpha};
  s.res = gf::gptq_quantize(N, K, W.data(), H.data(), o, s.codes.data(), s.scales.data(), s.zeros.data(), s.g_idx.data(), perm.data(),
                            C.empty() ? nullptr : &ga);
  s.q = W;
  return s;
}

inline double same_codes(const SolveOut& a, const SolveOut& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.codes.size(); ++i) same += a.codes[i] == b.codes[i];
  return (double)same / a.codes.size();
}
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double)(a[i] - b[i]) * (a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return std::sqrt(num / den);
}

// Fraction of the grids (scale, zero) [G, N] of a and b that are identical, and of those that
// are close: the same zero and the scales within rel relative.
struct GridMatch { double identical, close; };
inline GridMatch same_grids(const SolveOut& a, const SolveOut& b, double rel) {
  size_t same = 0, close = 0;
  for (size_t i = 0; i < a.scales.size(); ++i) {
    same += a.scales[i] == b.scales[i] && a.zeros[i] == b.zeros[i];
    close += a.zeros[i] == b.zeros[i] && std::fabs(a.scales[i] - b.scales[i]) <= rel * std::fabs(b.scales[i]);
  }
  return {(double)same / a.scales.size(), (double)close / a.scales.size()};
}

}  // namespace gfc::check
