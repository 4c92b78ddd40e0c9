// Shared helpers of the CPU kernel checks (native/kernels/cpu/checks/*_check.cc), the CPU twin
// of native/kernels/cuda/checks/check_util.cuh: random inputs from fixed seeds, validate_result
// with per-element tolerances derived from the arithmetic, one PASS/FAIL line per case.
// Rounding units: kHalfU = 2^-11 (fp16), kHalfSub = 2^-25 (fp16 subnormal half-spacing),
// kFloatU = 2^-24 (fp32), kDoubleU = 2^-53.
#pragma once
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../half.h"
#include "../../common/check_report.h"

namespace gf::check {

// got vs ref with tol(i): passes when every |got − ref| ≤ tol(i) (NaN only where ref is NaN).
inline bool validate_result(const std::string& what, const std::vector<float>& got, const std::vector<double>& ref,
                            const std::function<double(size_t)>& tol) {
  double max_err = 0, tol_at = 0, worst = 0;
  int64_t over = got.size() == ref.size() ? 0 : (int64_t)ref.size() + 1;
  for (size_t i = 0; over <= (int64_t)ref.size() && i < ref.size(); ++i) {
    const double t = tol(i), e = std::fabs((double)got[i] - ref[i]);
    const bool bad = !(e <= t) && !(std::isnan(ref[i]) && std::isnan(got[i])) && !((double)got[i] == ref[i]);
    over += bad;
    if (bad && !std::isfinite(e)) { max_err = INFINITY; tol_at = t; worst = INFINITY; continue; }
    if (e > max_err) { max_err = e; tol_at = t; }
    if (t > 0 && e / t > worst) worst = e / t;
  }
  return report(over == 0, strf("%s: max |err| %.3e (tol there %.3e), worst err/tol %.3f, %lld of %zu over", what.c_str(), max_err,
                                tol_at, worst, (long long)over, ref.size()));
}

// Bit-exact (tolerance 0): a composition of the same kernels in the same order.
inline bool validate_exact(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref) {
  int64_t diff = got.size() == ref.size() ? 0 : -1;
  for (size_t i = 0; diff >= 0 && i < ref.size(); ++i) diff += !(got[i] == ref[i]) && !(std::isnan(got[i]) && std::isnan(ref[i]));
  return report(diff == 0, strf("%s: %lld of %zu entries differ (bit-exact expected)", what.c_str(), (long long)diff, ref.size()));
}

// N(mean, std²) fp32 values; with half = true rounded to fp16 values (what a model stores).
inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float std, float mean = 0.0f, bool half = false) {
  std::normal_distribution<float> nd(mean, std);
  std::vector<float> f(n);
  for (auto& v : f) v = half ? round_half(nd(rng)) : nd(rng);
  return f;
}

inline int run_check(const char* prog, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    report(false, strf("%s: error: %s (the cases after this one did not run)", prog, e.what()));
  }
  std::printf("%s: %d case(s), %d failure(s): %s\n", prog, cases(), failures(), failures() ? "FAILED" : "ALL PASSED");
  return failures() ? 1 : 0;
}

}  // namespace gf::check
