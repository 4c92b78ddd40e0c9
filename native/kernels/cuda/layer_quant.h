// One Llama decoder layer quantized on the GPU, true-sequential (GPTQ-SPEC.md) along a
// gf::LayerPlan: [k, v, q] from RMSNorm1(x), [o] from the attention output, [up, gate] from
// RMSNorm2(h1), [down] from silu(gate)·up, each group's Hessian gathered with the earlier
// groups already quantized; the layer's outputs (all weights quantized) replace the inputs in X for the next layer.
// Linears sharing an input are solved as one stack of rows (one Hessian, one Cholesky).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <vector>

#include "../cpu/layer_plan.h"
#include "gptq.h"

namespace gfc {

struct LayerDims {
  int64_t hidden, ffn, heads, kv_heads, head_dim;
  float eps, rope_theta;
};

// Device fp16 weights, row-major [out, in] as in the checkpoint. Stacks: qkv = [q; k; v]
// [(heads + 2·kv_heads)·D, hidden], gate_up = [gate; up] [2·ffn, hidden]. The linears are
// replaced by their dequantised Q (fp16), as the reference's layer computes with afterwards.
struct LayerDev {
  __half* qkv;
  __half* o;        // [hidden, heads·D]
  __half* gate_up;
  __half* down;     // [hidden, ffn]
  const __half* input_norm;  // [hidden]
  const __half* post_norm;   // [hidden]
};

struct LayerQuantOptions {
  gf::LayerPlan plan;           // which linears are solved at each forward point, in which order
                                // (src/model/layer-plan.ts; the stacks must be qkv = [q; k; v],
                                // gate_up = [gate; up], as LayerDev holds them: gf::check_plan)
  gf::GptqOptions gptq;
  SolveConfig solve;
  int64_t chunk_windows = 4;    // windows per forward/Hessian chunk
  int64_t attention_qc = 1024;  // queries per attention chunk
  double mem_budget_gb = 40;    // act cache for step 5 within this much device memory in use
  bool want_codes = true;       // codes/scales/zeros (fp32)/g_idx/perm to the host
  bool want_packed = false;     // AutoGPTQ v1 qweight/qzeros/fp16 scales packed on the GPU
  // QEP (qep.h; docs/gptq.md, "QEP"): with qep, quantize_layer carries the fp16 path Xf through
  // the unquantized layer beside X, gathers C = 2/n Σ (X̃ − X)ᵀ X beside the H of every group with
  // a corrected linear (qep_correct[l], α > 0), and solves each such linear's W* = W + α W C
  // (H + λI)⁻¹ rounded to fp16 instead of W. down_proj cannot be corrected here (its C would be
  // ffn² fp32 beside its H and the correction's ffn² fp64 factor: refused by qep_options_problem).
  bool qep = false;
  float qep_alpha = 0;          // α ≥ 0; 0 gives plain GPTQ bit for bit (the fp path still runs)
  bool qep_correct[gf::kLinears] = {};
  // GPTAQ (gptq.h GptaqDevice; docs/gptq.md, "GPTAQ"; the CPU engine's cpu/layer_quant.h): with
  // gptaq, the fp16 path runs as with QEP and every group gathers its cross term C (down_proj's
  // too: C_down ffn × ffn fp32 in step 4, from the fp path's swiglu activations), each stack's
  // solve taking its group's C with α. Not with qep.
  bool gptaq = false;
  float gptaq_alpha = 0;        // α ≥ 0 (src/gptq/settings.ts: (0, 1]); 0: the solve with P = 0
};

// What is wrong with the QEP and GPTAQ fields of `o` for the CUDA layer, or an empty string.
std::string qep_options_problem(const LayerQuantOptions& o);

struct LinearOut {
  std::string name;              // "self_attn.q_proj", ...
  int64_t n = 0, k = 0;
  gf::GptqResult res;
  double seconds = 0;            // the stack's Cholesky + solve (shared by its members)
  std::vector<uint8_t> codes;    // [n, k]
  std::vector<float> scales;     // [G, n]
  std::vector<int32_t> zeros;    // [G, n]
  std::vector<int32_t> g_idx, perm;  // [k]
  std::vector<int32_t> qweight, qzeros;  // want_packed
  std::vector<uint16_t> scales16;
};

struct LayerTimes {
  double forward_s = 0, attention_s = 0, hessian_s = 0, chol_s = 0, solve_s = 0, pack_s = 0;
  double qep_s = 0;              // QEP's corrections (host clock; the cross terms are in hessian_s,
                                 // the fp16 path's forward in forward_s / attention_s)
  CholTimes chol;
  double forward_flops = 0, hessian_flops = 0, chol_flops = 0, solve_flops = 0, qep_flops = 0;
  double cached_fraction = 0;    // step-5 activations kept from step 4
  double peak_buffers_gb = 0;    // DevBuf peak during the call (library workspaces excluded)
};

// X [T, hidden] fp16 (device): in, the layer's inputs for T = windows·S tokens; out, its outputs.
// Xf [T, hidden] fp16 (device), exactly with o.qep or o.gptaq (else null): in, the fp16 model's activations
// entering the layer (QEP's fp16 path); out, the unquantized layer's outputs. w's linears are
// copied on the device first with QEP/GPTAQ (the fp16 path computes with the originals).
// Linears come back in the order of o.plan (the reference's: k, v, q, o, up, gate, down).
// Throws std::invalid_argument for a plan the layer cannot run (gf::check_plan) or QEP options
// it cannot honour (qep_options_problem).
//
// Memory with QEP at Llama-2-70B (hidden 8192, ffn 28672, 64/8 heads, 128 × 4096 tokens,
// 4-window chunks): Xf 8.6 GB beside X 8.6 GB (the session's) and ATT 8.6 GB (steps 2-3); the
// original weights 1.7 GB (qkv and o released after step 2); per chunk nrmf 0.27 GB, ATTf
// 0.27 GB and the difference D 0.27 GB; C 0.27 GB beside H; a correction's fp64 factor 0.54 GB
// and its row pieces 0.54 GB. Peak in steps 1-3 ≈ 26 (activations) + 3.4 (weights, both copies)
// + 4 (chunk buffers) + 1.6 (H, C, correction) ≈ 35 GB, within 48 GB. Step 4 allocates nothing
// for QEP; its activation cache is sized from the memory in use (device_used_gb), so Xf and the
// weight copies shrink it within mem_budget_gb.
// GPTAQ adds, at 70B: C of every group (0.27 GB beside H in steps 1-3, the solve's P and its
// two K² temporaries, 0.8 GB), and in step 4 C_down 3.3 GB, the fp path's activations of one
// chunk (0.94 GB; the difference D reuses the gate/up buffer) and the down solve's P with its
// temporaries (9.9 GB at its peak): the step-4 cache's estimate counts them, so with GPTAQ it
// keeps fewer of step 5's activations.
void quantize_layer(Context& ctx, const LayerDims& d, int64_t S, int64_t T, __half* X, __half* Xf,
                    const LayerDev& w, const LayerQuantOptions& o, std::vector<LinearOut>& out,
                    LayerTimes* times = nullptr);

}  // namespace gfc
