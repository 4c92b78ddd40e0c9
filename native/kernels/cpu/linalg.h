// Dense symmetric positive-definite helpers for GPTQ, in fp64 (K ≤ a few thousand on the CPU).
#pragma once
#include <cstdint>

namespace gf {

// In place: A[K, K] (row-major, symmetric) → its lower Cholesky factor L (A = L Lᵀ); the
// strict upper triangle is zeroed. Returns false when A is not positive definite.
bool cholesky_lower(int64_t K, double* A);

// U[K, K] = upper Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U), from H[K, K] (not modified).
// One factorisation and one triangular inverse: with J the order reversal, J H J = L Lᵀ gives
// H = R Rᵀ with R = J L J upper triangular, so H⁻¹ = (R⁻¹)ᵀ R⁻¹ and U = R⁻¹.
// Returns false when H is not positive definite.
bool upper_cholesky_of_inverse(int64_t K, const double* H, double* U);

// Reference route of the GPTQ code: L = chol(H), H⁻¹ = L⁻ᵀ L⁻¹, U = chol(H⁻¹, upper).
bool upper_cholesky_of_inverse_ref(int64_t K, const double* H, double* U);

}  // namespace gf
