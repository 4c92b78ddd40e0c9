// The GPTQ solve of one linear layer (or of several that share one Hessian, their rows stacked:
// rows are independent given U) on the GPU, with the CPU engine's semantics
// (native/kernels/cpu/gptq.cc, ../shared/GPTQ-SPEC.md): grids per row (groups, act-order,
// static groups, sym/asym), lazy batch blocks of B = 128 columns. Each block is one fused
// kernel (a warp owns a row, the block's 128 columns in registers, Hinv's 128 × 128 block in
// shared memory; no launch per column) followed by one cuBLAS GEMM for the trailing update.
#pragma once
#include <cstdint>
#include <vector>

#include "../cpu/gptq.h"
#include "context.h"
#include "linalg.h"

namespace gfc {

struct SolveTimes {
  double prepare_ms = 0;   // analyse + Cholesky/inverse (host clock, synchronised)
  double solve_ms = 0;     // block kernels + trailing updates + un-permute
  CholTimes chol;          // the factorisation's parts (device events)
};

struct SolveConfig {
  bool tf32 = false;       // trailing updates on the tensor cores in tf32 (~3e-4 relative error
                           // in the updates; the reference runs them in fp32)
  bool chol_fp32 = false;  // Cholesky/inverse in fp32 (the reference's precision) instead of fp64
  int rows_per_warp = 0;   // fused block kernel: 1 or 4 rows per warp; 0 = by N
};

// W [N, K] fp32 row-major (device): in, the weights; out, the dequantised Q in the original
// column order. H [K, K] fp32 row-major symmetric (device, not modified).
// Outputs (device): codes [N, K] (original order), scales [G, N], zeros [G, N] (integer zero
// points). Host: g_idx [K], perm [K]. G = K / group_size (1 without groups).
// Options: as gf::GptqOptions; mse is not supported on the GPU (throws), block_size must be 128.
gf::GptqResult gptq_quantize(Context& ctx, int64_t N, int64_t K, float* W, const float* H,
                             const gf::GptqOptions& o, uint8_t* codes, float* scales,
                             int32_t* zeros, int32_t* g_idx, int32_t* perm,
                             const SolveConfig& cfg = SolveConfig(), SolveTimes* times = nullptr,
                             std::vector<double>* row_loss = nullptr);  // [N] per-row losses

// Reference: the same results from the simplest kernel (one thread per row walking the CPU
// engine's loops in global memory, U from the CPU engine's fp64 routine). Small sizes only.
gf::GptqResult gptq_quantize_ref(Context& ctx, int64_t N, int64_t K, float* W, const float* H,
                                 const gf::GptqOptions& o, uint8_t* codes, float* scales,
                                 int32_t* zeros, int32_t* g_idx, int32_t* perm);

}  // namespace gfc
