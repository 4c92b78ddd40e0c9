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

#include "../kernels/cuda/context.h"

namespace gfb {

// The parts of one decoder layer's weights, in slot order (fp16 elements each).
enum WeightPart { kQkv = 0, kO, kGateUp, kDown, kInputNorm, kPostNorm, kParts };

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
  int64_t tokens = 0, seqlen = 0, hidden = 0;
  HostSlot slots[2];
};

// The Session of a JS handle; a TypeError when it is not one, an Error when already freed.
inline Session* session_arg(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(env, "session: expected a CUDA session");
  Session* s = v.As<Napi::External<Session>>().Data();
  if (!s->x.get()) throw Napi::Error::New(env, "session: already freed");
  return s;
}

// The process's one CUDA context (stream, cuBLAS and cuSOLVER handles), created on first use,
// and the lock every job that uses it holds (cuda.cc).
gfc::Context& cuda_context();
std::mutex& cuda_mutex();

void RegisterCudaWeights(Napi::Env env, Napi::Object exports);  // cuda_weights.cc
void RegisterCudaEval(Napi::Env env, Napi::Object exports);     // cuda_eval.cc

}  // namespace gfb
