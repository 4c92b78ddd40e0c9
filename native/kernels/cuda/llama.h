// The Llama decoder pieces on the GPU, fp16 activations (the model dtype) with fp32 arithmetic
// inside each op and fp16 storage after each op, as transformers runs an fp16 model:
// cuBLAS tensor-core GEMMs (fp16 in/out, fp32 accumulation), fused RMSNorm, RoPE, SwiGLU and
// a causal GQA attention that handles one window's chunk of queries at a time.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "context.h"

namespace gfc {

// C[M, N] = alpha · A[M, K] · W[N, K]ᵀ + beta · C  (all fp16 row-major; ld = row strides).
void linear_f16(Context& ctx, int64_t M, int64_t N, int64_t K, const __half* A, int64_t lda,
                const __half* W, int64_t ldw, __half* C, int64_t ldc, float alpha = 1.0f,
                float beta = 0.0f);

// out[T, H] = RMSNorm(x[T, H]) · w[H]: normalise in fp32, round to fp16, times w, round.
void rms_norm(Context& ctx, int64_t T, int64_t H, const __half* x, const __half* w, float eps,
              __half* out);
// Reference: one thread per row, plain loops.
void rms_norm_ref(Context& ctx, int64_t T, int64_t H, const __half* x, const __half* w,
                  float eps, __half* out);

// In place on x[T, ld] columns [0, n_heads·D): rotate-half RoPE at position t % S (T a whole
// number of windows of S tokens); cos/sin in fp32 rounded to fp16, products and sums in fp16.
void rope_inplace(Context& ctx, int64_t T, int64_t S, int64_t n_heads, int64_t D, float theta,
                  __half* x, int64_t ld);

// out[T, F] = silu(gu[T, 0:F]) · gu[T, F:2F] (gate then up, fp16 roundings as transformers).
void swiglu(Context& ctx, int64_t T, int64_t F, const __half* gu, __half* out);

// out[T, H] = a[T, H] + b[T, H] (fp16 sum); out may alias a or b.
void add_f16(Context& ctx, int64_t n, const __half* a, const __half* b, __half* out);

// Causal GQA attention over T tokens = T/S windows of S tokens, already rotated:
// q [T, heads·D] (row stride ldq), k/v [T, kv_heads·D] (ldk, ldv) → out [T, heads·D] (ldo).
// Per window, queries are taken in chunks of qc; each chunk's scores [heads, qc, keys ≤ chunk
// end] (fp16, causal cut) live in `scores` ≥ heads·qc·S halves; 64 heads per batched GEMM.
// HF eager semantics: fp16 scores (scaled by 1/√D), softmax in fp32 rounded to fp16, P·V.
void causal_attention(Context& ctx, int64_t T, int64_t S, int64_t heads, int64_t kv_heads,
                      int64_t D, const __half* q, int64_t ldq, const __half* k, int64_t ldk,
                      const __half* v, int64_t ldv, __half* out, int64_t ldo, int64_t qc,
                      __half* scores);
// Reference: one thread per (token, head), two passes over the keys in fp32 (no fp16 rounding
// of scores/probabilities, so compare with a tolerance), small sizes only.
void causal_attention_ref(Context& ctx, int64_t T, int64_t S, int64_t heads, int64_t kv_heads,
                          int64_t D, const __half* q, int64_t ldq, const __half* k, int64_t ldk,
                          const __half* v, int64_t ldv, __half* out, int64_t ldo);

// FLOPs of causal_attention's two GEMMs (with the causal cut per chunk), for rate reports.
double attention_flops(int64_t T, int64_t S, int64_t heads, int64_t D, int64_t qc);

}  // namespace gfc
