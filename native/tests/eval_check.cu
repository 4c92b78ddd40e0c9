// Device checks and timings of the inference path's kernels (needs a GPU; built by
// native/build-cuda.sh as build/cuda/eval_check):
//  1. flash_attention against the one-thread-per-(token, head) reference (fp32, no fp16
//     rounding of scores) and against the chunked cuBLAS kernel, on fresh random inputs,
//     several window lengths (ragged last blocks too), GQA groups, head sizes 64 and 128;
//  2. dequantize_gptq bit-exact against its GPU reference and the CPU engine's
//     dequantize_gptq_ref (round16), bits 2/3/4/8 with act-order g_idx; bad g_idx is counted;
//  3. token_nll against its fp64 reference; swiglu_rows bit-exact against swiglu;
//  4. timings on Llama-2-70B shapes: flash (4 and 8 warps) vs the chunked kernel, and the fp16
//     GEMM rate of each layer GEMM (the ceiling the eval's TFLOP/s is compared with).
// Exit code 0 only when every check passes; one line per check, then the timing table.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "../kernels/cpu/half.h"
#include "../kernels/cpu/pack.h"
#include "../kernels/cuda/attention.h"
#include "../kernels/cuda/dequant.h"
#include "../kernels/cuda/eval_ops.h"
#include "../kernels/cuda/forward.h"
#include "../kernels/cuda/llama.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

double rel_err(const std::vector<__half>& a, const std::vector<__half>& b) {
  return check::rel_err(halves_to_float(a), halves_to_float(b));
}
// Poisons a device buffer so that an unwritten element shows (NaN halves).
void poison(Context& ctx, __half* p, size_t n) { CUDA_CHECK(cudaMemsetAsync(p, 0xFF, n * 2, ctx.stream)); }

std::string fmt(const char* f, double a, double b = 0, double c = 0, double d = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, f, a, b, c, d);
  return buf;
}

// Tolerances: the output is rounded to fp16 (relative 2^-11 per element, ~2.8e-4 rms); P is
// rounded to fp16 as the P·V operand (another ~2.8e-4 rms per weight, averaging over keys).
// Against the fp32 reference the Frobenius error stays well under 1e-3; the bar is 2e-3.
void check_attention(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t windows, S, heads, kv, D; float std; };
  const Case cases[] = {{3, 100, 8, 2, 64, 1.0f}, {2, 257, 6, 2, 64, 2.0f}, {1, 512, 8, 1, 128, 1.0f},
                        {2, 130, 4, 4, 128, 3.0f}, {1, 64, 2, 1, 128, 1.0f}, {4, 33, 4, 2, 64, 1.0f}};
  for (const Case& c : cases) {
    const int64_t T = c.windows * c.S, QD = c.heads * c.D, KVD = c.kv * c.D, ld = QD + 2 * KVD;
    auto qkv = upload(ctx, random_halves(rng, T * ld, c.std));
    DevBuf<__half> ref(T * QD), fl(T * QD), ch(T * QD), scores(c.heads * std::min<int64_t>(1024, c.S) * c.S);
    const __half *q = qkv.get(), *k = qkv.get() + QD, *v = qkv.get() + QD + KVD;
    causal_attention_ref(ctx, T, c.S, c.heads, c.kv, c.D, q, ld, k, ld, v, ld, ref.get(), QD);
    causal_attention(ctx, T, c.S, c.heads, c.kv, c.D, q, ld, k, ld, v, ld, ch.get(), QD, 1024, scores.get());
    const auto r = download(ctx, ref.get(), T * QD), hc = download(ctx, ch.get(), T * QD);
    for (int warps : {4, 8}) {
      poison(ctx, fl.get(), T * QD);
      flash_attention_variant(ctx, warps, T, c.S, c.heads, c.kv, c.D, q, ld, k, ld, v, ld, fl.get(), QD);
      const auto f = download(ctx, fl.get(), T * QD);
      const double e = rel_err(f, r), ec = rel_err(f, hc);
      report(e < 2e-3, fmt("flash attention (%.0f warps) vs reference: ", warps) +
                           fmt("windows %.0f × S %.0f, heads %.0f/", (double)c.windows, (double)c.S, (double)c.heads) +
                           fmt("%.0f, D %.0f, input std %.1f: rel err %.2e", (double)c.kv, (double)c.D, c.std, e) +
                           fmt(" (chunked kernel vs reference %.2e, flash vs chunked %.2e)", rel_err(hc, r), ec));
    }
  }
}

