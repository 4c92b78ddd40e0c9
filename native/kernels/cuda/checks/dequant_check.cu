// Checks of native/kernels/cuda/dequant.h: dequantize_gptq (tiled) and dequantize_gptq_ref
// against a CPU reference written here (bit streams read bit by bit) and against the CPU
// engine's gf::dequantize_gptq_ref (round16), bits 2/3/4/8, groups of 64 and one group,
// act-order g_idx, K not a multiple of the 64-column tile, rows of a stacked matrix (ldw > K);
// the flags (bad g_idx, non-finite results) and the refused dimensions; timings of both.
//   build/cuda/checks/dequant_check          exit 0 only when every case passes
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../cpu/pack.h"
#include "../dequant.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

// Field i of the little-endian stream of `bits`-bit values whose word j is words[j·stride].
uint32_t field(const int32_t* words, int64_t stride, int64_t i, int bits) {
  uint32_t v = 0;
  for (int b = 0; b < bits; ++b) {
    const int64_t pos = i * bits + b;
    v |= (((uint32_t)words[(pos / 32) * stride] >> (pos % 32)) & 1u) << b;
  }
  return v;
}

// w[n, k] = fp16(scale[g, n] · (code − (stored zero + 1))), g = g_idx[k] (read as 0 when out of
// range). scale·(small integer) is exact in fp32, so the one rounding to fp16 is the kernel's:
// the comparison is bit-exact (tolerance 0).
std::vector<uint16_t> dequant_ref(const std::vector<int32_t>& qw, const std::vector<int32_t>& qz, const std::vector<__half>& sc,
                                  const std::vector<int32_t>& gi, int64_t K, int64_t N, int64_t G, int bits, int* bad,
                                  int* nonfinite) {
  std::vector<uint16_t> w(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      int64_t g = gi[k];
      if (g < 0 || g >= G) { ++*bad; g = 0; }
      const int code = (int)field(qw.data() + n, N, k, bits), zero = (int)field(qz.data() + g * (N * bits / 32), 1, n, bits) + 1;
      const __half r = f2h(h2f(sc[g * N + n]) * (float)(code - zero));
      *nonfinite += !std::isfinite(h2f(r));
      w[n * K + k] = hbits(r);
    }
  return w;
}

void check_case(Context& ctx, std::mt19937& rng, int64_t K, int64_t N, int bits, int64_t gs, int64_t pad, bool act, bool huge_scale) {
  const int64_t G = K / gs, ldw = K + pad;
  std::uniform_int_distribution<uint32_t> word;
  std::vector<int32_t> qw(K * bits / 32 * N), qz(G * (N * bits / 32)), gi(K);
  for (auto& x : qw) x = (int32_t)word(rng);
  for (auto& x : qz) x = (int32_t)word(rng);
  std::vector<int> perm(K);
  for (int64_t i = 0; i < K; ++i) perm[i] = (int)i;
  if (act) std::shuffle(perm.begin(), perm.end(), rng);  // act-order: groups scattered over K
  for (int64_t i = 0; i < K; ++i) gi[i] = perm[i] / (int)gs;
  auto sc = random_halves(rng, G * N, 0.01f);
  if (huge_scale) sc[0] = f2h(65504.0f);  // |code − zero| ≥ 2 overflows to ±inf: counted
  int bad = 0, nonfin = 0;
  const auto ref = dequant_ref(qw, qz, sc, gi, K, N, G, bits, &bad, &nonfin);
  auto dqw = upload(ctx, qw), dqz = upload(ctx, qz), dgi = upload(ctx, gi);
  auto dsc = upload(ctx, sc);
  DevBuf<__half> w(N * ldw);
  DevBuf<int> flags(2);
  const std::string shape = strf("%d-bit K=%lld N=%lld G=%lld%s ldw=K+%lld%s", bits, (long long)K, (long long)N, (long long)G,
                                 act ? " act-order g_idx" : "", (long long)pad, huge_scale ? ", one scale 65504" : "");
  for (int variant = 0; variant < 2; ++variant) {
    poison(ctx, w.get(), N * ldw);
    CUDA_CHECK(cudaMemsetAsync(flags.get(), 0, 2 * sizeof(int), ctx.stream));
    (variant ? dequantize_gptq_ref : dequantize_gptq)(ctx, dqw.get(), dqz.get(), dsc.get(), dgi.get(), K, N, G, bits, w.get(), ldw, flags.get());
    const auto out = download(ctx, w.get(), N * ldw);
    const auto fl = download(ctx, flags.get(), 2);
    std::vector<uint16_t> got(N * K);
    bool pad_ok = true;
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) got[n * K + k] = hbits(out[n * ldw + k]);
      for (int64_t k = K; k < ldw; ++k) pad_ok &= hbits(out[n * ldw + k]) == 0xFFFF;  // poison left alone
    }
    const char* name = variant ? "dequantize_gptq_ref" : "dequantize_gptq";
    validate_exact(strf("%s %s", name, shape.c_str()), got, ref);
    report(fl[0] == bad && fl[1] == nonfin && pad_ok, strf("%s %s: flags bad g_idx %d (expected %d), non-finite %d (expected %d)%s", name,
                                                          shape.c_str(), fl[0], bad, fl[1], nonfin, pad_ok ? "" : ", columns [K, ldw) WRITTEN"));
  }
  if (huge_scale) return;
  // The CPU engine's reference (fp32 values of the fp16 results) on the same words.
  std::vector<uint16_t> sc16(sc.size());
  for (size_t i = 0; i < sc.size(); ++i) sc16[i] = hbits(sc[i]);
  std::vector<float> cpu(N * K);
  gf::dequantize_gptq_ref(qw.data(), qz.data(), sc16.data(), gi.data(), K, N, G, bits, true, cpu.data());
  std::vector<uint16_t> cpu_bits(N * K);
  for (int64_t i = 0; i < N * K; ++i) cpu_bits[i] = hbits(f2h(cpu[i]));  // exact: cpu[i] is an fp16 value
  validate_exact(strf("CPU engine gf::dequantize_gptq_ref vs this reference, %s", shape.c_str()), cpu_bits, ref);
}

