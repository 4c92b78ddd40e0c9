// Checks of native/kernels/cuda/forward.h: swiglu_rows against a CPU reference in fp64 and
// bit-exact against swiglu (llama.h: the same fp32 arithmetic and roundings); forward_layer
// against the composition of the public kernels it documents (rms_norm, linear_f16, rope,
// flash or chunked attention, add_f16, swiglu_rows), chunk by chunk: bit-exact, since each is
// deterministic (that checks the wiring, chunking and scratch use; each kernel's arithmetic is
// checked against its own CPU reference in llama_check / attention_check, and the layer's
// semantics against the CPU engine end to end by test/cuda/eval-cuda-check.js); its FLOP counts
// and StageClock; timings of swiglu vs swiglu_rows and of one Llama-2-70B layer.
//   build/cuda/checks/forward_check          exit 0 only when every case passes
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../attention.h"
#include "../forward.h"
#include "../llama.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

void check_swiglu_rows(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t T, F; };
  for (const Case& c : {Case{37, 1024}, Case{1, 8}, Case{5, 2056}, Case{16, 28672}}) {
    const auto gu = random_halves(rng, c.T * 2 * c.F, 2.0f);
    auto dgu = upload(ctx, gu);
    DevBuf<__half> a(c.T * c.F), b(c.T * c.F);
    poison(ctx, a.get(), c.T * c.F);
    swiglu_rows(ctx, c.T, c.F, dgu.get(), a.get());
    swiglu(ctx, c.T, c.F, dgu.get(), b.get());
    const auto x = download(ctx, a.get(), c.T * c.F);
    std::vector<double> ref(c.T * c.F), absu(c.T * c.F);
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t f = 0; f < c.F; ++f) {
        const double g = h2f(gu[t * 2 * c.F + f]), u = h2f(gu[t * 2 * c.F + c.F + f]);
        ref[t * c.F + f] = g / (1.0 + std::exp(-g)) * u;
        absu[t * c.F + f] = std::fabs(u);
      }
    const std::string shape = strf("T=%lld F=%lld", (long long)c.T, (long long)c.F);
    // As swiglu (llama_check): silu in fp32 ≤ 4·u32 relative, rounded to fp16, s·u in fp32 and
    // rounded to fp16: 2·u16 + 5·u32 relative plus the subnormal half-spacings.
    validate_result("swiglu_rows vs fp64 " + shape, to_double(x), ref, [&](size_t i) {
      return std::fabs(ref[i]) * (2 * kHalfU + 5 * kFloatU) * (1 + kHalfU) + kHalfSub * (1 + absu[i]);
    });
    validate_exact("swiglu_rows vs swiglu " + shape, bits_of(x), bits_of(download(ctx, b.get(), c.T * c.F)));
  }
  DevBuf<__half> g(2 * 12), o(12);
  report(throws([&] { swiglu_rows(ctx, 1, 12, g.get(), o.get()); }), "swiglu_rows refuses F = 12 (not a multiple of 8)");
}

struct Layer {
  LayerDims d;
  DevBuf<__half> qkv, o, gate_up, down, in_norm, post_norm;
  ForwardWeights w() const { return {qkv.get(), o.get(), gate_up.get(), down.get(), in_norm.get(), post_norm.get()}; }
};

Layer make_layer(Context& ctx, std::mt19937& rng, const LayerDims& d, bool device_fill) {
  Layer L{d, {}, {}, {}, {}, {}, {}};
  const int64_t QD = d.heads * d.head_dim, QKV = (d.heads + 2 * d.kv_heads) * d.head_dim;
  auto make = [&](DevBuf<__half>& b, int64_t n, float std, float mean) {
    if (device_fill) {
      b.alloc(n);
      fill_device_halves(ctx, b.get(), n, std, rng());
      if (mean != 0) b = upload(ctx, random_halves(rng, n, std, mean));
    } else {
      b = upload(ctx, random_halves(rng, n, std, mean));
    }
  };
  make(L.qkv, QKV * d.hidden, 0.05f, 0), make(L.o, d.hidden * QD, 0.05f, 0);
  make(L.gate_up, 2 * d.ffn * d.hidden, 0.05f, 0), make(L.down, d.hidden * d.ffn, 0.05f, 0);
  make(L.in_norm, d.hidden, 0.1f, 1.0f), make(L.post_norm, d.hidden, 0.1f, 1.0f);
  return L;
}

