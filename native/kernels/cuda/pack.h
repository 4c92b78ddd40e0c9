// AutoGPTQ "gptq" (v1) packing on the GPU, the same bit layout as native/kernels/cpu/pack.h:
// little-endian bit streams of `bits`-bit values, 32 values per `bits` words.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "context.h"

namespace gfc {

// codes [N, K] (row stride ldc ≥ K; codes of rows [0, N) of a larger stacked matrix are fine)
// → qweight [K·bits/32, N]. K % 32 == 0. Codes above 2^bits − 1 are masked (the solve never
// produces them).
void pack_qweight(Context& ctx, const uint8_t* codes, int64_t ldc, int64_t N, int64_t K, int bits,
                  int32_t* qweight);
// zeros [G, N] (row stride ldz) → qzeros [G, N·bits/32] of (zero − 1) mod 2^bits. N % 32 == 0.
void pack_qzeros(Context& ctx, const int32_t* zeros, int64_t ldz, int64_t G, int64_t N, int bits,
                 int32_t* qzeros);
// scales [G, N] fp32 (row stride lds) → fp16 [G, N].
void scales_to_f16(Context& ctx, const float* scales, int64_t lds, int64_t G, int64_t N, __half* out);

// Reference: one thread per output word, bit by bit.
void pack_qweight_ref(Context& ctx, const uint8_t* codes, int64_t ldc, int64_t N, int64_t K, int bits,
                      int32_t* qweight);

}  // namespace gfc
