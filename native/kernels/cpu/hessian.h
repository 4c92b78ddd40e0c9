// GPTQ's Hessian: H = 2/n · Σ XᵀX over the calibration windows (n = number of windows), and
// QEP's cross term C = 2/n · Σ (X̃ − X)ᵀ X beside it (docs/gptq.md, "QEP").
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

// C[K, K] += (Xf − X)ᵀ X for X, Xf [T, K] (row stride ldx each): C[i, j] += Σ_t (Xf[t, i] − X[t, i]) · X[t, j].
// Not symmetric: every entry is computed. Straightforward loops in fp64 (the reference).
void cross_accumulate_ref(int64_t T, int64_t K, const float* Xf, const float* X, int64_t ldx, float* C);

// Same contract, fp32: D = (Xf − X)ᵀ and Xᵀ are formed in chunks of tokens (the difference
// rounded once to fp32) and every RB × RB tile of C is a GEMM D[bi] · Xt[bj]ᵀ (blocked,
// multi-threaded), as xtx_accumulate.
void cross_accumulate(int64_t T, int64_t K, const float* Xf, const float* X, int64_t ldx, float* C);

// add_batch with QEP's cross term: H = 2/n · Σ XᵀX and C = 2/n · Σ (X̃ − X)ᵀ X over the windows,
// X = input(w) the quantized path's [T, K] (row stride K), X̃ = input_fp(w) the fp16 path's at
// the same forward point (a different buffer; both may be reused for the next window).
// H and C [K, K] are overwritten. Returns the seconds spent accumulating. With C null it is
// add_batch (input_fp is not called).
double add_batch_cross(int64_t n, int64_t T, int64_t K, const std::function<const float*(int64_t w)>& input,
                       const std::function<const float*(int64_t w)>& input_fp, float* H, float* C);

}  // namespace gf