// forward_layer's documented sequence, from the public kernels, over the same chunks.
void compose(Context& ctx, const Layer& L, int64_t S, int64_t T, int64_t chunk, __half* X) {
  const LayerDims& d = L.d;
  const int64_t H = d.hidden, F = d.ffn, D = d.head_dim, QD = d.heads * D, KVD = d.kv_heads * D, QKV = QD + 2 * KVD;
  DevBuf<__half> nrm(chunk * H), big(chunk * std::max(QKV, 2 * F)), att(chunk * QD), act(chunk * F), scores(d.heads * S * S);
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t tc = std::min(chunk, T - t0);
    __half* x = X + t0 * H;
    rms_norm(ctx, tc, H, x, L.in_norm.get(), d.eps, nrm.get());
    linear_f16(ctx, tc, QKV, H, nrm.get(), H, L.qkv.get(), H, big.get(), QKV);
    rope_inplace(ctx, tc, S, d.heads, D, d.rope_theta, big.get(), QKV);
    rope_inplace(ctx, tc, S, d.kv_heads, D, d.rope_theta, big.get() + QD, QKV);
    if (flash_attention_supported(D))
      flash_attention(ctx, tc, S, d.heads, d.kv_heads, D, big.get(), QKV, big.get() + QD, QKV, big.get() + QD + KVD, QKV, att.get(), QD);
    else  // S ≤ 1024 here: one chunk of S queries whatever forward_layer's chunk size (≥ S)
      causal_attention(ctx, tc, S, d.heads, d.kv_heads, D, big.get(), QKV, big.get() + QD, QKV, big.get() + QD + KVD, QKV, att.get(), QD, S,
                       scores.get());
    linear_f16(ctx, tc, H, QD, att.get(), QD, L.o.get(), QD, nrm.get(), H);
    add_f16(ctx, tc * H, x, nrm.get(), x);
    rms_norm(ctx, tc, H, x, L.post_norm.get(), d.eps, nrm.get());
    linear_f16(ctx, tc, 2 * F, H, nrm.get(), H, L.gate_up.get(), H, big.get(), 2 * F);
    swiglu_rows(ctx, tc, F, big.get(), act.get());
    linear_f16(ctx, tc, H, F, act.get(), F, L.down.get(), F, nrm.get(), H);
    add_f16(ctx, tc * H, x, nrm.get(), x);
  }
}

void check_forward_layer(Context& ctx, std::mt19937& rng) {
  struct Case { LayerDims d; int64_t S, windows, chunk_windows; };
  const Case cases[] = {
      {{256, 768, 4, 2, 64, 1e-5f, 10000.0f}, 128, 5, 2},   // flash path, a last chunk of 1 window
      {{384, 1024, 6, 2, 64, 1e-5f, 10000.0f}, 100, 3, 3},  // ragged flash tiles, one chunk
      {{192, 512, 2, 1, 96, 1e-6f, 500000.0f}, 70, 4, 3},   // head size 96: the chunked attention
      {{256, 512, 2, 2, 128, 1e-5f, 10000.0f}, 33, 2, 1},
  };
  for (const Case& c : cases) {
    const Layer L = make_layer(ctx, rng, c.d, false);
    const int64_t T = c.S * c.windows, H = c.d.hidden, chunk = c.S * c.chunk_windows;
    const auto x0 = random_halves(rng, T * H, 1.0f);
    auto X = upload(ctx, x0), Y = upload(ctx, x0);
    ForwardScratch s;
    s.alloc(c.d, c.S, chunk);
    StageClock clock(ctx);
    ForwardFlops flops;
    forward_layer(ctx, c.d, c.S, T, X.get(), L.w(), s, clock, flops);
    const auto times = clock.collect();
    compose(ctx, L, c.S, T, chunk, Y.get());
    const std::string shape = strf("hidden %lld ffn %lld heads %lld/%lld D %lld, %lld windows × S %lld, chunks of %lld windows", (long long)H,
                                   (long long)c.d.ffn, (long long)c.d.heads, (long long)c.d.kv_heads, (long long)c.d.head_dim,
                                   (long long)c.windows, (long long)c.S, (long long)c.chunk_windows);
    const auto out = bits_of(download(ctx, X.get(), T * H));
    validate_exact("forward_layer vs the composed kernels, " + shape, out, bits_of(download(ctx, Y.get(), T * H)));
    bool finite = true, changed = false;
    for (int64_t i = 0; i < T * H; ++i) { finite &= (out[i] & 0x7c00) != 0x7c00; changed |= out[i] != hbits(x0[i]); }
    report(finite && changed, "forward_layer output finite and not the input, " + shape);
    const int64_t QD = c.d.heads * c.d.head_dim, QKV = QD + 2 * c.d.kv_heads * c.d.head_dim;
    double gemm = 0, attn = 0;
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
      const int64_t tc = std::min(chunk, T - t0);
      gemm += 2.0 * tc * H * (QKV + QD + 3 * c.d.ffn);
      attn += flash_attention_supported(c.d.head_dim) ? flash_attention_flops(tc, c.S, c.d.heads, c.d.head_dim)
                                                      : attention_flops(tc, c.S, c.d.heads, c.d.head_dim, 1024);
    }
    // FLOP counts: sums of the same products in the same order, so equal up to one rounding per chunk.
    const double nch = (double)((T + chunk - 1) / chunk);
    report(std::fabs(flops.gemm - gemm) <= nch * kDoubleU * gemm && std::fabs(flops.attention - attn) <= nch * kDoubleU * attn &&
               times.size() == StageClock::kStages && times[StageClock::kGemm] > 0 && times[StageClock::kAttention] > 0 && times[StageClock::kOther] > 0,
           strf("forward_layer FLOPs (GEMM %.4g, attention %.4g) and stage times (GEMM %.3g s, attention %.3g s, other %.3g s), ", flops.gemm, flops.attention,
                times[StageClock::kGemm], times[StageClock::kAttention], times[StageClock::kOther]) + shape);
  }
  DevBuf<__half> X(10 * 256);
  ForwardScratch s;
  const LayerDims d{256, 768, 4, 2, 64, 1e-5f, 10000.0f};
  s.alloc(d, 4, 8);
  StageClock clock(ctx);
  ForwardFlops f;
  const Layer L = make_layer(ctx, rng, d, false);
  report(throws([&] { forward_layer(ctx, d, 4, 10, X.get(), L.w(), s, clock, f); }), "forward_layer refuses T that is not whole windows");
}

