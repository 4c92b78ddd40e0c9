#include "forward.h"

#include <algorithm>
#include <stdexcept>

#include "attention.h"
#include "llama.h"

namespace gfc {

namespace {

__global__ void swiglu_rows_kernel(int64_t F, const __half* gu, __half* out) {
  const int64_t t = blockIdx.y, f = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8;
  if (f >= F) return;
  const uint4 ug = *reinterpret_cast<const uint4*>(gu + t * 2 * F + f);
  const uint4 uu = *reinterpret_cast<const uint4*>(gu + t * 2 * F + F + f);
  const __half* hg = reinterpret_cast<const __half*>(&ug);
  const __half* hu = reinterpret_cast<const __half*>(&uu);
  uint4 r;
  __half* hr = reinterpret_cast<__half*>(&r);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const float g = __half2float(hg[j]), u = __half2float(hu[j]);
    const float s = __half2float(__float2half_rn(g / (1.0f + expf(-g))));
    hr[j] = __float2half_rn(s * u);
  }
  *reinterpret_cast<uint4*>(out + t * F + f) = r;
}

}  // namespace

void swiglu_rows(Context& ctx, int64_t T, int64_t F, const __half* gu, __half* out) {
  if (F % 8) throw std::runtime_error("swiglu_rows: F must be a multiple of 8");
  if (T <= 0) return;
  const dim3 grid((unsigned)((F / 8 + 255) / 256), (unsigned)T);
  swiglu_rows_kernel<<<grid, 256, 0, ctx.stream>>>(F, gu, out);
  CUDA_LAUNCH_CHECK();
}

StageClock::~StageClock() {
  for (auto& p : pool_) { cudaEventDestroy(p.a); cudaEventDestroy(p.b); }
}

void StageClock::begin(Stage s) {
  if (used_ == pool_.size()) {
    Pair p{s, nullptr, nullptr};
    CUDA_CHECK(cudaEventCreate(&p.a));
    CUDA_CHECK(cudaEventCreate(&p.b));
    pool_.push_back(p);
  }
  pool_[used_].stage = s;
  CUDA_CHECK(cudaEventRecord(pool_[used_].a, ctx_.stream));
}

void StageClock::end() { CUDA_CHECK(cudaEventRecord(pool_[used_++].b, ctx_.stream)); }

std::vector<double> StageClock::collect() {
  ctx_.sync();
  std::vector<double> t(kStages, 0.0);
  for (size_t i = 0; i < used_; ++i) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, pool_[i].a, pool_[i].b));
    t[pool_[i].stage] += ms / 1e3;
  }
  used_ = 0;
  return t;
}

namespace {
int64_t qkv_width(const LayerDims& d) { return (d.heads + 2 * d.kv_heads) * d.head_dim; }
constexpr int64_t kChunkedQueries = 1024;  // queries per chunk of the fallback attention
}  // namespace

double ForwardScratch::bytes(const LayerDims& d, int64_t S, int64_t tokens) {
  const int64_t QD = d.heads * d.head_dim;
  double b = 2.0 * tokens * (d.hidden + std::max(qkv_width(d), 2 * d.ffn) + QD + d.ffn);
  if (!flash_attention_supported(d.head_dim)) b += 2.0 * d.heads * std::min(kChunkedQueries, S) * S;
  return b;
}

void ForwardScratch::alloc(const LayerDims& d, int64_t S, int64_t n) {
  tokens = n;
  const int64_t QD = d.heads * d.head_dim;
  nrm.alloc(n * d.hidden);
  big.alloc(n * std::max(qkv_width(d), 2 * d.ffn));
  att.alloc(n * QD);
  act.alloc(n * d.ffn);
  if (!flash_attention_supported(d.head_dim)) scores.alloc(d.heads * std::min(kChunkedQueries, S) * S);
}

void forward_layer(Context& ctx, const LayerDims& d, int64_t S, int64_t T, __half* X, const ForwardWeights& w,
                   ForwardScratch& s, StageClock& clock, ForwardFlops& flops) {
  const int64_t HID = d.hidden, FFN = d.ffn, HD = d.head_dim, QD = d.heads * HD, KVD = d.kv_heads * HD;
  const int64_t QKV = qkv_width(d);
  if (T % S || s.tokens % S || s.tokens <= 0) throw std::runtime_error("forward_layer: tokens must be whole windows");
  if (HID % 8 || FFN % 8 || d.heads % d.kv_heads) throw std::runtime_error("forward_layer: unsupported layer dims");
  const bool flash = flash_attention_supported(HD);
  for (int64_t t0 = 0; t0 < T; t0 += s.tokens) {
    const int64_t tc = std::min(s.tokens, T - t0);
    __half* x = X + t0 * HID;
    clock.begin(StageClock::kOther);
    rms_norm(ctx, tc, HID, x, w.input_norm, d.eps, s.nrm.get());
    clock.end();
    clock.begin(StageClock::kGemm);
    linear_f16(ctx, tc, QKV, HID, s.nrm.get(), HID, w.qkv, HID, s.big.get(), QKV);
    clock.end();
    clock.begin(StageClock::kOther);
    rope_inplace(ctx, tc, S, d.heads, HD, d.rope_theta, s.big.get(), QKV);
    rope_inplace(ctx, tc, S, d.kv_heads, HD, d.rope_theta, s.big.get() + QD, QKV);
    clock.end();
    clock.begin(StageClock::kAttention);
    if (flash) {
      flash_attention(ctx, tc, S, d.heads, d.kv_heads, HD, s.big.get(), QKV, s.big.get() + QD, QKV,
                      s.big.get() + QD + KVD, QKV, s.att.get(), QD);
    } else {
      causal_attention(ctx, tc, S, d.heads, d.kv_heads, HD, s.big.get(), QKV, s.big.get() + QD, QKV,
                       s.big.get() + QD + KVD, QKV, s.att.get(), QD, kChunkedQueries, s.scores.get());
    }
    clock.end();
    clock.begin(StageClock::kGemm);
    linear_f16(ctx, tc, HID, QD, s.att.get(), QD, w.o, QD, s.nrm.get(), HID);
    clock.end();
    clock.begin(StageClock::kOther);
    add_f16(ctx, tc * HID, x, s.nrm.get(), x);  // h1 = x + o(att), rounded as transformers
    rms_norm(ctx, tc, HID, x, w.post_norm, d.eps, s.nrm.get());
    clock.end();
    clock.begin(StageClock::kGemm);
    linear_f16(ctx, tc, 2 * FFN, HID, s.nrm.get(), HID, w.gate_up, HID, s.big.get(), 2 * FFN);
    clock.end();
    clock.begin(StageClock::kOther);
    swiglu_rows(ctx, tc, FFN, s.big.get(), s.act.get());
    clock.end();
    clock.begin(StageClock::kGemm);
    linear_f16(ctx, tc, HID, FFN, s.act.get(), FFN, w.down, FFN, s.nrm.get(), HID);
    clock.end();
    clock.begin(StageClock::kOther);
    add_f16(ctx, tc * HID, x, s.nrm.get(), x);
    clock.end();
    flops.gemm += 2.0 * (double)tc * HID * (QKV + QD + 2 * FFN + FFN);
    flops.attention += flash ? flash_attention_flops(tc, S, d.heads, HD) : attention_flops(tc, S, d.heads, HD, kChunkedQueries);
  }
}

}  // namespace gfc
