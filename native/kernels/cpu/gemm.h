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

// Multi-threaded gemm_nt: the output (or, for small outputs, K) is cut into tasks handed to
// the worker threads.
void gemm_nt_parallel(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate);

// ---- Pre-packed B, for callers that reuse one B many times (attention's K and V).
// Packed layout: panels of gemm_panel_width() = NR columns of B; panel p holds
// Bp[p·bps + k·NR + c] = B[p·NR + c, k] (zero for columns ≥ N); bps ≥ K·NR.
int64_t gemm_panel_width();
// From B[N, K] (row stride ldb).
void gemm_pack_b(int64_t N, int64_t K, const float* B, int64_t ldb, float* Bp, int64_t bps);
// From Bᵀ, i.e. Bt[K, N] (row stride ldbt): e.g. V[keys, D] as the B of P·V.
void gemm_pack_bt(int64_t N, int64_t K, const float* Bt, int64_t ldbt, float* Bp, int64_t bps);
// gemm_nt (single-threaded) with B packed (only the first K rows of each panel are read).
// Causal options (ignored when < 0): ndiag: row i only needs columns j ≤ i + ndiag; tiles
// wholly beyond are skipped and left unwritten. kdiag: row i only needs A[i, k] for
// k ≤ i + kdiag, but rows go through the micro-kernel in blocks of ≤ 16, so the caller
// zeroes A[i, k] for i + kdiag < k < min(K, i + kdiag + 16).
void gemm_nt_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                    const float* Bp, int64_t bps, float* C, int64_t ldc, bool accumulate,
                    int64_t ndiag = -1, int64_t kdiag = -1);

}  // namespace gf
