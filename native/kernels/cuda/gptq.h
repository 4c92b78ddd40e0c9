// The GPTQ solve of one linear layer (or of several that share one Hessian, their rows stacked:
// rows are independent given U) on the GPU, with the CPU engine's semantics
// (native/kernels/cpu/gptq.cc, docs/gptq.md): grids per row (groups, act-order, static groups,
// sym/asym, the mse grid search), lazy batch blocks of B = 128 columns. Each block is one fused
// kernel (a warp owns a row, the block's 128 columns in registers, Hinv's 128 × 128 block in
// shared memory; no launch per column) followed by one cuBLAS GEMM for the trailing update.
//
// Where fasterquant's parts are (gptq.py; the CPU map is native/kernels/cpu/gptq.h):
//   find_params without groups / static_groups: row_grid_kernel / static_grid_kernel (gptq.cu; the
//     mse search: template MSE, warp_grid_mse; the reference's: grid_ref_kernel, gf::mse_search);
//   dead columns, actorder perm, percdamp damping and its retry, Hinv = chol(H⁻¹, upper):
//     analyse_hessian + upper_cholesky_of_inverse (linalg.cu; cuSOLVER potrf + trtri, fp64 or
//     fp32 by SolveConfig::chol_fp32; gf::damp_until_pd as the CPU engine);
//   the blocks of blocksize 128: gptq_block_kernel (in-block error feedback W1 −= err ⊗ Hinv1[i, i:],
//     group grids by warp_grid, gptq_grid.cuh) + cublasSgemm for W[:, i2:] −= Err1 · Hinv[i1:i2, i2:]
//     (fp32, or TF32 by SolveConfig::tf32); Q = Q[:, invperm]: unpermute_kernel; g_idx: gf::g_idx_of.
//   GPTAQ (optional GptaqDevice: docs/gptq.md, "GPTAQ"; the CPU's is cpu/gptaq.h): P = α triu₁(Cp Uᵀ) U
//     by gptaq_permute_kernel, cublasSgemm, triu1_kernel, cublasSgemm (fp32, as the authors' torch);
//     the block kernel adds x ⊗ P1[i, i:] (P's block in shared memory beside Hinv's), and each
//     trailing GEMM gets a second one, W[:, i2:] += Q1 · P[i1:i2, i2:].
// The grid, code, damping, g_idx and option rules are the shared native/kernels/common/gptq_math.h.
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

// GPTAQ's input (device): C [K, K] fp32 row-major in the original column order, the cross term
// 2/n Σ (X̃ − X)ᵀ X with H's scale (cpu/hessian.h add_batch_cross); α ≥ 0 (finite).
struct GptaqDevice {
  const float* C = nullptr;
  float alpha = 0;
};

// W [N, K] fp32 row-major (device): in, the weights; out, the dequantised Q in the original
// column order. H [K, K] fp32 row-major symmetric (device, not modified).
// Outputs (device): codes [N, K] (original order), scales [G, N], zeros [G, N] (integer zero
// points). Host: g_idx [K], perm [K]. G = K / group_size (1 without groups).
// Options: as gf::GptqOptions, checked by gf::gptq_options_problem(K, o, gf::Engine::cuda):
// block_size must be 128; mse: every grid by the search of gptq_math.h (gptq_grid.cuh warp_grid_mse).
gf::GptqResult gptq_quantize(Context& ctx, int64_t N, int64_t K, float* W, const float* H,
                             const gf::GptqOptions& o, uint8_t* codes, float* scales,
                             int32_t* zeros, int32_t* g_idx, int32_t* perm,
                             const SolveConfig& cfg = SolveConfig(), SolveTimes* times = nullptr,
                             std::vector<double>* row_loss = nullptr,   // [N] per-row losses
                             const GptaqDevice* gptaq = nullptr);       // null: plain GPTQ

// Reference: the same results from the simplest kernel (one thread per row walking the CPU
// engine's loops in global memory, U from the CPU engine's fp64 routine). Small sizes only.
gf::GptqResult gptq_quantize_ref(Context& ctx, int64_t N, int64_t K, float* W, const float* H,
                                 const gf::GptqOptions& o, uint8_t* codes, float* scales,
                                 int32_t* zeros, int32_t* g_idx, int32_t* perm);

}  // namespace gfc
