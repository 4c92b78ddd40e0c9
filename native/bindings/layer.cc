#include "layer.h"

#include <stdexcept>
#include <string>

namespace gfb {

gf::LlamaDims dims_arg(const Napi::Env& env, const Napi::Value& v) {
  Napi::Object o = object_value(env, v, "dims");
  gf::LlamaDims d;
  d.hidden = int_arg(env, o, "hidden", "dims", 1);
  d.ffn = int_arg(env, o, "ffn", "dims", 1);
  d.heads = int_arg(env, o, "heads", "dims", 1);
  d.kv_heads = int_arg(env, o, "kvHeads", "dims", 1);
  d.head_dim = int_arg(env, o, "headDim", "dims", 1);
  d.eps = (float)num_arg(env, o, "eps", "dims");
  d.rope_theta = (float)num_arg(env, o, "ropeTheta", "dims");
  d.round16 = bool_arg(env, o, "round16", false, "dims");
  if (d.heads % d.kv_heads != 0)
    range_error(env, "dims.heads", "a multiple of kvHeads (" + std::to_string(d.kv_heads) + ")", std::to_string(d.heads));
  if (d.head_dim % 2 != 0) range_error(env, "dims.headDim", "an even number", std::to_string(d.head_dim));
  // Every weight and window size below is a product of these: all must fit.
  elements(env, "dims", {d.heads + 2 * d.kv_heads, d.head_dim, d.hidden});
  elements(env, "dims", {3, d.ffn, d.hidden});
  return d;
}

std::vector<Held<float>> windows_arg(const Napi::Env& env, const Napi::Value& v,
                                     int64_t per_window) {
  return typed_arrays_value<float>(env, v, "windows", per_window);
}

void layer_arg(const Napi::Env& env, const Napi::Value& v, const gf::LlamaDims& d, HeldLayer& out) {
  Napi::Object w = object_value(env, v, "weights");
  const int64_t H = d.hidden, F = d.ffn, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
  out.held.reserve(9);
  auto get = [&](const char* key, int64_t n) {
    out.held.push_back(hold<float>(env, w.Get(key), std::string("weights.") + key, n));
    return out.held.back().data;
  };
  out.w.input_norm = get("inputNorm", H);
  out.w.q = get("q", qd * H);
  out.w.k = get("k", kvd * H);
  out.w.v = get("v", kvd * H);
  out.w.o = get("o", H * qd);
  out.w.post_norm = get("postNorm", H);
  out.w.gate = get("gate", F * H);
  out.w.up = get("up", F * H);
  out.w.down = get("down", H * F);
}

namespace {

std::string string_at(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  if (!v.IsString()) throw Napi::TypeError::New(env, what + ": expected a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Array array_at(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(env, what + ": expected an array");
  return v.As<Napi::Array>();
}

}  // namespace

std::vector<gf::Linear> linears_at(const Napi::Env& env, const Napi::Value& v, const std::string& what) {
  Napi::Array a = array_at(env, v, what);
  std::vector<gf::Linear> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    const std::string where = what + "[" + std::to_string(i) + "]";
    try {
      out.push_back(gf::linear_by_name(string_at(env, a.Get(i), where), where));
    } catch (const std::invalid_argument& e) {
      throw Napi::RangeError::New(env, e.what());
    }
  }
  return out;
}

gf::LayerPlan plan_arg(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(env, "plan: expected an object");
  Napi::Object o = v.As<Napi::Object>();
  gf::LayerPlan p;
  Napi::Array groups = array_at(env, o.Get("groups"), "plan.groups");
  for (uint32_t i = 0; i < groups.Length(); ++i) {
    const std::string where = "plan.groups[" + std::to_string(i) + "]";
    if (!groups.Get(i).IsObject()) throw Napi::TypeError::New(env, where + ": expected an object");
    Napi::Object g = groups.Get(i).As<Napi::Object>();
    gf::PlanGroup pg;
    try {
      pg.input = gf::point_by_name(string_at(env, g.Get("input"), where + ".input"), where + ".input");
    } catch (const std::invalid_argument& e) {
      throw Napi::RangeError::New(env, e.what());
    }
    pg.linears = linears_at(env, g.Get("linears"), where + ".linears");
    p.groups.push_back(pg);
  }
  if (!o.Get("stacks").IsObject()) throw Napi::TypeError::New(env, "plan.stacks: expected an object");
  Napi::Object st = o.Get("stacks").As<Napi::Object>();
  p.qkv = linears_at(env, st.Get("qkv"), "plan.stacks.qkv");
  p.gate_up = linears_at(env, st.Get("gateUp"), "plan.stacks.gateUp");
  try {
    gf::check_plan(p);
  } catch (const std::invalid_argument& e) {
    throw Napi::RangeError::New(env, e.what());
  }
  return p;
}

namespace {

// `what`.alpha (alpha_value's rule).
float alpha_of(const Napi::Env& env, const Napi::Object& o, const std::string& what) {
  return alpha_value(env, num_arg(env, o, "alpha", what.c_str()), what + ".alpha");
}

}  // namespace

QepArg qep_arg(const Napi::Env& env, const Napi::Object& config) {
  QepArg a;
  const Napi::Value q = config.Get("qep");
  if (q.IsUndefined() || q.IsNull()) return a;
  Napi::Object qo = object_value(env, q, "config.qep");
  a.on = true;
  a.alpha = alpha_of(env, qo, "config.qep");
  a.linears = linears_at(env, qo.Get("linears"), "config.qep.linears");
  return a;
}

GptaqArg gptaq_arg(const Napi::Env& env, const Napi::Object& config, bool qep_on) {
  GptaqArg a;
  const Napi::Value g = config.Get("gptaq");
  if (g.IsUndefined() || g.IsNull()) return a;
  Napi::Object go = object_value(env, g, "config.gptaq");
  const float alpha = alpha_of(env, go, "config.gptaq");
  if (qep_on) throw Napi::TypeError::New(env, "config.gptaq: expected null with config.qep (one correction toward the fp16 path at a time)");
  a.on = true;
  a.alpha = alpha;
  return a;
}

}  // namespace gfb
