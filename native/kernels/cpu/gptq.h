// The GPTQ solve of one linear layer, as the reference code computes it (../shared/GPTQ-SPEC.md).
#pragma once
#include <cstdint>
#include <string>

namespace gf {

struct GptqOptions {
  int bits;               // 2, 3, 4 or 8
  int64_t group_size;     // −1: one group of all K columns
  bool act_order;         // desc_act: columns in order of decreasing diag(H)
  bool static_groups;     // grids fixed up front on the original column groups
  bool sym;               // symmetric grid (zero = (maxq + 1) / 2)
  bool mse;               // shrink each grid to minimise Σ|q − w|^2.4 (the reference's
                          // Quantizer(mse=True): grid 100, maxshrink 0.8); off in AutoGPTQ
  float damp_percent;     // damping = damp_percent · mean(diag H)
  int64_t block_size;     // lazy-batch block, 128
};

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
// Throws std::runtime_error on bad options or when H stays non-PD after raising damping.
GptqResult gptq_quantize(int64_t N, int64_t K, float* W, const float* H, const GptqOptions& o,
                         uint8_t* codes, float* scales, int32_t* zeros, int32_t* g_idx,
                         int32_t* perm);

// Round-to-nearest with the same grid (the baseline GPTQ is measured against): no error
// feedback, groups in natural order. Same outputs as gptq_quantize.
void rtn_quantize(int64_t N, int64_t K, float* W, const GptqOptions& o, uint8_t* codes,
                  float* scales, int32_t* zeros, int32_t* g_idx);

}  // namespace gf
