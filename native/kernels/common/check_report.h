// What every kernel check program prints and counts, for the CPU checks
// (native/kernels/cpu/checks/check_util.h) and the CUDA ones (native/kernels/cuda/checks/check_util.cuh):
// the rounding units the tolerance comments use, one PASS/FAIL line per case, the counters.
//   kHalfU = 2^-11  fp16 unit roundoff;  kHalfSub = 2^-25  absolute error of rounding to fp16
//   below 2^-14 (subnormal spacing 2^-24);  kFloatU = 2^-24  fp32 unit roundoff;  kDoubleU = 2^-53
#pragma once
#include <cstdarg>
#include <cstdio>
#include <string>

namespace gf::check {

constexpr double kHalfU = 1.0 / 2048, kHalfSub = 1.0 / 33554432.0, kFloatU = 1.0 / 16777216.0;
constexpr double kDoubleU = 1.1102230246251565e-16;

inline int& failures() { static int n = 0; return n; }
inline int& cases() { static int n = 0; return n; }

inline std::string strf(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

inline bool report(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  std::fflush(stdout);
  ++cases();
  if (!ok) ++failures();
  return ok;
}

}  // namespace gf::check
