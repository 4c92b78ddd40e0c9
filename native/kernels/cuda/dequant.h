// AutoGPTQ "gptq" (v1) linears dequantised on the GPU for the inference path: the same bit
// layout and arithmetic as native/kernels/cpu/pack.h's dequantize_gptq with round16 (and as
// AutoGPTQ's torch kernels): w = fp16(scale[g, n] · (code[k, n] − (stored_zero[g, n] + 1))),
// g = g_idx[k]. The product of an fp16 scale and a small integer is exact in fp32, so the one
// rounding to fp16 gives the value torch's fp16 multiply gives.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "context.h"

namespace gfc {

// qweight [K·bits/32, N], qzeros [G, N·bits/32], scales [G, N] fp16, g_idx [K] (device) →
// w [N, K] fp16, row stride ldw ≥ K (rows of a stacked matrix). K and N multiples of 32,
// bits ∈ {2, 3, 4, 8}. flags (device, 2 ints, not cleared here): [0] += g_idx entries outside
// [0, G) (read as group 0), [1] += non-finite results.
void dequantize_gptq(Context& ctx, const int32_t* qweight, const int32_t* qzeros, const __half* scales,
                     const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits, __half* w,
                     int64_t ldw, int* flags);
// Reference: one thread per weight, bit by bit.
void dequantize_gptq_ref(Context& ctx, const int32_t* qweight, const int32_t* qzeros, const __half* scales,
                         const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits, __half* w,
                         int64_t ldw, int* flags);

}  // namespace gfc
