// The gptq-forge native addon: registers every binding. Kernels live in kernels/cpu/*.
#include <napi.h>

#include "bindings/bindings.h"
#include "kernels/cpu/parallel.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  gfb::RegisterForward(env, exports);
  gfb::RegisterGptq(env, exports);
  gfb::RegisterPack(env, exports);
  exports.Set("threads", Napi::Number::New(env, gf::num_threads()));
  return exports;
}

NODE_API_MODULE(gptq_forge, Init)
