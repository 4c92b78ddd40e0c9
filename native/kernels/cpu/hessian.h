// GPTQ's Hessian: H = 2/n · Σ XᵀX over the calibration windows (n = number of windows).
#pragma once
#include <cstdint>
#include <functional>

namespace gf {

// G[K, K] += Xᵀ X for X [T, K] (row stride ldx), straightforward triple loop in fp64.
void xtx_accumulate_ref(int64_t T, int64_t K, const float* X, int64_t ldx, float* G);

// Same contract, fp32: X is transposed in chunks of tokens and the upper-triangle tiles of
// G are GEMMs (symmetric rank-k update, blocked, multi-threaded). Only the upper triangle of
// G is updated; call symmetrize_upper once all windows are in.
void xtx_accumulate(int64_t T, int64_t K, const float* X, int64_t ldx, float* G);

// G[j, i] = G[i, j] for i < j, then G *= scale.
void symmetrize_upper(int64_t K, float* G, float scale);

// add_batch: the reference's GPTQ.add_batch over the calibration windows, H = 2/n · Σ XᵀX with
// n = windows (the reference rescales a running mean as windows arrive; the result is the
// same). input(w) yields window w's X [T, K] (row stride K), e.g. by running the layer's
// forward up to the linear's input; its buffer may be reused for the next window. H [K, K] is
// overwritten. Returns the seconds spent accumulating (not counting input()).
double add_batch(int64_t n, int64_t T, int64_t K, const std::function<const float*(int64_t w)>& input, float* H);

}  // namespace gf
