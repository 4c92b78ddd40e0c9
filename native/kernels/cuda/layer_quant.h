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
};

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
  CholTimes chol;
  double forward_flops = 0, hessian_flops = 0, chol_flops = 0, solve_flops = 0;
  double cached_fraction = 0;    // step-5 activations kept from step 4
  double peak_buffers_gb = 0;    // DevBuf peak during the call (library workspaces excluded)
};

// X [T, hidden] fp16 (device): in, the layer's inputs for T = windows·S tokens; out, its outputs.
// Linears come back in the order of o.plan (the reference's: k, v, q, o, up, gate, down).
// Throws std::invalid_argument for a plan the layer cannot run (gf::check_plan).
void quantize_layer(Context& ctx, const LayerDims& d, int64_t S, int64_t T, __half* X,
                    const LayerDev& w, const LayerQuantOptions& o, std::vector<LinearOut>& out,
                    LayerTimes* times = nullptr);

}  // namespace gfc
