// Shared helpers of the CUDA kernel checks (native/kernels/cuda/checks/*_check.cu), in the
// manner of llm.c's dev/cuda: random inputs from a fixed seed, a CPU reference in the check,
// validate_result() against it with a tolerance derived from the arithmetic, one PASS/FAIL
// line per case, and cudaEvent timings per variant (inputs of timings filled on the device).
//
// Rounding units used by the tolerance comments of every check:
//   kHalfU = 2^-11  fp16 unit roundoff (relative error of one round-to-nearest to fp16)
//   kHalfSub = 2^-25  absolute error of rounding to fp16 below 2^-14 (subnormal spacing 2^-24)
//   kFloatU = 2^-24  fp32 unit roundoff;  kDoubleU = 2^-53
#pragma once
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../../common/check_report.h"
#include "../context.h"

namespace gfc::check {

// The rounding units, counters and PASS/FAIL lines shared with the CPU checks.
using namespace ::gf::check;

// Exit code of a check program: 0 when every case passed.
inline int summary(const char* prog) {
  std::printf("%s: %d case(s), %d failure(s): %s\n", prog, cases(), failures(), failures() ? "FAILED" : "ALL PASSED");
  return failures() ? 1 : 0;
}

// Timing lines are skipped with GFC_CHECK_NO_TIMING=1 (the checks alone).
inline bool timing_enabled() {
  const char* e = std::getenv("GFC_CHECK_NO_TIMING");
  return !(e && *e && *e != '0');
}

template <class T>
DevBuf<T> upload(Context& ctx, const std::vector<T>& h) {
  DevBuf<T> d(h.size());
  if (!h.empty())
    CUDA_CHECK(cudaMemcpyAsync(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice, ctx.stream));
  return d;
}

template <class T>
std::vector<T> download(Context& ctx, const T* d, size_t n) {
  std::vector<T> h(n);
  if (n) CUDA_CHECK(cudaMemcpyAsync(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost, ctx.stream));
  ctx.sync();
  return h;
}

// Fills a device buffer with 0xFF bytes (NaN halves, −1 ints) so that an unwritten entry shows.
template <class T>
void poison(Context& ctx, T* p, size_t n) { CUDA_CHECK(cudaMemsetAsync(p, 0xFF, n * sizeof(T), ctx.stream)); }

inline float h2f(__half h) { return __half2float(h); }
inline __half f2h(float f) { return __float2half_rn(f); }
inline uint16_t hbits(__half h) { return __half_as_ushort(h); }

// fp16 values N(mean, std²), rounded to fp16 (so the reference sees exactly the kernel's input).
inline std::vector<__half> random_halves(std::mt19937& rng, size_t n, float std, float mean = 0.0f) {
  std::normal_distribution<float> nd(mean, std);
  std::vector<__half> h(n);
  for (auto& v : h) v = __float2half_rn(nd(rng));
  return h;
}
inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float std, float mean = 0.0f) {
  std::normal_distribution<float> nd(mean, std);
  std::vector<float> f(n);
  for (auto& v : f) v = nd(rng);
  return f;
}
inline std::vector<double> to_double(const std::vector<__half>& h) {
  std::vector<double> d(h.size());
  for (size_t i = 0; i < h.size(); ++i) d[i] = __half2float(h[i]);
  return d;
}
inline std::vector<double> to_double(const std::vector<float>& f) { return std::vector<double>(f.begin(), f.end()); }

