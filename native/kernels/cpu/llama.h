// The Llama decoder pieces on the CPU, fp32 arithmetic, one window of S tokens at a time.
// "round16" reproduces where an fp16 model (transformers, torch_dtype=float16) stores its
// activations in fp16: every op's output is rounded to the nearest fp16 value.
#pragma once
#include <cstdint>

namespace gf {

struct LlamaDims {
  int64_t hidden;      // H
  int64_t ffn;         // F (intermediate_size)
  int64_t heads;       // attention heads
  int64_t kv_heads;    // key/value heads (GQA: heads % kv_heads == 0)
  int64_t head_dim;    // D
  float eps;           // rms_norm_eps
  float rope_theta;
  bool round16;        // emulate fp16 activation storage
};

// One decoder layer's weights in fp32, row-major [out, in] like the checkpoint.
struct LayerWeightsF32 {
  const float* input_norm;  // [H]
  const float* q;           // [heads*D, H]
  const float* k;           // [kv_heads*D, H]
  const float* v;           // [kv_heads*D, H]
  const float* o;           // [H, heads*D]
  const float* post_norm;   // [H]
  const float* gate;        // [F, H]
  const float* up;          // [F, H]
  const float* down;        // [H, F]
};

// out[S, H] = RMSNorm(x[S, H]) * w[H]   (HF: normalise in fp32, cast, then scale)
void rms_norm(int64_t S, int64_t H, const float* x, const float* w, float eps, bool round16,
              float* out);

// In place on x[S, n_heads*D]: rotate-half RoPE at positions 0..S-1.
void rope_inplace(int64_t S, int64_t n_heads, int64_t D, float theta, bool round16, float* x);

// Causal grouped-query attention of one window.
// q[S, heads*D], k/v[S, kv_heads*D] (already rotated) → out[S, heads*D].
void causal_attention(const LlamaDims& d, int64_t S, const float* q, const float* k,
                      const float* v, float* out);

// One decoder layer on one window, in place on x[S, H].
void decoder_layer_window(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, float* x);

// The same layer cut where its linears take their inputs (GPTQ's true-sequential groups), so
// a pipeline can gather each group's Hessian after quantizing the groups before it:
//   att = attention(input_layernorm(x))            input of o_proj       (q/k/v read norm1(x))
//   h1  = x + o_proj(att)                          residual after attention
//   act = silu(gate(norm2(h1))) · up(norm2(h1))    input of down_proj    (gate/up read norm2(h1))
//   out = h1 + down_proj(act)                      the layer's output
// att[S, heads·D]
void step_attention(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, const float* x,
                    float* att);
// h1[S, H] from x[S, H] and att[S, heads·D]
void step_attn_residual(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, const float* x,
                        const float* att, float* h1);
// act[S, F] from h1[S, H]
void step_mlp_act(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, const float* h1,
                  float* act);
// out[S, H] = h1 + down(act); out may alias h1.
void step_mlp_out(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, const float* h1,
                  const float* act, float* out);

// Per-token negative log-likelihood of one window: final RMSNorm, lm_head, log-softmax.
// x[S, H], norm[H], lm_head[V, H] (fp32), ids[S]; nll[S-1] gets -log p(ids[t+1] | ≤ t),
// argmax[S] the most likely next token at every position.
void window_nll(const LlamaDims& d, int64_t V, int64_t S, const float* x, const float* norm,
                const float* lm_head, const int32_t* ids, float* nll, int32_t* argmax);

}  // namespace gf
