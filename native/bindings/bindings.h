#pragma once
#include <napi.h>

namespace gfb {
void RegisterForward(Napi::Env env, Napi::Object exports);
void RegisterGptq(Napi::Env env, Napi::Object exports);
void RegisterPack(Napi::Env env, Napi::Object exports);
#ifdef GPTQ_FORGE_CUDA
void RegisterCuda(Napi::Env env, Napi::Object exports);  // bindings/cuda.cc
#endif
}  // namespace gfb
