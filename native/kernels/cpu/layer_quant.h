// One Llama decoder layer quantized on the CPU (GPTQ-SPEC.md, "True-sequential order"): the
// layer's forward steps, every Hessian (add_batch) and every linear's solve, in the order a
// LayerPlan gives (kernels/cpu/layer_plan.h). The CPU engine's one native call per layer.
#pragma once
#include <cstdint>
#include <vector>

#include "gptq.h"
#include "layer_plan.h"
#include "llama.h"

namespace gf {

// One linear's solve: W [N, K] in, its dequantised Q rounded to fp16 out (the layer computes
// with `weight.data = Q.half()` afterwards); H [K, K], or null for round-to-nearest. Outputs
// as gptq_quantize, resized here: codes [N, K], scales/zeros [G, N], g_idx/perm [K].
// Throws std::runtime_error when Q is not finite (and whatever gptq_quantize throws).
struct LinearCodes {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  std::vector<int32_t> zeros, g_idx, perm;
};
// gptaq: GPTAQ's cross term and α for gptq_quantize (gptaq.h), or null.
GptqResult solve_linear(int64_t N, int64_t K, float* W, const float* H, const GptqOptions& o, LinearCodes& out,
                        const GptaqInput* gptaq = nullptr);

// The calibration activations of a layer call, one pointer per window of S tokens:
// x [S, hidden] (in: the layer's inputs; out: its outputs), att [S, heads·D] and h1 [S, hidden]
// scratch kept across the steps (the attention output and the residual after attention).
struct LayerWindows {
  int64_t S = 0;
  std::vector<float*> x, att, h1;
};

// A decoder layer's weights, the seven linears mutable: each is replaced by its Q as solved.
// Shapes as LayerWeightsF32; index lin by Linear.
struct LayerWeightsMut {
  const float* input_norm;  // [hidden]
  const float* post_norm;   // [hidden]
  float* lin[kLinears];     // q [heads·D, H], k/v [kv_heads·D, H], o [H, heads·D], gate/up [F, H], down [H, F]
};

struct LayerQuantOptions {
  GptqOptions gptq;
  bool rtn = false;              // round-to-nearest: no windows, no Hessians
  bool true_sequential = true;   // false: every Hessian from the unquantized layer
  // QEP (kernels/cpu/qep.h): with qep, each group also gathers C = 2/n Σ (X̃ − X)ᵀ X from the
  // fp16 path (FpPath), and every linear with qep_correct[l] is quantized as W* = W + α W C
  // (H + λI)⁻¹ rounded to fp16. Needs an FpPath.
  bool qep = false;
  float qep_alpha = 0;           // α ≥ 0 (src/gptq/settings.ts: (0, 1])
  bool qep_correct[kLinears] = {};
  // GPTAQ (kernels/cpu/gptaq.h): with gptaq, each group gathers C as QEP does (FpPath), and every
  // linear's solve takes it: P = α triu₁(Cp Uᵀ) U in its column updates. Not with qep.
  bool gptaq = false;
  float gptaq_alpha = 0;         // α ≥ 0 (src/gptq/settings.ts: (0, 1])
};

// QEP's (and GPTAQ's) fp16 path through the layer: the unquantized layer's weights (never modified) and its
// own windows, as LayerWindows: x [S, hidden] in, the fp16 model's activations entering the
// layer; out, leaving it. Doubles the activations kept.
struct FpPath {
  LayerWeightsF32 w;
  LayerWindows win;
};

struct LinearResult {
  Linear linear;
  int64_t n = 0, k = 0;
  GptqResult res;
  double seconds = 0;  // the solve
  LinearCodes codes;
};

struct LayerQuantTimes {
  double forward_s = 0, hessian_s = 0, solve_s = 0;
};

// Quantizes the layer: linears come back in the plan's order. `win` is null with rtn (and
// required otherwise); x then holds the outputs of the layer with every linear quantized.
// `fp` is required exactly with o.qep or o.gptaq (same window count and S as win); its x then holds the
// unquantized layer's outputs. Throws std::invalid_argument for a plan the layer cannot run
// (check_plan) or windows that do not match.
void quantize_layer(const LlamaDims& d, const LayerPlan& plan, LayerWeightsMut& w, const LayerQuantOptions& o,
                    LayerWindows* win, FpPath* fp, std::vector<LinearResult>& out, LayerQuantTimes& t);

}  // namespace gf
