// The enums that cross the boundary by name, in the order the bindings use them (the position
// is the C++ value). A binding reads one with choice_at (util.h), which rejects an unknown name
// listing these; the addon exports every table (`enums`, addon.cc and the CUDA Register*) and
// test/native/boundary.test.ts compares them with the TypeScript ones.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

namespace gfb {

using Names = std::vector<std::string>;

// nonFinite's element types: fp16 bits, bf16 bits (Uint16Array), fp32 values (Float32Array).
enum NonFiniteDtype { kDtypeF16 = 0, kDtypeBF16, kDtypeF32 };
inline const Names& dtype_names() {
  static const Names v{"F16", "BF16", "F32"};
  return v;
}

// gemmNt's kernels: the fp64 loop, the tiled kernel, tiled on every worker thread.
enum GemmVariant { kGemmReference = 0, kGemmTiled, kGemmParallel };
inline const Names& gemm_variant_names() {
  static const Names v{"reference", "tiled", "parallel"};
  return v;
}

// packGptq's and dequantizeGptq's kernels.
enum PackVariant { kPackReference = 0, kPackOptimised };
inline const Names& pack_variant_names() {
  static const Names v{"reference", "optimised"};
  return v;
}

inline Napi::Array names_to_js(const Napi::Env& env, const Names& names) {
  Napi::Array a = Napi::Array::New(env, names.size());
  for (uint32_t i = 0; i < names.size(); ++i) a.Set(i, names[i]);
  return a;
}

// exports.enums (created on first use): each table by its TypeScript name.
inline void export_enum(const Napi::Env& env, Napi::Object exports, const char* key, const Names& names) {
  if (!exports.Has("enums")) exports.Set("enums", Napi::Object::New(env));
  exports.Get("enums").As<Napi::Object>().Set(key, names_to_js(env, names));
}

}  // namespace gfb