void check_dequant(Context& ctx, std::mt19937& rng) {
  const int64_t K = 256, N = 96;
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t gs : {int64_t(64), K}) {
      const int64_t G = K / gs;
      std::uniform_int_distribution<uint32_t> word;
      std::vector<int32_t> qw(K * bits / 32 * N), qz(G * (N * bits / 32)), gi(K);
      for (auto& x : qw) x = (int32_t)word(rng);
      for (auto& x : qz) x = (int32_t)word(rng);
      std::vector<int> perm(K);
      for (int64_t i = 0; i < K; ++i) perm[i] = (int)i;
      std::shuffle(perm.begin(), perm.end(), rng);  // act-order: groups scattered over K
      for (int64_t i = 0; i < K; ++i) gi[i] = perm[i] / (int)gs;
      std::vector<__half> sc = random_halves(rng, G * N, 0.01f);
      std::vector<uint16_t> sc16(sc.size());
      for (size_t i = 0; i < sc.size(); ++i) sc16[i] = __half_as_ushort(sc[i]);
      auto dqw = upload(ctx, qw), dqz = upload(ctx, qz), dgi = upload(ctx, gi);
      auto dsc = upload(ctx, sc);
      DevBuf<__half> fast(N * K), ref(N * K);
      DevBuf<int> flags(2);
      CUDA_CHECK(cudaMemsetAsync(flags.get(), 0, 8, ctx.stream));
      poison(ctx, fast.get(), N * K);
      dequantize_gptq(ctx, dqw.get(), dqz.get(), dsc.get(), dgi.get(), K, N, G, bits, fast.get(), K, flags.get());
      dequantize_gptq_ref(ctx, dqw.get(), dqz.get(), dsc.get(), dgi.get(), K, N, G, bits, ref.get(), K, flags.get());
      const auto f = download(ctx, fast.get(), N * K), r = download(ctx, ref.get(), N * K);
      const auto fl = download(ctx, flags.get(), 2);
      std::vector<float> cpu(N * K);
      gf::dequantize_gptq_ref(qw.data(), qz.data(), sc16.data(), gi.data(), K, N, G, bits, true, cpu.data());
      int64_t diff_ref = 0, diff_cpu = 0;
      for (int64_t i = 0; i < N * K; ++i) {
        diff_ref += __half_as_ushort(f[i]) != __half_as_ushort(r[i]);
        diff_cpu += __half2float(f[i]) != cpu[i];
      }
      report(diff_ref == 0 && diff_cpu == 0 && fl[0] == 0 && fl[1] == 0,
             fmt("dequantize_gptq %.0f-bit, G %.0f, act-order g_idx: ", bits, (double)G) +
                 fmt("%.0f entries differ from the GPU reference, %.0f from the CPU engine", (double)diff_ref, (double)diff_cpu));
    }
  }
  // An out-of-range g_idx is counted, not read.
  const int64_t K2 = 64, N2 = 32, G2 = 2;
  std::vector<int32_t> qw(K2 * 4 / 32 * N2, 0x12345678), qz(G2 * (N2 * 4 / 32), 0x77777777), gi(K2, 0);
  gi[5] = 7;
  gi[9] = -1;
  auto dqw = upload(ctx, qw), dqz = upload(ctx, qz), dgi = upload(ctx, gi);
  auto dsc = upload(ctx, random_halves(rng, G2 * N2, 0.01f));
  DevBuf<__half> out(N2 * K2);
  DevBuf<int> flags(2);
  CUDA_CHECK(cudaMemsetAsync(flags.get(), 0, 8, ctx.stream));
  dequantize_gptq(ctx, dqw.get(), dqz.get(), dsc.get(), dgi.get(), K2, N2, G2, 4, out.get(), K2, flags.get());
  const auto fl = download(ctx, flags.get(), 2);
  report(fl[0] == 2 * N2, fmt("dequantize_gptq counts g_idx outside [0, G): %.0f of %.0f", fl[0], 2.0 * N2));
}

void check_nll_swiglu(Context& ctx, std::mt19937& rng) {
  const int64_t M = 64, V = 32000;
  auto logits = upload(ctx, random_halves(rng, M * V, 3.0f));
  std::vector<int32_t> tg(M);
  std::uniform_int_distribution<int> id(0, (int)V - 1);
  for (int64_t i = 0; i < M; ++i) tg[i] = i % 17 == 16 ? -1 : id(rng);
  auto dt = upload(ctx, tg);
  DevBuf<double> a(M), b(M);
  token_nll(ctx, M, V, logits.get(), V, dt.get(), a.get());
  token_nll_ref(ctx, M, V, logits.get(), V, dt.get(), b.get());
  const auto x = download(ctx, a.get(), M), y = download(ctx, b.get(), M);
  double worst = 0;
  for (int64_t i = 0; i < M; ++i) worst = std::max(worst, std::fabs(x[i] - y[i]));
  report(worst < 1e-5, fmt("token_nll vs fp64 reference, %.0f rows × %.0f: max |diff| %.2e", (double)M, (double)V, worst));

  const int64_t T = 37, F = 1024;
  auto gu = upload(ctx, random_halves(rng, T * 2 * F, 2.0f));
  DevBuf<__half> o1(T * F), o2(T * F);
  poison(ctx, o1.get(), T * F);
  swiglu(ctx, T, F, gu.get(), o2.get());
  swiglu_rows(ctx, T, F, gu.get(), o1.get());
  const auto p = download(ctx, o1.get(), T * F), q = download(ctx, o2.get(), T * F);
  int64_t diff = 0;
  for (int64_t i = 0; i < T * F; ++i) diff += __half_as_ushort(p[i]) != __half_as_ushort(q[i]);
  report(diff == 0, fmt("swiglu_rows vs swiglu: %.0f of %.0f entries differ", (double)diff, (double)(T * F)));
}

