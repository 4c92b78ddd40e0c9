#include "qep.h"

#include <cmath>
#include <stdexcept>
#include <utility>
#include <vector>

#include "../common/gptq_math.h"
#include "gemm.h"
#include "linalg.h"
#include "parallel.h"

namespace gf {

namespace {

// What both routes share: the finite checks, H in fp64 with the dead-column rule (diag H = 0
// → 1), the dead columns and the mean of the diagonal (damping's base, as fasterquant's).
struct QepSetup {
  std::vector<double> Hd;    // [K, K]
  std::vector<char> dead;    // [K]
  bool any_dead = false;
  double mean_diag = 0;
};

QepSetup setup(int64_t K, const float* H, const float* C) {
  for (int64_t i = 0; i < K * K; ++i) {
    if (!std::isfinite(H[i])) throw std::runtime_error("qep: the Hessian has NaN or Inf entries");
    if (!std::isfinite(C[i])) throw std::runtime_error("qep: the cross term has NaN or Inf entries");
  }
  QepSetup s;
  s.Hd.assign(H, H + K * K);
  s.dead.assign((size_t)K, 0);
  for (int64_t i = 0; i < K; ++i)
    if (s.Hd[i * K + i] == 0) {
      s.Hd[i * K + i] = 1;
      s.dead[i] = 1;
      s.any_dead = true;
    }
  for (int64_t i = 0; i < K; ++i) s.mean_diag += s.Hd[i * K + i];
  s.mean_diag /= (double)K;
  return s;
}

// Factors Hd + λI (λ raised while not PD) into its lower Cholesky factor L [K, K].
QepResult factor_damped(int64_t K, const QepSetup& s, float damp_percent, std::vector<double>& L) {
  const DampUsed d = damp_until_pd(damp_percent, [&](float dp) {
    L = s.Hd;
    const double add = damping(dp, s.mean_diag);
    for (int64_t i = 0; i < K; ++i) L[i * K + i] += add;
    return cholesky_lower(K, L.data());
  });
  return QepResult{d.damp_percent, d.raises};
}

}  // namespace

QepFactor qep_factor(int64_t K, const float* H, const float* C, float damp_percent) {
  QepSetup s = setup(K, H, C);
  QepFactor f;
  f.res = factor_damped(K, s, damp_percent, f.L);
  // Cᵀ: R = W_live · C is computed as A·Bᵀ with B = Cᵀ (row j of B is column j of C).
  f.Ct.resize((size_t)(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) f.Ct[j * K + i] = C[i * K + j];
  // Lt = Lᵀ keeps the back substitution's sums contiguous.
  f.Lt.assign((size_t)(K * K), 0.0);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t p = 0; p <= i; ++p) f.Lt[p * K + i] = f.L[i * K + p];
  f.dead = std::move(s.dead);
  f.any_dead = s.any_dead;
  return f;
}

void qep_apply(int64_t N, int64_t K, float* W, const QepFactor& f, float alpha) {
  const std::vector<double>& L = f.L;
  const std::vector<double>& Lt = f.Lt;
  std::vector<float> R((size_t)(N * K));
  std::vector<float> live;
  const float* A = W;
  if (f.any_dead) {
    live.assign(W, W + N * K);
    for (int64_t r = 0; r < N; ++r)
      for (int64_t i = 0; i < K; ++i)
        if (f.dead[i]) live[r * K + i] = 0;
    A = live.data();
  }
  gemm_nt_parallel(N, K, K, A, K, f.Ct.data(), K, R.data(), K, false);
  // Row r of ΔW solves (H + λI) x = R[r]ᵀ: L y = R[r]ᵀ, then Lᵀ x = y.
  parallel_for(N, [&](int64_t r) {
    std::vector<double> y((size_t)K);
    const float* rr = R.data() + r * K;
    for (int64_t i = 0; i < K; ++i) {
      const double* li = L.data() + i * K;
      double acc = rr[i];
      for (int64_t p = 0; p < i; ++p) acc -= li[p] * y[p];
      y[i] = acc / li[i];
    }
    for (int64_t i = K - 1; i >= 0; --i) {
      const double* ti = Lt.data() + i * K;
      double acc = y[i];
      for (int64_t p = i + 1; p < K; ++p) acc -= ti[p] * y[p];
      y[i] = acc / ti[i];
    }
    float* w = W + r * K;
    for (int64_t i = 0; i < K; ++i) w[i] = (float)((double)w[i] + (double)alpha * y[i]);
  });
}

QepResult qep_correct(int64_t N, int64_t K, float* W, const float* H, const float* C, float alpha, float damp_percent) {
  const QepFactor f = qep_factor(K, H, C, damp_percent);
  qep_apply(N, K, W, f, alpha);
  return f.res;
}

QepResult qep_correct_ref(int64_t N, int64_t K, float* W, const float* H, const float* C, float alpha, float damp_percent) {
  const QepSetup s = setup(K, H, C);
  std::vector<double> L;
  const QepResult res = factor_damped(K, s, damp_percent, L);  // the damping rule; L itself is not used
  const double add = damping(res.damp_percent, s.mean_diag);
  // A = Hd + λI [K, K]; B = Rᵀ [K, N] with R = W_live C in fp64.
  std::vector<double> A = s.Hd, B((size_t)(K * N), 0.0);
  for (int64_t i = 0; i < K; ++i) A[i * K + i] += add;
  for (int64_t r = 0; r < N; ++r)
    for (int64_t j = 0; j < K; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < K; ++p)
        if (!s.dead[p]) acc += (double)W[r * K + p] * C[p * K + j];
      B[j * N + r] = acc;
    }
  // Gaussian elimination with partial pivoting, then back substitution: B ← A⁻¹ B.
  for (int64_t c = 0; c < K; ++c) {
    int64_t piv = c;
    for (int64_t i = c + 1; i < K; ++i)
      if (std::fabs(A[i * K + c]) > std::fabs(A[piv * K + c])) piv = i;
    if (piv != c) {
      for (int64_t j = 0; j < K; ++j) std::swap(A[c * K + j], A[piv * K + j]);
      for (int64_t j = 0; j < N; ++j) std::swap(B[c * N + j], B[piv * N + j]);
    }
    for (int64_t i = c + 1; i < K; ++i) {
      const double f = A[i * K + c] / A[c * K + c];
      if (f == 0) continue;
      for (int64_t j = c; j < K; ++j) A[i * K + j] -= f * A[c * K + j];
      for (int64_t j = 0; j < N; ++j) B[i * N + j] -= f * B[c * N + j];
    }
  }
  for (int64_t i = K - 1; i >= 0; --i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = B[i * N + j];
      for (int64_t p = i + 1; p < K; ++p) acc -= A[i * K + p] * B[p * N + j];
      B[i * N + j] = acc / A[i * K + i];
    }
  for (int64_t r = 0; r < N; ++r)
    for (int64_t i = 0; i < K; ++i) W[r * K + i] = (float)((double)W[r * K + i] + (double)alpha * B[i * N + r]);
  return res;
}

}  // namespace gf
