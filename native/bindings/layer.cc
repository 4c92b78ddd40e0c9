#include "layer.h"

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

}  // namespace gfb