// got vs ref element by element with tol(i) ≥ 0: a case passes when every |got − ref| ≤ tol
// and every got is finite where ref is. Prints max |err|, the tolerance at that element, the
// worst err/tol ratio and how many elements are over.
struct Validation {
  double max_err = 0, tol_at_max = 0, worst_ratio = 0;
  int64_t over = 0, n = 0;
  bool ok() const { return over == 0; }
};
inline Validation validate(const std::vector<double>& got, const std::vector<double>& ref,
                           const std::function<double(size_t)>& tol) {
  Validation v;
  v.n = (int64_t)ref.size();
  if (got.size() != ref.size()) { v.over = v.n + 1; return v; }
  for (size_t i = 0; i < ref.size(); ++i) {
    const double t = tol(i), e = std::fabs(got[i] - ref[i]);
    const bool bad = !(e <= t) && !(std::isnan(ref[i]) && std::isnan(got[i])) && !(got[i] == ref[i]);
    if (bad) ++v.over;
    if (!std::isfinite(e) && bad) { v.max_err = INFINITY; v.tol_at_max = t; v.worst_ratio = INFINITY; continue; }
    if (e > v.max_err) { v.max_err = e; v.tol_at_max = t; }
    if (t > 0 ? e / t > v.worst_ratio : e > 0) v.worst_ratio = t > 0 ? e / t : INFINITY;
  }
  return v;
}
inline bool validate_result(const std::string& what, const std::vector<double>& got, const std::vector<double>& ref,
                            const std::function<double(size_t)>& tol) {
  const Validation v = validate(got, ref, tol);
  return report(v.ok(), strf("%s: max |err| %.3e (tol there %.3e), worst err/tol %.3f, %lld of %lld over", what.c_str(),
                             v.max_err, v.tol_at_max, v.worst_ratio, (long long)v.over, (long long)v.n));
}
// Bit-exact comparison (tolerance 0), e.g. integer outputs or one identical rounding.
template <class T>
bool validate_exact(const std::string& what, const std::vector<T>& got, const std::vector<T>& ref) {
  int64_t diff = got.size() == ref.size() ? 0 : -1;
  int64_t first = -1;
  for (size_t i = 0; diff >= 0 && i < ref.size(); ++i)
    if (!(got[i] == ref[i])) { if (first < 0) first = (int64_t)i; ++diff; }
  return report(diff == 0, strf("%s: %lld of %zu entries differ (bit-exact expected)%s", what.c_str(), (long long)diff,
                                ref.size(), first >= 0 ? strf(", first at %lld", (long long)first).c_str() : ""));
}
inline std::vector<uint16_t> bits_of(const std::vector<__half>& h) {
  std::vector<uint16_t> b(h.size());
  for (size_t i = 0; i < h.size(); ++i) b[i] = __half_as_ushort(h[i]);
  return b;
}

namespace detail {
__global__ void fill_halves_kernel(int64_t n, __half* p, float scale, uint32_t seed) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
    p[i] = __float2half_rn(scale * ((float)(h >> 8) * (1.0f / 16777216.0f) - 0.5f));
  }
}
}  // namespace detail
// Timing inputs: uniform values of standard deviation `std` from a hash, generated on the
// device (fast for the large shapes; values do not matter for the speed).
inline void fill_device_halves(Context& ctx, __half* p, int64_t n, float std, uint32_t seed) {
  detail::fill_halves_kernel<<<4096, 256, 0, ctx.stream>>>(n, p, std * 3.4641016f, seed);
  CUDA_LAUNCH_CHECK();
}

// Median device time of f() over reps runs (after one warm-up), cudaEvents on ctx.stream.
template <class F>
double time_ms(Context& ctx, int reps, F&& f) {
  f();
  ctx.sync();
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a, ctx.stream));
    f();
    CUDA_CHECK(cudaEventRecord(b, ctx.stream));
    CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}
inline void timing_line(const std::string& what, double ms, const std::string& rate = "") {
  std::printf("TIME %s: %.4f ms%s%s\n", what.c_str(), ms, rate.empty() ? "" : "  ", rate.c_str());
  std::fflush(stdout);
}

// Runs body(ctx) with one Context; an exception is one FAIL line and exit code 2.
inline int run_check(const char* prog, const std::function<void(Context&)>& body) {
  try {
    Context ctx;
    body(ctx);
  } catch (const std::exception& e) {
    report(false, strf("%s: error: %s (the cases after this one did not run)", prog, e.what()));
    summary(prog);
    return 2;
  }
  return summary(prog);
}

// True when f() throws (std::exception): for the checks that bad input is refused.
template <class F>
bool throws(F&& f) {
  try { f(); } catch (const std::exception&) { return true; }
  return false;
}

}  // namespace gfc::check
