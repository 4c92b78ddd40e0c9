// GPTQ's Hessian: H = 2/n · Σ XᵀX over the calibration windows (n = number of windows).
#pragma once
#include <cstdint>

namespace gf {

// G[K, K] += Xᵀ X for X [T, K] (row stride ldx), straightforward triple loop in fp64.
void xtx_accumulate_ref(int64_t T, int64_t K, const float* X, int64_t ldx, float* G);

// Same contract, fp32: X is transposed in chunks of tokens and the upper-triangle tiles of
// G are GEMMs (symmetric rank-k update, blocked, multi-threaded). Only the upper triangle of
// G is updated; call symmetrize_upper once all windows are in.
void xtx_accumulate(int64_t T, int64_t K, const float* X, int64_t ldx, float* G);

// G[j, i] = G[i, j] for i < j, then G *= scale.
void symmetrize_upper(int64_t K, float* G, float scale);

}  // namespace gf
