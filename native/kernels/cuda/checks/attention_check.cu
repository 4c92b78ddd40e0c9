// Checks of the causal GQA attention kernels against one CPU reference in fp64 (simple loops):
// flash_attention_variant (attention.h, 4 and 8 warps), causal_attention (llama.h, the chunked
// cuBLAS kernel with HF-eager fp16 scores, several query chunk sizes) and its GPU reference
// causal_attention_ref. Random fp16 q/k/v from a fixed seed; windows of odd lengths (ragged last
// tiles), S = 1, GQA groups 1..8, head sizes 64/128 (and 96, chunked only); separate and stacked
// q/k/v buffers. Then timings of each variant on Llama-2-70B shapes.
//   build/cuda/checks/attention_check          exit 0 only when every case passes
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../attention.h"
#include "../llama.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

struct Shape { int64_t windows, S, heads, kv, D; float std; bool stacked; };

// The exact softmax attention of every (token, head) and the quantities the tolerances need.
struct Ref {
  std::vector<double> o, pv_abs, absv;  // [T, heads·D]: output, Σ_j P_j |v_j|, Σ_j |v_j|
  std::vector<double> n, smax, amax, invL;  // [T·heads]: keys, max |s_j|, max scale·Σ|q·k|, 1/Σ exp(s_j − max)
};

Ref attention_ref(const Shape& c, const std::vector<__half>& q, int64_t ldq, const std::vector<__half>& k, int64_t ldk,
                  const std::vector<__half>& v, int64_t ldv) {
  const int64_t T = c.windows * c.S, QD = c.heads * c.D, group = c.heads / c.kv;
  const double scale = 1.0 / std::sqrt((double)c.D);
  Ref r;
  r.o.assign(T * QD, 0);
  r.pv_abs.assign(T * QD, 0);
  r.absv.assign(T * QD, 0);
  r.n.assign(T * c.heads, 0);
  r.smax.assign(T * c.heads, 0);
  r.amax.assign(T * c.heads, 0);
  r.invL.assign(T * c.heads, 0);
  std::vector<double> s(c.S), a(c.S);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < c.heads; ++h) {
      const int64_t w0 = t / c.S * c.S, n = t - w0 + 1, kh = h / group;
      double mx = -INFINITY, sm = 0, am = 0;
      for (int64_t j = 0; j < n; ++j) {
        double d = 0, da = 0;
        for (int64_t i = 0; i < c.D; ++i) {
          const double p = (double)h2f(q[t * ldq + h * c.D + i]) * h2f(k[(w0 + j) * ldk + kh * c.D + i]);
          d += p;
          da += std::fabs(p);
        }
        s[j] = d * scale;
        a[j] = da * scale;
        mx = std::max(mx, s[j]);
        sm = std::max(sm, std::fabs(s[j]));
        am = std::max(am, a[j]);
      }
      double L = 0;
      for (int64_t j = 0; j < n; ++j) L += std::exp(s[j] - mx);
      const int64_t row = t * c.heads + h;
      r.n[row] = (double)n;
      r.smax[row] = sm;
      r.amax[row] = am;
      r.invL[row] = 1.0 / L;
      for (int64_t i = 0; i < c.D; ++i) {
        double o = 0, pa = 0, av = 0;
        for (int64_t j = 0; j < n; ++j) {
          const double p = std::exp(s[j] - mx) / L, vv = h2f(v[(w0 + j) * ldv + kh * c.D + i]);
          o += p * vv;
          pa += p * std::fabs(vv);
          av += std::fabs(vv);
        }
        r.o[t * QD + h * c.D + i] = o;
        r.pv_abs[t * QD + h * c.D + i] = pa;
        r.absv[t * QD + h * c.D + i] = av;
      }
    }
  return r;
}

enum Kind { kFlash, kChunked, kGpuRef };

