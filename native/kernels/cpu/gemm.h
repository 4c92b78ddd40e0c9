// C = A · Bᵀ (+ C when accumulate) in fp32: the "x Wᵀ" of a linear layer.
#pragma once
#include <cstdint>

namespace gf {

// A: [M, K] row stride lda; B: [N, K] row stride ldb (a weight, rows = outputs);
// C: [M, N] row stride ldc. Single-threaded; callers parallelise over row/column tiles.
void gemm_nt_ref(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate);

// Same contract as gemm_nt_ref, register-tiled and cache-blocked (single-threaded).
void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
             int64_t ldb, float* C, int64_t ldc, bool accumulate);

// Multi-threaded gemm_nt: the M×N output is cut into tiles handed to the worker threads.
void gemm_nt_parallel(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);

}  // namespace gf
