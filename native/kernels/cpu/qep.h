// QEP's weight correction (Arai & Ichikawa, "Quantization Error Propagation", NeurIPS 2025;
// docs/gptq.md, "QEP"): GPTQ then quantizes W* instead of W, so that Ŵ X approaches the fp16
// model's W X̃ rather than W X.
//   W* = W + α · W C (H + λI)⁻¹,   C = 2/n Σ (X̃ − X)ᵀ X,   H = 2/n Σ XᵀX  (add_batch_cross)
// with X the quantized path's inputs, X̃ the fp16 path's, λ = damp_percent · mean(diag H) after
// the dead-column rule (diag H = 0 → 1), as GPTQ's own damping (raised while not positive
// definite, gf::damp_until_pd). A dead column of W takes no part in W C and gets no correction.
#pragma once
#include <cstdint>
#include <vector>

namespace gf {

struct QepResult {
  float damp_percent = 0;  // the damping used (raised when H + λI was not positive definite)
  int damp_raises = 0;
};

// What the correction takes from H, C and the damping alone, shared by the linears of a group
// (q, k, v read one H and C): the dead columns, the lower Cholesky factor L of (H + λI) in fp64
// and its transpose, and Cᵀ (fp32).
struct QepFactor {
  std::vector<char> dead;  // [K]
  bool any_dead = false;
  std::vector<double> L, Lt;  // [K, K]
  std::vector<float> Ct;      // [K, K]
  QepResult res;
};

// H, C [K, K] row-major (H symmetric; neither modified). Throws std::runtime_error for NaN/Inf
// in H or C, or when H stays non-PD after raising the damping.
QepFactor qep_factor(int64_t K, const float* H, const float* C, float damp_percent);

// W [N, K] row-major, in: the weights, out: W* (fp32; the layer rounds it to fp16 as the
// reference keeps it in the model's dtype), from the factor of its group's H and C. The product
// R = W C is an fp32 GEMM; each row of R is solved against (H + λI) by two triangular
// substitutions in fp64, so no inverse is formed.
void qep_apply(int64_t N, int64_t K, float* W, const QepFactor& f, float alpha);

// qep_factor then qep_apply: one linear's correction.
QepResult qep_correct(int64_t N, int64_t K, float* W, const float* H, const float* C, float alpha, float damp_percent);

// The same in fp64 throughout by plain loops: R = W C summed in fp64, (H + λI) X = Rᵀ solved
// by Gaussian elimination with partial pivoting (K small: tests and checks).
QepResult qep_correct_ref(int64_t N, int64_t K, float* W, const float* H, const float* C, float alpha, float damp_percent);

}  // namespace gf