// Tolerance of one output element (index e = t·QD + h·D + i) for each kernel; u16 = 2^-11,
// u32 = 2^-24, n keys, a = max scale·Σ|q·k| (fp32 score accumulation errs by ≤ 2D·u32·a: products
// of fp16 are exact, the tensor-core adds may truncate), |s| = max |score|.
double tolerance(Kind kind, const Shape& c, const Ref& r, size_t e) {
  const int64_t QD = c.heads * c.D, row = (int64_t)(e / QD) * c.heads + (int64_t)(e % QD) / c.D;
  const double n = r.n[row], sm = r.smax[row], am = r.amax[row], o = std::fabs(r.o[e]), pa = r.pv_abs[e];
  const double out_round = kHalfU * o * (1 + kHalfU) + kHalfSub;  // the output's rounding to fp16
  if (kind == kFlash) {
    // Scores, softmax, sums in fp32 (log2 domain): each unnormalised p_j is off by a relative
    // ε ≤ 2D·u32·a + 2·u32·(|s_j| + |max|) + 2·u32 (exp2f) + the online rescales (2·u32 per key tile);
    // perturbing numerator and Σ alike moves o by ≤ 2ε·Σ P|v|. P is rounded to fp16 only as the
    // P·V operand (Σ of the fp32 p's is the divisor): u16·Σ P|v|, plus the subnormal half-spacing
    // per key over L; fp32 sums over n keys (P·V and L): 3n·u32·Σ P|v|; 1/l and o·(1/l): 2·u32.
    const double eps = 2 * c.D * kFloatU * am + 4 * kFloatU * sm + 2 * kFloatU + 2 * (n / 64 + 1) * kFloatU;
    return out_round + pa * (kHalfU + 2 * eps + (3 * n + 2) * kFloatU) * (1 + kHalfU) + kHalfSub * r.absv[e] * r.invL[row];
  }
  if (kind == kChunked) {
    // HF eager: scores rounded to fp16 (u16·|s| + half-spacing, after the fp32 accumulation);
    // softmax in fp32 of those: relative error ≤ e^(2·max|Δs|) − 1 + (n + 6)·u32; P rounded to fp16
    // (u16, and half-spacing 2^-25 per key times |v_j|) with no renormalisation; P·V fp32 (2n·u32).
    const double ds = kHalfU * sm + kHalfSub + 2 * c.D * kFloatU * am;
    const double eps = std::expm1(2 * ds) + (n + 6) * kFloatU;  // exp(2·max|Δs|) − 1 ≥ 2·max|Δs|
    return out_round + pa * (eps + kHalfU + 2 * n * kFloatU) * (1 + kHalfU) + kHalfSub * r.absv[e];
  }
  // GPU reference: fp32 serial sums (D per score, n for Σ and per output), expf, one division.
  const double eps = 2 * (c.D * kFloatU * am + 2 * kFloatU * sm) + (2 * n + 8) * kFloatU;
  return out_round + pa * eps;
}

void check_case(Context& ctx, std::mt19937& rng, const Shape& c) {
  const int64_t T = c.windows * c.S, QD = c.heads * c.D, KVD = c.kv * c.D;
  // Stacked: one [T, QD + 2·KVD] buffer as the forward pass holds it; else three tight buffers.
  const int64_t ldq = c.stacked ? QD + 2 * KVD : QD, ldk = c.stacked ? ldq : KVD, ldv = ldk;
  std::vector<__half> qh, kh, vh;
  DevBuf<__half> all, qd, kd, vd;
  const __half *q, *k, *v;
  if (c.stacked) {
    qh = random_halves(rng, T * ldq, c.std);
    kh = std::vector<__half>(qh.begin() + QD, qh.end());  // views at column offsets, same stride
    vh = std::vector<__half>(qh.begin() + QD + KVD, qh.end());
    all = upload(ctx, qh);
    q = all.get(), k = all.get() + QD, v = all.get() + QD + KVD;
  } else {
    qh = random_halves(rng, T * QD, c.std), kh = random_halves(rng, T * KVD, c.std), vh = random_halves(rng, T * KVD, c.std);
    qd = upload(ctx, qh), kd = upload(ctx, kh), vd = upload(ctx, vh);
    q = qd.get(), k = kd.get(), v = vd.get();
  }
  const Ref r = attention_ref(c, qh, ldq, kh, ldk, vh, ldv);
  const std::string shape = strf("windows %lld × S %lld, heads %lld/%lld, D %lld, std %.1f, %s", (long long)c.windows,
                                 (long long)c.S, (long long)c.heads, (long long)c.kv, (long long)c.D, c.std,
                                 c.stacked ? "stacked qkv" : "separate q/k/v");
  DevBuf<__half> out(T * QD);
  auto run = [&](Kind kind, const std::string& name, auto&& launch) {
    poison(ctx, out.get(), T * QD);
    launch();
    validate_result(name + " " + shape, to_double(download(ctx, out.get(), T * QD)), r.o,
                    [&](size_t e) { return tolerance(kind, c, r, e); });
  };
  run(kGpuRef, "causal_attention_ref", [&] { causal_attention_ref(ctx, T, c.S, c.heads, c.kv, c.D, q, ldq, k, ldk, v, ldv, out.get(), QD); });
  for (int64_t qc : {std::min<int64_t>(1024, c.S), int64_t(40)}) {
    if (qc == 40 && c.S <= 40) continue;
    DevBuf<__half> scores(c.heads * std::min(qc, c.S) * c.S);
    run(kChunked, strf("causal_attention (chunks of %lld queries)", (long long)qc),
        [&] { causal_attention(ctx, T, c.S, c.heads, c.kv, c.D, q, ldq, k, ldk, v, ldv, out.get(), QD, qc, scores.get()); });
  }
  if (!flash_attention_supported(c.D)) {
    report(throws([&] { flash_attention(ctx, T, c.S, c.heads, c.kv, c.D, q, ldq, k, ldk, v, ldv, out.get(), QD); }),
           strf("flash_attention refuses head size %lld (not 64 or 128)", (long long)c.D));
    return;
  }
  for (int warps : {4, 8})
    run(kFlash, strf("flash_attention (%d warps)", warps),
        [&] { flash_attention_variant(ctx, warps, T, c.S, c.heads, c.kv, c.D, q, ldq, k, ldk, v, ldv, out.get(), QD); });
  run(kFlash, "flash_attention (default)", [&] { flash_attention(ctx, T, c.S, c.heads, c.kv, c.D, q, ldq, k, ldk, v, ldv, out.get(), QD); });
}

