// The CUDA engine's session object, shared by the bindings in cuda.cc and cuda_weights.cc:
// the calibration activations on the GPU, and two pinned host slots for decoder-layer weights
// (one is filled from disk while the layer in the other is being quantized).
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <napi.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <string>

#include "../kernels/cuda/context.h"
#include "../kernels/cuda/layer_quant.h"
#include "enums.h"
#include "util.h"

namespace gfb {

// The parts of one decoder layer's weights, in slot order (fp16 elements each); they cross the
// boundary by name (weight_part_names, exported as enums.weightPart).
enum WeightPart { kQkv = 0, kO, kGateUp, kDown, kInputNorm, kPostNorm, kParts };
inline const Names& weight_part_names() {
  static const Names v{"qkv", "o", "gateUp", "down", "inputNorm", "postNorm"};
  return v;
}

struct LayerShape {
  int64_t hidden, ffn, heads, kv_heads, head_dim;
  // Elements of each part: qkv [(heads + 2·kv_heads)·D, hidden], o [hidden, heads·D],
  // gate_up [2·ffn, hidden], down [hidden, ffn], the two norms [hidden].
  std::array<int64_t, kParts> counts() const {
    const int64_t qd = heads * head_dim, kvd = kv_heads * head_dim;
    return {(qd + 2 * kvd) * hidden, hidden * qd, 2 * ffn * hidden, hidden * ffn, hidden, hidden};
  }
};

// Page-locked host memory for one layer's weights: parts at fixed offsets.
struct HostSlot {
  uint16_t* data = nullptr;  // fp16 bits
  std::array<int64_t, kParts> counts{}, offsets{};
  int64_t total = 0;
  void alloc(const std::array<int64_t, kParts>& c) {
    free();
    counts = c;
    total = 0;
    for (int p = 0; p < kParts; ++p) { offsets[p] = total; total += c[p]; }
    CUDA_CHECK(cudaHostAlloc((void**)&data, (size_t)total * 2, cudaHostAllocDefault));
  }
  void free() {
    if (data) cudaFreeHost(data);
    data = nullptr;
    total = 0;
  }
  uint16_t* part(int p) const { return data + offsets[p]; }
  ~HostSlot() { free(); }
};

struct Session {
  gfc::DevBuf<__half> x;
  gfc::DevBuf<__half> xf;  // the fp16 path (QEP, GPTAQ) [tokens, hidden] (the fp16 model's activations); empty without
  int64_t tokens = 0, seqlen = 0, hidden = 0;
  HostSlot slots[2];
};

// The type tag of a session handle: an eval session (or any other external) is not one.
constexpr napi_type_tag kSessionTag{0x6770747166636173ULL, 0x5365737369306e01ULL};

// The Session of a JS handle; a TypeError when it is not one, an Error when already freed.
inline Session* session_arg(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsExternal() || !v.As<Napi::External<Session>>().CheckTypeTag(&kSessionTag))
    type_error(env, "session", "a CUDA session", v);
  Session* s = v.As<Napi::External<Session>>().Data();
  if (!s->x.get()) throw Napi::Error::New(env, "session: already freed");
  return s;
}

// A layer's shape { hidden, ffn, heads, kvHeads, headDim } (`name`: the argument's name).
inline LayerShape layer_shape_arg(const Napi::Env& env, const Napi::Value& v, const char* name) {
  Napi::Object o = object_value(env, v, name);
  LayerShape sh{int_arg(env, o, "hidden", name, 1), int_arg(env, o, "ffn", name, 1), int_arg(env, o, "heads", name, 1),
                int_arg(env, o, "kvHeads", name, 1), int_arg(env, o, "headDim", name, 1)};
  if (sh.heads % sh.kv_heads)
    range_error(env, std::string(name) + ".heads", "a multiple of kvHeads (" + std::to_string(sh.kv_heads) + ")",
                std::to_string(sh.heads));
  elements(env, name, {sh.heads + 2 * sh.kv_heads, sh.head_dim, sh.hidden});
  elements(env, name, {2, sh.ffn, sh.hidden});
  return sh;
}

// The dims of a CUDA layer call: the shape, eps and ropeTheta.
inline gfc::LayerDims layer_dims_arg(const Napi::Env& env, const Napi::Value& v, const char* name = "dims") {
  const LayerShape sh = layer_shape_arg(env, v, name);
  Napi::Object o = object_value(env, v, name);
  return gfc::LayerDims{sh.hidden, sh.ffn, sh.heads, sh.kv_heads, sh.head_dim, (float)num_arg(env, o, "eps", name),
                        (float)num_arg(env, o, "ropeTheta", name)};
}

// The process's one CUDA context (stream, cuBLAS and cuSOLVER handles), created on first use,
// and the lock every job that uses it holds (cuda.cc).
gfc::Context& cuda_context();
std::mutex& cuda_mutex();

void RegisterCudaWeights(Napi::Env env, Napi::Object exports);  // cuda_weights.cc
void RegisterCudaEval(Napi::Env env, Napi::Object exports);     // cuda_eval.cc

}  // namespace gfb
