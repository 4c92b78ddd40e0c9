// find_params by one warp, on the device, without (warp_grid) and with (warp_grid_mse) the mse
// search: the rules are native/kernels/common/gptq_math.h's (gf::grid_from_range, gf::quant_code,
// gf::mse_candidate, gf::mse_term: with __fdiv_rn and rintf on the device, the same float
// operations as the CPU engine's / and std::nearbyint). The min/max reduction is the warp's own
// (min/max are exact, so its order does not matter); the mse search splits the candidates, not
// the values, over the lanes, so that each candidate's error is the serial sum of gf::mse_search.
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

// Grid of x[0..n) with the mse search, by a whole warp (every lane gets it; *best_err, if given:
// the winning error sum, +inf when no candidate's is finite). Lane l owns candidates l, l + 32,
// l + 64 (< 80: 2.5 per lane) and adds up their terms over x in order, each value loaded once
// (coalesced, 32 at a time) and broadcast from its lane; the fp32 sums are thus exactly
// gf::mse_search's. The warp then takes the least error, the lowest candidate on ties
// (gf::mse_better: the serial loop's "first best wins"). Not inlined: the block kernel calls it
// at 4 · ROWS sites and its body (the fp64 pow) is large.
static __device__ __noinline__ Grid warp_grid_mse(const float* x, int64_t n, float maxq, bool sym, float* best_err = nullptr) {
  constexpr int S = (gf::kMseSteps + 31) / 32;  // candidate slots per lane
  const int lane = threadIdx.x % 32;
  float lo = 0, hi = 0;
  for (int64_t k = lane; k < n; k += 32) {
    lo = fminf(lo, x[k]);
    hi = fmaxf(hi, x[k]);
  }
  for (int off = 16; off; off >>= 1) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, off));
  }
  const gf::Range r = gf::adjust_range(lo, hi, sym);
  Grid g[S];
  float err[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    g[s] = gf::mse_candidate(min(lane + 32 * s, gf::kMseSteps - 1), r.xmin, r.xmax, maxq, sym);
    err[s] = 0;
  }
  const bool last = lane + 32 * (S - 1) < gf::kMseSteps;  // lanes 0..15 own a third candidate
  for (int64_t base = 0; base < n; base += 32) {
    const float mine = base + lane < n ? x[base + lane] : 0.0f;
    const int m = (int)min((int64_t)32, n - base);
    for (int l = 0; l < m; ++l) {
      const float v = __shfl_sync(0xffffffffu, mine, l);
#pragma unroll
      for (int s = 0; s < S - 1; ++s) err[s] += gf::mse_term(v, g[s], maxq);
      if (last) err[S - 1] += gf::mse_term(v, g[S - 1], maxq);
    }
  }
  float be = INFINITY;
  int bi = -1;
#pragma unroll
  for (int s = 0; s < S; ++s) {
    const int i = lane + 32 * s;
    if (i < gf::kMseSteps && gf::mse_better(err[s], i, be, bi)) { be = err[s]; bi = i; }
  }
  for (int off = 16; off; off >>= 1) {
    const float oe = __shfl_xor_sync(0xffffffffu, be, off);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
    if (oi >= 0 && gf::mse_better(oe, oi, be, bi)) { be = oe; bi = oi; }
  }
  if (best_err) *best_err = be;
  return bi < 0 ? gf::grid_of(r.xmin, r.xmax, maxq, sym) : gf::mse_candidate(bi, r.xmin, r.xmax, maxq, sym);
}

}  // namespace gfc
