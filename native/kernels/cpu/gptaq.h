// GPTAQ's asymmetric calibration inside the GPTQ solve (docs/gptq.md, "GPTAQ"; Li et al., ICML
// 2025, code: Intelligent-Computing-Lab-Yale/GPTAQ fake_quant/gptaq_utils.py GPTAQ.fasterquant).
// Plain GPTQ fits Ŵ X to W X; GPTAQ fits Ŵ X to W X̃ (X̃: the fp16 model's inputs at the same
// point) by one more term in each column's update, through
//   P = α · triu₁(Cp · Uᵀ) · U       [K, K], strictly upper triangular,
// Cp the cross term C = 2/n Σ (X̃ − X)ᵀ X (the authors' dXXT, same orientation and scale as H)
// permuted by act-order on both sides, with its dead columns zeroed; U the upper Cholesky factor
// of (H + damping)⁻¹ in the same permuted order (gptq.h). gptq_quantize then adds, for column c
// quantized from its current value x_c to q_c: x_c · P[c, j] to the later columns j of the same
// 128-column block, and q_c · P[c, j] to the columns of later blocks (the lazy batch update).
#pragma once
#include <cstdint>

namespace gf {

// GPTAQ's input to gptq_quantize: C [K, K] row-major in the original column order (as H), α ≥ 0.
struct GptaqInput {
  const float* C = nullptr;
  float alpha = 0;
};

// P [K, K] (row-major, permuted order, fp32) from C [K, K] (original order), perm [K] (permuted
// position → original column), dead [K] (original order: 1 where diag H = 0; those columns of C
// count as 0), U [K, K] fp64 upper triangular. Exploits the triangles: A[i, k] = Σ_{m ≥ k}
// Cp[i, m] U[k, m] for k > i only, then P[i, j] = Σ_{i < k ≤ j} A[i, k] U[k, j]; fp64 sums
// (≈ K³/3 multiply-adds, rows in parallel), P rounded to fp32 once.
void gptaq_p(int64_t K, const float* C, const int32_t* perm, const uint8_t* dead, const double* U, float alpha, float* P);

// The same P by the dense formula, fp64 full products (K³ each), then triu and the second
// product over every k: the reference of gptaq_p (checks/gptaq_check.cc). P in fp64.
void gptaq_p_ref(int64_t K, const float* C, const int32_t* perm, const uint8_t* dead, const double* U, double alpha,
                 double* P);

}  // namespace gf