void timings(Context& ctx, std::mt19937& rng) {
  {
    const int64_t T = 16384, F = 28672;
    DevBuf<__half> gu(T * 2 * F), out(T * F);
    fill_device_halves(ctx, gu.get(), T * 2 * F, 2.0f, rng());
    const double gb = 2.0 * 3 * T * F / 1e9;
    const double a = time_ms(ctx, 10, [&] { swiglu(ctx, T, F, gu.get(), out.get()); });
    timing_line(strf("swiglu T=%lld F=%lld (grid-stride, one value a thread)", (long long)T, (long long)F), a, strf("%.0f GB/s", gb / a * 1e3));
    const double b = time_ms(ctx, 10, [&] { swiglu_rows(ctx, T, F, gu.get(), out.get()); });
    timing_line(strf("swiglu_rows T=%lld F=%lld (8 values a thread, 16-byte accesses)", (long long)T, (long long)F), b, strf("%.0f GB/s", gb / b * 1e3));
  }
  const LayerDims d{8192, 28672, 64, 8, 128, 1e-5f, 10000.0f};  // Llama-2-70B
  const int64_t S = 4096, T = 4 * S;
  const Layer L = make_layer(ctx, rng, d, true);
  DevBuf<__half> X(T * d.hidden);
  fill_device_halves(ctx, X.get(), T * d.hidden, 1.0f, rng());
  ForwardScratch s;
  s.alloc(d, S, T);
  StageClock clock(ctx);
  ForwardFlops f;
  const double ms = time_ms(ctx, 3, [&] { forward_layer(ctx, d, S, T, X.get(), L.w(), s, clock, f); });
  const auto t = clock.collect();
  timing_line(strf("forward_layer Llama-2-70B layer, 4 windows of %lld tokens", (long long)S), ms,
              strf("%.1f TFLOP/s (GEMM %.1f s, attention %.1f s, other %.1f s over the 4 runs)", (f.gemm + f.attention) / 4 / ms / 1e9,
                   t[StageClock::kGemm], t[StageClock::kAttention], t[StageClock::kOther]));
}

}  // namespace

int main() {
  return run_check("forward_check", [](Context& ctx) {
    std::mt19937 rng(1308);
    check_swiglu_rows(ctx, rng);
    check_forward_layer(ctx, rng);
    if (timing_enabled()) timings(ctx, rng);
  });
}
