// find_params of the reference (no mse) and the quantizer, on the device; the same float
// operations as the CPU engine's find_grid / code_of.
#pragma once
#include <cstdint>

namespace gfc {

struct Grid {
  float scale, zero;
};

__device__ __forceinline__ Grid grid_from_range(float xmin, float xmax, float maxq, bool sym) {
  if (sym) {
    xmax = fmaxf(fabsf(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  Grid g;
  g.scale = __fdiv_rn(xmax - xmin, maxq);
  g.zero = sym ? (maxq + 1) / 2 : rintf(__fdiv_rn(-xmin, g.scale));
  return g;
}

// clamp(round(w / scale) + zero, 0, maxq), round half to even.
__device__ __forceinline__ float code_of(float w, Grid g, float maxq) {
  return fminf(fmaxf(rintf(__fdiv_rn(w, g.scale)) + g.zero, 0.0f), maxq);
}

// Grid of x[0..n) computed by a whole warp (every lane gets it).
__device__ __forceinline__ Grid warp_grid(const float* x, int64_t n, float maxq, bool sym) {
  float lo = 0, hi = 0;
  for (int64_t k = threadIdx.x % 32; k < n; k += 32) {
    lo = fminf(lo, x[k]);
    hi = fmaxf(hi, x[k]);
  }
  for (int off = 16; off; off >>= 1) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, off));
  }
  return grid_from_range(lo, hi, maxq, sym);
}

}  // namespace gfc
