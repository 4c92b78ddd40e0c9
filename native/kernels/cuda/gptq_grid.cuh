// find_params (no mse) by one warp, on the device: the rules are native/kernels/common/gptq_math.h's
// (gf::grid_from_range, gf::quant_code, gf::dequant: with __fdiv_rn and rintf on the device, the
// same float operations as the CPU engine's / and std::nearbyint). Only the min/max reduction
// is the warp's own (min/max are exact, so its order does not matter).
#pragma once
#include <cstdint>

#include "../common/gptq_math.h"

namespace gfc {

using gf::Grid;

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
  return gf::grid_from_range(lo, hi, maxq, sym);
}

}  // namespace gfc
