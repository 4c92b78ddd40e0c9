// QEP's weight correction (Arai & Ichikawa, "Quantization Error Propagation", NeurIPS 2025;
// docs/gptq.md, "QEP"): GPTQ then quantizes W* instead of W, so that Ŵ X approaches the fp16
// model's W X̃ rather than W X.
//   W* = W + α · W C (H + λI)⁻¹,   C = 2/n Σ (X̃ − X)ᵀ X,   H = 2/n Σ XᵀX  (add_batch_cross)
// with X the quantized path's inputs, X̃ the fp16 path's, λ = damp_percent · mean(diag H) after
// the dead-column rule (diag H = 0 → 1), as GPTQ's own damping (raised while not positive
// definite, gf::damp_until_pd). A dead column of W takes no part in W C and gets no correction.
#pragma once
#include <cstdint>

namespace gf {

struct QepResult {
  float damp_percent = 0;  // the damping used (raised when H + λI was not positive definite)
  int damp_raises = 0;
};

// W [N, K] row-major, in: the weights, out: W* (fp32; the layer rounds it to fp16 as the
// reference keeps it in the model's dtype). H, C [K, K] row-major (H symmetric; neither
// modified). The product R = W C is an fp32 GEMM; (H + λI) is factored once in fp64 (Cholesky)
// and each row of R is solved against it by two triangular substitutions in fp64, so no
// inverse is formed. Throws std::runtime_error when H stays non-PD after raising the damping.
QepResult qep_correct(int64_t N, int64_t K, float* W, const float* H, const float* C, float alpha, float damp_percent);

// The same in fp64 throughout by plain loops: R = W C summed in fp64, (H + λI) X = Rᵀ solved
// by Gaussian elimination with partial pivoting (K small: tests and checks).
QepResult qep_correct_ref(int64_t N, int64_t K, float* W, const float* H, const float* C, float alpha, float damp_percent);

}  // namespace gf
