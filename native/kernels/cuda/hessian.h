// GPTQ Hessians on the GPU: H = (2/n) Σ XᵀX over the calibration windows, from fp16
// activations with fp32 accumulation on the tensor cores (cuBLAS GemmEx, COMPUTE_32F).
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "context.h"

namespace gfc {

// G[K, K] (fp32, row-major, symmetric) = beta·G + alpha · Xᵀ X, X [T, K] fp16 row-major with row
// stride ldx ≥ K. Only the lower triangle (row-major view) of G is written: the product is cut
// into `nb` block rows (syrk-like: (nb+1)/(2nb) of the full GEMM's FLOPs, 9/16 for nb = 8);
// call symmetrize_lower once after the last accumulation.
void xtx_accumulate(Context& ctx, int64_t T, int64_t K, const __half* X, int64_t ldx, float* G,
                    float alpha, float beta, int nb = 8);
// Reference: one thread per entry of the full G, fp32 sums over T in order (slow; small K, T).
void xtx_accumulate_ref(Context& ctx, int64_t T, int64_t K, const __half* X, int64_t ldx,
                        float* G, float alpha, float beta);
// G[K, K]: copies the lower triangle onto the upper one.
void symmetrize_lower(Context& ctx, int64_t K, float* G);

// FLOPs xtx_accumulate spends for T tokens (for achieved-rate reports).
double xtx_flops(int64_t T, int64_t K, int nb = 8);

}  // namespace gfc
