// Preparing a GPTQ Hessian on the GPU and the upper Cholesky factor of its inverse, as the CPU
// engine computes them (native/kernels/cpu/gptq.cc, linalg.cc): dead columns, act-order
// permutation, damping with the same retry rule, then U with H⁻¹ = Uᵀ U through one Cholesky
// (cuSOLVER potrf, fp64) of the flipped matrix and one triangular inverse (cuSOLVER trtri).
#pragma once
#include <cstdint>
#include <vector>

#include "context.h"

namespace gfc {

struct PreparedHessian {
  std::vector<int32_t> perm;   // [K] act-order permutation (identity without act-order)
  std::vector<uint8_t> dead;   // [K] 1 where diag(H) = 0
  int64_t dead_columns = 0;
  double mean_diag = 0;        // mean of the permuted diagonal after the dead-column fix
  float damp_percent = 0;      // damping used (raised when not PD)
  int damp_raises = 0;
};

// H [K, K] fp32 row-major symmetric (device, not modified). Reads diag(H) to the host, checks
// that H is finite (throws otherwise), finds dead columns and the act-order permutation
// (gf::act_order_perm: stable sort by decreasing diagonal, as the CPU engine).
PreparedHessian analyse_hessian(Context& ctx, int64_t K, const float* H, bool act_order);

struct CholTimes {
  double build_ms = 0, potrf_ms = 0, trtri_ms = 0;  // build: permute/flip/damp + the final flip
};

// U [K, K] fp32 row-major upper triangular (device, zeros below the diagonal): the upper
// Cholesky factor of (P H Pᵀ + dead fix + damp·mean_diag·I)⁻¹. Raises damping by the rule the
// CPU engine uses (gf::damp_until_pd, native/kernels/common/gptq_math.h). `work` [K·K] fp64
// scratch (device); p.damp_percent/damp_raises are set. The triangular inverse recurses by
// halves down to blocks of ≤ trtri_base columns (0: one cuSOLVER trtri of the whole matrix).
void upper_cholesky_of_inverse(Context& ctx, int64_t K, const float* H, float damp_percent,
                               PreparedHessian& p, double* work, float* U,
                               CholTimes* times = nullptr, int64_t trtri_base = 2048);
// The same in fp32 (as the reference's torch code factors): half the memory, `work` [K·K] fp32.
void upper_cholesky_of_inverse_f32(Context& ctx, int64_t K, const float* H, float damp_percent,
                                   PreparedHessian& p, float* work, float* U,
                                   CholTimes* times = nullptr, int64_t trtri_base = 2048);

// Reference: the same U from the fp64 CPU routine of the CPU engine on a host copy (small K).
void upper_cholesky_of_inverse_ref(Context& ctx, int64_t K, const float* H, float damp_percent,
                                   PreparedHessian& p, float* U);

}  // namespace gfc
