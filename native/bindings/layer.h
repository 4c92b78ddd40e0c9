// Argument helpers shared by the forward and GPTQ bindings.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "../kernels/cpu/layer_plan.h"
#include "../kernels/cpu/llama.h"
#include "util.h"

namespace gfb {

gf::LlamaDims dims_arg(const Napi::Env& env, const Napi::Value& v);

std::vector<Held<float>> windows_arg(const Napi::Env& env, const Napi::Value& v, int64_t per_window);

// The nine fp32 weights of a decoder layer, held for the job; checked against dims.
struct HeldLayer {
  gf::LayerWeightsF32 w;
  std::vector<Held<float>> held;
};
void layer_arg(const Napi::Env& env, const Napi::Value& v, const gf::LlamaDims& d, HeldLayer& out);

// An array of linear names (a RangeError naming `what[i]` for an unknown one).
std::vector<gf::Linear> linears_at(const Napi::Env& env, const Napi::Value& v, const std::string& what);

// A layer plan from its JS form (src/model/layer-plan.ts): { groups: [{ input, linears }],
// stacks: { qkv, gateUp } } of names; checked (gf::check_plan), a JS error naming the problem.
gf::LayerPlan plan_arg(const Napi::Env& env, const Napi::Value& v);

// The layer calls' corrections toward the fp16 path (both engines read them alike; each engine
// then adds its own refusals). config.qep: null/undefined, or { alpha in [0, 1], linears: names }.
struct QepArg {
  bool on = false;
  float alpha = 0;
  std::vector<gf::Linear> linears;
};
QepArg qep_arg(const Napi::Env& env, const Napi::Object& config);

// config.gptaq: null/undefined, or { alpha in [0, 1] }; refused beside config.qep (`qep_on`).
struct GptaqArg {
  bool on = false;
  float alpha = 0;
};
GptaqArg gptaq_arg(const Napi::Env& env, const Napi::Object& config, bool qep_on);

}  // namespace gfb