template <class F>
double time_ms(Context& ctx, int reps, F&& f) {
  f();
  ctx.sync();
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a, ctx.stream));
    f();
    CUDA_CHECK(cudaEventRecord(b, ctx.stream));
    CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void timings(Context& ctx, std::mt19937& rng) {
  // Llama-2-70B: hidden 8192, 64 heads, 8 kv heads, D 128, ffn 28672; a chunk of 4 windows.
  const int64_t S = 4096, W = 4, T = W * S, heads = 64, kv = 8, D = 128, QD = heads * D, KVD = kv * D;
  const int64_t ld = QD + 2 * KVD, H = 8192, F = 28672;
  auto qkv = upload(ctx, random_halves(rng, T * ld, 1.0f));
  DevBuf<__half> out(T * QD), scores(heads * 1024 * S);
  const __half *q = qkv.get(), *k = qkv.get() + QD, *v = qkv.get() + QD + KVD;
  const double fl = flash_attention_flops(T, S, heads, D);
  std::printf("\nTimings (median of repeats), Llama-2-70B shapes, %lld tokens (%lld windows of %lld):\n",
              (long long)T, (long long)W, (long long)S);
  for (int warps : {4, 8}) {
    const double ms = time_ms(ctx, 10, [&] { flash_attention_variant(ctx, warps, T, S, heads, kv, D, q, ld, k, ld, v, ld, out.get(), QD); });
    std::printf("  flash attention, %d warps: %8.3f ms  %6.1f TFLOP/s (useful causal FLOPs)\n", warps, ms, fl / ms / 1e9);
  }
  const double msc = time_ms(ctx, 5, [&] { causal_attention(ctx, T, S, heads, kv, D, q, ld, k, ld, v, ld, out.get(), QD, 1024, scores.get()); });
  std::printf("  chunked cuBLAS attention:  %8.3f ms  %6.1f TFLOP/s (same FLOP count)\n", msc, fl / msc / 1e9);
  qkv.release();
  scores.release();
  struct G { const char* name; int64_t N, K; };
  const G gemms[] = {{"qkv", QD + 2 * KVD, H}, {"o", H, QD}, {"gate_up", 2 * F, H}, {"down", H, F}, {"lm_head", 32000, H}};
  double best = 0;
  for (const G& g : gemms) {
    auto A = upload(ctx, random_halves(rng, T * g.K, 1.0f));
    auto Wt = upload(ctx, random_halves(rng, g.N * g.K, 0.01f));
    DevBuf<__half> C(T * g.N);
    const double ms = time_ms(ctx, 10, [&] { linear_f16(ctx, T, g.N, g.K, A.get(), g.K, Wt.get(), g.K, C.get(), g.N); });
    const double tf = 2.0 * T * g.N * g.K / ms / 1e9;
    best = std::max(best, tf);
    std::printf("  GEMM %-8s M %lld N %6lld K %6lld: %8.3f ms  %6.1f TFLOP/s\n", g.name, (long long)T, (long long)g.N,
                (long long)g.K, ms, tf);
  }
  {
    const int64_t n = 8192;
    auto A = upload(ctx, random_halves(rng, n * n, 1.0f)), B = upload(ctx, random_halves(rng, n * n, 1.0f));
    DevBuf<__half> C(n * n);
    const double ms = time_ms(ctx, 10, [&] { linear_f16(ctx, n, n, n, A.get(), n, B.get(), n, C.get(), n); });
    std::printf("  GEMM 8192³ (fp16 in/out, fp32 accumulation): %.3f ms  %.1f TFLOP/s\n", ms, 2.0 * n * n * n / ms / 1e9);
    best = std::max(best, 2.0 * n * n * n / ms / 1e9);
  }
  std::printf("GEMM ceiling (best measured): %.1f TFLOP/s\n", best);
}

}  // namespace

int main() try {
  Context ctx;
  std::mt19937 rng(20261201);
  check_attention(ctx, rng);
  check_dequant(ctx, rng);
  check_nll_swiglu(ctx, rng);
  timings(ctx, rng);
  std::printf(failures() ? "%d CHECK(S) FAILED\n" : "ALL PASSED\n", failures());
  return failures() ? 1 : 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "eval_check: %s\n", e.what());
  return 2;
}
