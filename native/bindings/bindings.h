#pragma once
#include <napi.h>

#include "../kernels/cpu/gptq.h"

namespace gfb {
void RegisterForward(Napi::Env env, Napi::Object exports);
void RegisterGptq(Napi::Env env, Napi::Object exports);
void RegisterPack(Napi::Env env, Napi::Object exports);
void RegisterCpuLayer(Napi::Env env, Napi::Object exports);  // bindings/cpu_layer.cc
/** The solver's options from a JS object (bits, groupSize, …; bindings/gptq.cc). */
gf::GptqOptions gptq_options_arg(const Napi::Env& env, const Napi::Value& v);
#ifdef GPTQ_FORGE_CUDA
void RegisterCuda(Napi::Env env, Napi::Object exports);  // bindings/cuda.cc
#endif
}  // namespace gfb
