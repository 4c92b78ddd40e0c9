// QEP on the GPU (Arai & Ichikawa, NeurIPS 2025; docs/gptq.md, "QEP"): the cross term beside
// the Hessian and the weight correction before a stack's GPTQ solve, the CPU engine's
// native/kernels/cpu/hessian.h cross_accumulate and qep.h qep_correct with the same rules:
//   W* = W + α · W_live C (H + λI)⁻¹,   C = 2/n Σ (X̃ − X)ᵀ X,   H = 2/n Σ XᵀX
// λ = damp_percent · mean(diag H) after the dead-column rule (diag H = 0 → 1), raised while
// H + λI is not positive definite (gf::damp_until_pd); dead columns take no part in W C.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "../cpu/qep.h"
#include "context.h"

namespace gfc {

// C[K, K] (fp32 row-major, not symmetric: every entry) = beta·C + alpha·(Xf − X)ᵀ X for X, Xf
// [T, K] fp16 row-major (row stride ldx each). D [T, K] fp16 scratch (row stride K): D = (Xf − X)/2
// (the difference exact in fp32, halved exactly, rounded once to fp16: relative error ≤ 2^-11,
// and |D| ≤ max(|Xf|, |X|) cannot overflow), then one full GEMM Xᵀ-by-D on the tensor cores with
// fp32 accumulation and 2·alpha. Forming the difference first keeps C's relative precision that
// of its inputs; Σ X̃ᵀX − H would cancel (X̃ ≈ X) and lose |X|/|X̃ − X| of it.
void cross_accumulate(Context& ctx, int64_t T, int64_t K, const __half* Xf, const __half* X, int64_t ldx, __half* D,
                      float* C, float alpha, float beta);
// Reference: one thread per entry of C, the sum over T in order in fp64 (slow; small T, K).
void cross_accumulate_ref(Context& ctx, int64_t T, int64_t K, const __half* Xf, const __half* X, int64_t ldx,
                          float* C, float alpha, float beta);
double cross_flops(int64_t T, int64_t K);  // 2·T·K²

// Rows [r0, r1) of a correction (each range within [0, N), ranges not overlapping).
using RowRanges = std::vector<std::pair<int64_t, int64_t>>;

// W [N, K] row-major (device) fp32: in W, out W* on the rows of `rows` (other rows untouched);
// H [K, K] fp32 symmetric, C [K, K] fp32 (device, not modified). As gf::qep_correct: R = W_live C
// an fp32 GEMM (cuBLAS, default math: no TF32), H + λI factored once in fp64 (cuSOLVER potrf,
// the damping raised while not PD), each row of R solved against it in fp64 (potrs: two
// triangular substitutions), W*[r, i] = (float)((double)W[r, i] + α·y[i]). Rows go through in
// pieces of row_chunk ((4 + 4 + 8)·K·row_chunk bytes of scratch, plus K² fp64 for the factor).
// Throws std::runtime_error when H or C is not finite, or H stays non-PD after the raises.
gf::QepResult qep_correct(Context& ctx, int64_t N, int64_t K, float* W, const float* H, const float* C, float alpha,
                          float damp_percent, const RowRanges& rows, int64_t row_chunk = 4096);
// The same with W fp16 in and out (the layer's slot): W* is computed in fp32 as above, then
// rounded to fp16 (the CPU engine's round_to_half_inplace after qep_correct).
gf::QepResult qep_correct_f16(Context& ctx, int64_t N, int64_t K, __half* W, const float* H, const float* C,
                              float alpha, float damp_percent, const RowRanges& rows, int64_t row_chunk = 4096);

// FLOPs of one correction of n rows: the GEMM 2·n·K², potrf K³/3, potrs 2·n·K².
double qep_flops(int64_t n, int64_t K);

}  // namespace gfc