void check_refusals(Context& ctx) {
  DevBuf<__half> b(64 * 64 * 3);
  const __half* p = b.get();
  report(throws([&] { flash_attention_variant(ctx, 6, 64, 64, 1, 1, 64, p, 192, p + 64, 192, p + 128, 192, b.get(), 64); }),
         "flash_attention_variant refuses warps = 6");
  report(throws([&] { flash_attention(ctx, 64, 64, 1, 1, 64, p, 196, p + 64, 196, p + 128, 196, b.get(), 64); }),
         "flash_attention refuses row strides that are not multiples of 8");
  report(throws([&] { flash_attention(ctx, 60, 64, 1, 1, 64, p, 192, p + 64, 192, p + 128, 192, b.get(), 64); }),
         "flash_attention refuses T that is not a whole number of windows");
}

void timings(Context& ctx, std::mt19937& rng) {
  // Llama-2-70B: 64 heads, 8 kv heads, D 128; a chunk of 4 windows of 4096 tokens.
  const int64_t S = 4096, W = 4, T = W * S, heads = 64, kv = 8, D = 128, QD = heads * D, KVD = kv * D, ld = QD + 2 * KVD;
  DevBuf<__half> qkv(T * ld), out(T * QD), scores(heads * 1024 * S);
  fill_device_halves(ctx, qkv.get(), T * ld, 1.0f, rng());
  const __half *q = qkv.get(), *k = q + QD, *v = q + QD + KVD;
  const double fl = flash_attention_flops(T, S, heads, D);
  const std::string shape = strf("Llama-2-70B shapes, %lld windows of %lld, 64/8 heads, D 128", (long long)W, (long long)S);
  for (int warps : {4, 8}) {
    const double ms = time_ms(ctx, 10, [&] { flash_attention_variant(ctx, warps, T, S, heads, kv, D, q, ld, k, ld, v, ld, out.get(), QD); });
    timing_line(strf("flash_attention %d warps, %s", warps, shape.c_str()), ms, strf("%.1f TFLOP/s (useful causal FLOPs)", fl / ms / 1e9));
  }
  for (int64_t qc : {int64_t(512), int64_t(1024)}) {
    const double ms = time_ms(ctx, 5, [&] { causal_attention(ctx, T, S, heads, kv, D, q, ld, k, ld, v, ld, out.get(), QD, qc, scores.get()); });
    timing_line(strf("causal_attention chunks of %lld, %s", (long long)qc, shape.c_str()), ms,
                strf("%.1f TFLOP/s (same FLOP count as flash)", fl / ms / 1e9));
  }
}

}  // namespace

int main() {
  return run_check("attention_check", [](Context& ctx) {
    std::mt19937 rng(1302);
    const Shape shapes[] = {
        {3, 100, 8, 2, 64, 1.0f, true},  {2, 257, 6, 2, 64, 2.0f, true},  {1, 512, 8, 1, 128, 1.0f, true},
        {2, 130, 4, 4, 128, 3.0f, true}, {1, 64, 2, 1, 128, 1.0f, true},  {4, 33, 4, 2, 64, 1.0f, true},
        {5, 1, 2, 1, 64, 1.0f, true},    {2, 96, 4, 2, 64, 1.0f, false},  {2, 70, 4, 2, 96, 1.0f, false},
    };
    for (const Shape& c : shapes) check_case(ctx, rng, c);
    check_refusals(ctx);
    if (timing_enabled()) timings(ctx, rng);
  });
}
