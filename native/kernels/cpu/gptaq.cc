#include "gptaq.h"

#include <vector>

#include "parallel.h"

namespace gf {

void gptaq_p(int64_t K, const float* C, const int32_t* perm, const uint8_t* dead, const double* U, float alpha, float* P) {
  // gptaq_utils.py: self.dXXT[:, dead] = 0; self.dXXT = self.dXXT[perm][:, perm]
  // P = alpha * ((self.dXXT @ Hinv.T).triu_(diagonal=1)) @ Hinv
  parallel_for(K, [&](int64_t i) {
    std::vector<double> cp((size_t)K), a((size_t)K, 0.0), p((size_t)K, 0.0);
    const float* crow = C + (int64_t)perm[i] * K;
    for (int64_t m = 0; m < K; ++m) cp[m] = dead[perm[m]] ? 0.0 : (double)crow[perm[m]];
    // A[i, k] = Σ_m Cp[i, m] U[k, m], U[k, m] = 0 for m < k; only k > i survives triu₁.
    for (int64_t k = i + 1; k < K; ++k) {
      const double* u = U + k * K;
      double s = 0;
      for (int64_t m = k; m < K; ++m) s += cp[m] * u[m];
      a[k] = s;
    }
    // P[i, :] = Σ_{k > i} A[i, k] U[k, :], U[k, j] = 0 for j < k.
    for (int64_t k = i + 1; k < K; ++k) {
      const double f = a[k];
      const double* u = U + k * K;
      for (int64_t j = k; j < K; ++j) p[j] += f * u[j];
    }
    for (int64_t j = 0; j < K; ++j) P[i * K + j] = (float)((double)alpha * p[j]);
  });
}

void gptaq_p_ref(int64_t K, const float* C, const int32_t* perm, const uint8_t* dead, const double* U, double alpha,
                 double* P) {
  std::vector<double> Cp((size_t)(K * K)), A((size_t)(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      const double c = C[(int64_t)perm[i] * K + perm[j]];
      Cp[i * K + j] = dead[perm[j]] ? 0.0 : c;
    }
  for (int64_t i = 0; i < K; ++i)
    for (int64_t k = 0; k < K; ++k) {
      double s = 0;
      for (int64_t m = 0; m < K; ++m) s += Cp[i * K + m] * U[k * K + m];  // (Cp Uᵀ)[i, k]
      A[i * K + k] = k > i ? s : 0.0;                                      // triu, diagonal 1
    }
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += A[i * K + k] * U[k * K + j];
      P[i * K + j] = alpha * s;
    }
}

}  // namespace gf
