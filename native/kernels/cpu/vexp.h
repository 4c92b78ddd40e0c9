// Vectorised exp for softmax: Cephes-style range reduction + degree-6 polynomial,
// relative error ≈ 2e-7 (≈ 1-2 fp32 ulp) for x in [-87, 88]; below -87 it returns 0.
#pragma once
#include <cmath>
#include <cstdint>

namespace gf {

typedef float vf16 __attribute__((vector_size(64), aligned(4)));
typedef int32_t vi16 __attribute__((vector_size(64), aligned(4)));

inline vf16 vexp(vf16 x) {
  const vf16 lo = x < -87.0f ? vf16{} + 1.0f : vf16{};  // lanes that underflow to 0
  x = x < -87.0f ? vf16{} - 87.0f : x;
  x = x > 88.0f ? vf16{} + 88.0f : x;
  vf16 fx = x * 1.44269504088896341f;
  // round to nearest: floor(fx + 0.5)
  vf16 t = fx + 0.5f;
  vi16 ti = __builtin_convertvector(t, vi16);
  vf16 tf = __builtin_convertvector(ti, vf16);
  tf = tf > t ? tf - 1.0f : tf;
  ti = __builtin_convertvector(tf, vi16);
  x = x - tf * 0.693359375f;
  x = x - tf * -2.12194440e-4f;
  vf16 z = x * x;
  vf16 y = vf16{} + 1.9875691500E-4f;
  y = y * x + 1.3981999507E-3f;
  y = y * x + 8.3334519073E-3f;
  y = y * x + 4.1665795894E-2f;
  y = y * x + 1.6666665459E-1f;
  y = y * x + 5.0000001201E-1f;
  y = y * z + x + 1.0f;
  vi16 e = (ti + 127) << 23;
  vf16 pow2;
  __builtin_memcpy(&pow2, &e, sizeof(pow2));
  y = y * pow2;
  return lo != 0.0f ? vf16{} : y;
}

// out[i] = exp(x[i] - shift) for i < n; returns the sum (accumulated in double per chunk).
inline double exp_shift_sum(const float* x, float shift, float* out, int64_t n) {
  double total = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    vf16 v;
    __builtin_memcpy(&v, x + i, sizeof(v));
    vf16 e = vexp(v - shift);
    __builtin_memcpy(out + i, &e, sizeof(e));
    float s = 0;
    for (int l = 0; l < 16; ++l) s += e[l];
    total += s;
  }
  for (; i < n; ++i) {
    out[i] = std::exp(x[i] - shift);
    total += out[i];
  }
  return total;
}

}  // namespace gf
