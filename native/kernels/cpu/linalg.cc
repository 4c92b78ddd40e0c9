#include "linalg.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.h"

namespace gf {

bool cholesky_lower(int64_t K, double* A) {
  // Left-looking by rows: L[i, j] = (A[i, j] − Σ_{p<j} L[i, p] L[j, p]) / L[j, j]; the inner
  // sums run over contiguous row prefixes.
  for (int64_t i = 0; i < K; ++i) {
    double* Li = A + i * K;
    for (int64_t j = 0; j <= i; ++j) {
      const double* Lj = A + j * K;
      double s = Li[j];
      for (int64_t p = 0; p < j; ++p) s -= Li[p] * Lj[p];
      if (j == i) {
        if (!(s > 0) || !std::isfinite(s)) return false;
        Li[i] = std::sqrt(s);
      } else {
        Li[j] = s / Lj[j];
      }
    }
    for (int64_t j = i + 1; j < K; ++j) Li[j] = 0;
  }
  return true;
}

// Inverse of a lower-triangular L (X = L⁻¹, lower). Row i of X solves X[i, :] L = e_iᵀ:
// X[i, i] = 1 / L[i, i] and, for j < i, X[i, j] = −(Σ_{p=j+1..i} X[i, p] L[p, j]) / L[j, j].
// Rows are independent (threads); Lᵀ is formed first so the sums run over contiguous memory.
static void lower_inverse(int64_t K, const double* L, double* X) {
  std::vector<double> Lt((size_t)(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) Lt[j * K + i] = L[i * K + j];
  parallel_for(K, [&](int64_t i) {
    double* xi = X + i * K;
    for (int64_t j = 0; j < K; ++j) xi[j] = 0;
    xi[i] = 1.0 / L[i * K + i];
    for (int64_t j = i - 1; j >= 0; --j) {
      const double* lj = Lt.data() + j * K;  // lj[p] = L[p, j]
      double s = 0;
      for (int64_t p = j + 1; p <= i; ++p) s += xi[p] * lj[p];
      xi[j] = -s / L[j * K + j];
    }
  });
}

bool upper_cholesky_of_inverse(int64_t K, const double* H, double* U) {
  std::vector<double> A((size_t)(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) A[i * K + j] = H[(K - 1 - i) * K + (K - 1 - j)];
  if (!cholesky_lower(K, A.data())) return false;
  std::vector<double> Linv((size_t)(K * K));
  lower_inverse(K, A.data(), Linv.data());
  // R = J L J, so R⁻¹ = J L⁻¹ J: U[i, j] = L⁻¹[K−1−i, K−1−j] (upper triangular).
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) U[i * K + j] = Linv[(K - 1 - i) * K + (K - 1 - j)];
  return true;
}

bool upper_cholesky_of_inverse_ref(int64_t K, const double* H, double* U) {
  std::vector<double> L(H, H + K * K), Linv((size_t)(K * K)), Hinv((size_t)(K * K));
  if (!cholesky_lower(K, L.data())) return false;
  lower_inverse(K, L.data(), Linv.data());
  // H⁻¹ = L⁻ᵀ L⁻¹: Hinv[i, j] = Σ_p Linv[p, i] Linv[p, j], p ≥ max(i, j)
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t p = std::max(i, j); p < K; ++p) s += Linv[p * K + i] * Linv[p * K + j];
      Hinv[i * K + j] = s;
    }
  if (!cholesky_lower(K, Hinv.data())) return false;
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) U[i * K + j] = j >= i ? Hinv[j * K + i] : 0.0;
  return true;
}

}  // namespace gf
