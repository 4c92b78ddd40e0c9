// The GPTQ solve of one linear layer, as the reference code computes it (docs/gptq.md).
//
// Where the reference's parts are (IST-DASLab gptq: gptq.py class GPTQ, quant.py Quantizer):
//   add_batch    the Hessian H = 2/n Σ XᵀX over calibration windows (n = windows):
//                gf::add_batch, native/kernels/cpu/hessian.{h,cc}; CUDA: cuda/hessian.cu.
//   fasterquant  gf::gptq_quantize below (native/kernels/cpu/gptq.cc; "fasterquant:" comments
//                quote each reference line), in this order:
//                  find_params of the whole row without groups (before dead columns);
//                  dead columns: diag(H) = 0 → H[i, i] = 1, W[:, i] = 0;
//                  static_groups: the group grids, up front, on the unpermuted W;
//                  actorder: perm = argsort(diag H, descending), stable (gf::act_order_perm);
//                  damping: percdamp · mean(diag H) on the diagonal (GptqOptions::damp_percent,
//                    gf::damping), raised while not PD (gf::damp_until_pd: our addition);
//                  Hinv = upper Cholesky factor of H⁻¹ (gf::upper_cholesky_of_inverse, linalg.cc, fp64);
//                  the lazy-batch blocks of blocksize = 128 columns (GptqOptions::block_size):
//                    a group's grid when its first column comes (from W: earlier blocks' updates),
//                    quantize, err = (w − q) / d, error feedback inside the block (W1 −= err ⊗
//                    Hinv1[i, i:]), then W[:, i2:] −= Err1 · Hinv[i1:i2, i2:] after it;
//                  the loss Σ (w − q)² / d² / 2 (GptqResult::loss); Q un-permuted; g_idx (gf::g_idx_of).
//   find_params  gf::find_params (+ gf::mse_search for Quantizer(mse=True)), quantize =
//                gf::quant_code / gf::dequant: native/kernels/common/gptq_math.h, shared with the
//                CUDA solve (cuda/gptq.cu) so both engines follow one rule.
//   percdamp, blocksize, groupsize, actorder, static_groups: the fields of gf::GptqOptions
//                (common/gptq_math.h; checked by gf::gptq_options_problem).
//   GPTAQ        (optional, gptaq.h) the cross term C and α: P = α triu₁(Cp Uᵀ) U is built after
//                Hinv, and each column's update gains + x_c ⊗ P[c, :] inside its block, the lazy
//                update + Q1 · P[i1:i2, i2:] (docs/gptq.md, "GPTAQ").
#pragma once
#include <cstdint>
#include <string>

#include "../common/gptq_math.h"
#include "gptaq.h"

namespace gf {

struct GptqResult {
  double loss = 0;            // Σ (w − q)² / d² / 2 over the whole matrix
  float damp_percent = 0;     // damping actually used (raised when H was not PD)
  int damp_raises = 0;        // how many times it was raised
  int64_t dead_columns = 0;   // columns with diag(H) = 0 (set to zero)
};

// W [N, K] row-major: in, the weights; out, the dequantised Q in the original column order.
// H [K, K] row-major symmetric (not modified). Outputs, G = K / group_size (1 without groups):
//   codes [N, K] integer codes (original order), scales [G, N], zeros [G, N] (integer zero
//   points, not minus one), g_idx [K], perm [K] (identity without act-order).
// gptaq: null for plain GPTQ (every output as without the argument); else GPTAQ's C [K, K] and α.
// Throws std::runtime_error on bad options, when H stays non-PD after raising damping or a GPTAQ
// C has NaN/Inf entries, and std::invalid_argument for a missing GPTAQ C or a negative or
// non-finite α.
GptqResult gptq_quantize(int64_t N, int64_t K, float* W, const float* H, const GptqOptions& o,
                         uint8_t* codes, float* scales, int32_t* zeros, int32_t* g_idx,
                         int32_t* perm, const GptaqInput* gptaq = nullptr);

// Round-to-nearest with the same grid (the baseline GPTQ is measured against): no error
// feedback, groups in natural order. Same outputs as gptq_quantize.
void rtn_quantize(int64_t N, int64_t K, float* W, const GptqOptions& o, uint8_t* codes,
                  float* scales, int32_t* zeros, int32_t* g_idx);

}  // namespace gf
