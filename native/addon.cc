// The gptq-forge native addon: registers every binding. Kernels live in kernels/cpu/* and, when
// the build found CUDA (GPTQ_FORGE_CUDA), kernels/cuda/* (bindings/cuda.cc).
#include <napi.h>

#include "bindings/bindings.h"
#include "kernels/cpu/parallel.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  gfb::RegisterForward(env, exports);
  gfb::RegisterGptq(env, exports);
  gfb::RegisterCpuLayer(env, exports);
  gfb::RegisterPack(env, exports);
  exports.Set("threads", Napi::Number::New(env, gf::num_threads()));
#ifdef GPTQ_FORGE_CUDA
  gfb::RegisterCuda(env, exports);
#else
  exports.Set("cudaBuilt", false);  // the build found no CUDA toolkit (binding.gyp, build-standalone.sh)
#endif
  return exports;
}

NODE_API_MODULE(gptq_forge, Init)
