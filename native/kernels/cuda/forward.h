// One Llama decoder layer's forward pass for the inference path (perplexity): the layer's
// fp16 weights on the device (a branch's linears already dequantised), applied in place to the
// hidden states of every window, a chunk of windows at a time. The same ops and fp16 roundings
// as the quantizer's forward (layer_quant.cu) and transformers' fp16 layer: RMSNorm, the
// stacked [q; k; v] GEMM, RoPE, causal GQA attention (flash_attention; the chunked kernel for
// head sizes it does not take), o_proj + residual, RMSNorm, [gate; up], SwiGLU, down + residual.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <vector>

#include "context.h"
#include "layer_quant.h"

namespace gfc {

struct ForwardWeights {
  const __half* qkv;         // [(heads + 2·kv_heads)·D, hidden]
  const __half* o;           // [hidden, heads·D]
  const __half* gate_up;     // [2·ffn, hidden]
  const __half* down;        // [hidden, ffn]
  const __half* input_norm;  // [hidden]
  const __half* post_norm;   // [hidden]
};

// Device scratch for chunks of `tokens` tokens (a whole number of windows).
struct ForwardScratch {
  DevBuf<__half> nrm, big, att, act, scores;
  int64_t tokens = 0;
  void alloc(const LayerDims& d, int64_t S, int64_t tokens);
  static double bytes(const LayerDims& d, int64_t S, int64_t tokens);
};

// Device time of each kind of work, from event pairs (events are pooled and reused).
class StageClock {
 public:
  enum Stage { kGemm = 0, kAttention, kOther, kDequant, kHead, kStages };
  explicit StageClock(Context& c) : ctx_(c) {}
  ~StageClock();
  StageClock(const StageClock&) = delete;
  StageClock& operator=(const StageClock&) = delete;
  void begin(Stage s);
  void end();
  // Waits for the stream and adds up the time of every pair since the last collect().
  std::vector<double> collect();

 private:
  struct Pair { Stage stage; cudaEvent_t a, b; };
  Context& ctx_;
  std::vector<Pair> pool_;
  size_t used_ = 0;
};

struct ForwardFlops {
  double gemm = 0, attention = 0;
};

// X [T, hidden] fp16 (device), T = windows·S: in, the layer's inputs; out, its outputs.
void forward_layer(Context& ctx, const LayerDims& d, int64_t S, int64_t T, __half* X, const ForwardWeights& w,
                   ForwardScratch& s, StageClock& clock, ForwardFlops& flops);

// out[T, F] = silu(gu[T, 0:F]) · gu[T, F:2F], the same roundings as swiglu (llama.h), 8
// values a thread with 16-byte accesses (F % 8 == 0).
void swiglu_rows(Context& ctx, int64_t T, int64_t F, const __half* gu, __half* out);

}  // namespace gfc
