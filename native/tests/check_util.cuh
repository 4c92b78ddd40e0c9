// Helpers shared by the device check programs (cuda_selftest.cu, eval_check.cu): PASS/FAIL
// lines with a failure count, host ↔ device copies, fresh random fp16 inputs, relative error.
#pragma once
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../kernels/cuda/context.h"

namespace gfc::check {

inline int& failures() {
  static int n = 0;
  return n;
}

inline void report(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  std::fflush(stdout);
  if (!ok) ++failures();
}

template <class T>
DevBuf<T> upload(Context& ctx, const std::vector<T>& h) {
  DevBuf<T> d(h.size());
  CUDA_CHECK(cudaMemcpyAsync(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice, ctx.stream));
  return d;
}

template <class T>
std::vector<T> download(Context& ctx, const T* d, size_t n) {
  std::vector<T> h(n);
  CUDA_CHECK(cudaMemcpyAsync(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost, ctx.stream));
  ctx.sync();
  return h;
}

inline std::vector<__half> random_halves(std::mt19937& rng, size_t n, float std) {
  std::normal_distribution<float> nd(0, std);
  std::vector<__half> h(n);
  for (auto& v : h) v = __float2half_rn(nd(rng));
  return h;
}

// ‖a − b‖ / ‖b‖; infinity when a holds a non-finite value.
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double)(a[i] - b[i]) * (a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return std::sqrt(num / den);
}

inline std::vector<float> halves_to_float(const std::vector<__half>& h) {
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); ++i) f[i] = __half2float(h[i]);
  return f;
}

}  // namespace gfc::check