void check_flags_and_refusals(Context& ctx, std::mt19937& rng) {
  // An out-of-range g_idx is counted (once per output row it is read for), read as group 0.
  const int64_t K = 64, N = 32, G = 2;
  std::vector<int32_t> qw(K * 4 / 32 * N, 0x12345678), qz(G * (N * 4 / 32), 0x77777777), gi(K, 0);
  gi[5] = 7;
  gi[9] = -1;
  auto sc = random_halves(rng, G * N, 0.01f);
  int bad = 0, nonfin = 0;
  const auto ref = dequant_ref(qw, qz, sc, gi, K, N, G, 4, &bad, &nonfin);
  auto dqw = upload(ctx, qw), dqz = upload(ctx, qz), dgi = upload(ctx, gi);
  auto dsc = upload(ctx, sc);
  DevBuf<__half> w(N * K);
  DevBuf<int> flags(2);
  CUDA_CHECK(cudaMemsetAsync(flags.get(), 0, 2 * sizeof(int), ctx.stream));
  dequantize_gptq(ctx, dqw.get(), dqz.get(), dsc.get(), dgi.get(), K, N, G, 4, w.get(), K, flags.get());
  const auto fl = download(ctx, flags.get(), 2);
  validate_exact("dequantize_gptq with g_idx 7 and −1 (read as group 0)", bits_of(download(ctx, w.get(), N * K)), ref);
  report(fl[0] == 2 * N && bad == 2 * N, strf("dequantize_gptq counts g_idx outside [0, G): %d of %lld", fl[0], (long long)(2 * N)));
  auto call = [&](int64_t k, int64_t n, int bits, int64_t ldw) {
    return throws([&] { dequantize_gptq(ctx, dqw.get(), dqz.get(), dsc.get(), dgi.get(), k, n, G, bits, w.get(), ldw, flags.get()); });
  };
  report(call(48, N, 4, 64) && call(K, 48, 4, K) && call(K, N, 5, K) && call(K, N, 4, K - 1),
         "dequantize_gptq refuses K or N not multiples of 32, bits 5, ldw < K");
}

void timings(Context& ctx, std::mt19937& rng) {
  const int64_t K = 8192, N = 28672, G = K / 128;  // Llama-2-70B gate/up, 4-bit g128
  std::uniform_int_distribution<uint32_t> word;
  std::vector<int32_t> qw(K * 4 / 32 * N), qz(G * (N * 4 / 32), 0x77777777), gi(K);
  for (auto& x : qw) x = (int32_t)word(rng);
  for (int64_t k = 0; k < K; ++k) gi[k] = (int32_t)(k / 128);
  auto dqw = upload(ctx, qw), dqz = upload(ctx, qz), dgi = upload(ctx, gi);
  auto dsc = upload(ctx, random_halves(rng, G * N, 0.01f));
  DevBuf<__half> w(N * K);
  DevBuf<int> flags(2);
  CUDA_CHECK(cudaMemsetAsync(flags.get(), 0, 2 * sizeof(int), ctx.stream));
  const double gb = (2.0 * N * K + 0.5 * N * K) / 1e9;
  for (int variant = 0; variant < 2; ++variant) {
    const double ms = time_ms(ctx, variant ? 3 : 10, [&] {
      (variant ? dequantize_gptq_ref : dequantize_gptq)(ctx, dqw.get(), dqz.get(), dsc.get(), dgi.get(), K, N, G, 4, w.get(), K, flags.get());
    });
    timing_line(strf("%s 4-bit K=%lld N=%lld g128 (%s)", variant ? "dequantize_gptq_ref" : "dequantize_gptq", (long long)K, (long long)N,
                     variant ? "thread per weight, bit by bit" : "32×64 tiles through shared memory"),
                ms, strf("%.0f GB/s (fp16 out + packed in)", gb / ms * 1e3));
  }
}

}  // namespace

int main() {
  return run_check("dequant_check", [](Context& ctx) {
    std::mt19937 rng(1304);
    for (int bits : {2, 3, 4, 8})
      for (int64_t gs : {int64_t(64), int64_t(256)}) check_case(ctx, rng, 256, 96, bits, gs, 0, true, false);
    check_case(ctx, rng, 32, 32, 4, 32, 0, false, false);     // the smallest shape
    check_case(ctx, rng, 96, 160, 3, 32, 0, true, false);     // K not a multiple of the 64-column tile
    check_case(ctx, rng, 4096, 64, 4, 128, 64, false, false); // rows of a stacked matrix (ldw > K)
    check_case(ctx, rng, 128, 64, 8, 64, 0, false, true);     // an overflowing scale: non-finite flag
    check_flags_and_refusals(ctx, rng);
    if (timing_enabled()) timings(ctx, rng);
  });
}
