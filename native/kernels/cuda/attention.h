// Fused causal grouped-query attention for the inference path (FlashAttention-2's scheme):
// each block takes 16·warps queries of one head of one window, streams that window's keys and
// values through shared memory 64 at a time, and keeps the softmax online (running row max and
// sum in fp32): no score matrix is ever stored, not even for one chunk of queries.
// Tensor cores through mma.sync m16n8k16 (fp16 inputs, fp32 accumulation). Scores, softmax and
// the output's normalisation are fp32; P is rounded to fp16 only as the P·V operand.
// The chunked kernel of llama.h (causal_attention, cuBLAS batched GEMMs, fp16 scores as HF
// eager) and its one-thread-per-(token, head) reference stay as the references of this one.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "context.h"

namespace gfc {

// True when flash_attention handles this head size (64 or 128; others use causal_attention).
bool flash_attention_supported(int64_t D);

// Causal GQA attention over T tokens = T/S windows of S tokens (already rotated; any S ≥ 1):
// q [T, heads·D] (row stride ldq), k/v [T, kv_heads·D] (ldk, ldv) → out [T, heads·D] (ldo).
// Query head h reads kv head h / (heads / kv_heads). Strides in halves, multiples of 8, and
// every pointer 16-byte aligned (column offsets multiples of 8).
void flash_attention(Context& ctx, int64_t T, int64_t S, int64_t heads, int64_t kv_heads, int64_t D,
                     const __half* q, int64_t ldq, const __half* k, int64_t ldk, const __half* v,
                     int64_t ldv, __half* out, int64_t ldo);

// The same with a chosen block shape: `warps` of 16 queries each (4 or 8), for the checks and
// the benchmark that chose flash_attention's default.
void flash_attention_variant(Context& ctx, int warps, int64_t T, int64_t S, int64_t heads,
                             int64_t kv_heads, int64_t D, const __half* q, int64_t ldq,
                             const __half* k, int64_t ldk, const __half* v, int64_t ldv,
                             __half* out, int64_t ldo);

// The useful FLOPs of both products (each query against the keys up to itself), for rates.
double flash_attention_flops(int64_t T, int64_t S, int64_t heads, int64_t D);

}  // namespace gfc
