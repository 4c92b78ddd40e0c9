// Times the pieces of one Llama decoder layer on one window with the CPU kernels.
//   g++ -O3 -march=native -std=c++17 -pthread -Inative bench/native/layer_bench.cc \
//       native/kernels/cpu/{gemm,llama,peak}.cc -o /tmp/layer_bench && /tmp/layer_bench 384 1024 6 2 4096
// Args: hidden ffn heads kv_heads seqlen [reps]. Each piece runs reps times (default 5, after
// one warm-up); best and median are printed: the machine is shared, the best is the kernel's
// speed and the median what a run sees.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/llama.h"
#include "kernels/cpu/peak.h"

using namespace gf;
static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static int reps = 5;
static void timed(const char* what, double flop, const std::function<void()>& fn) {
  std::vector<double> t;
  fn();  // warm-up: page faults, thread-local buffers
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    fn();
    t.push_back(now() - t0);
  }
  std::sort(t.begin(), t.end());
  const double best = t.front(), med = t[t.size() / 2];
  printf("%-32s best %.4f s %6.1f GFLOP/s | median %.4f s %6.1f GFLOP/s\n", what, best,
         flop / best / 1e9, med, flop / med / 1e9);
}

int main(int argc, char** argv) {
  const int64_t H = argc > 1 ? atoll(argv[1]) : 384, F = argc > 2 ? atoll(argv[2]) : 1024;
  const int64_t nh = argc > 3 ? atoll(argv[3]) : 6, nkv = argc > 4 ? atoll(argv[4]) : 2;
  const int64_t S = argc > 5 ? atoll(argv[5]) : 4096, D = H / nh;
  reps = argc > 6 ? std::max(1, atoi(argv[6])) : 5;
  LlamaDims d{H, F, nh, nkv, D, 1e-5f, 10000.f, true};
  std::mt19937 g(0);
  std::normal_distribution<float> nd(0.f, 0.05f);
  auto rnd = [&](int64_t n) { std::vector<float> v(n); for (auto& x : v) x = nd(g); return v; };
  auto x = rnd(S * H), q = rnd(S * nh * D), k = rnd(S * nkv * D), v = rnd(S * nkv * D);
  std::vector<float> out(S * nh * D), big(S * F), small(S * H);
  auto W = rnd(F * H);
  double peak = 0;  // best of 5 short runs, like the timings below
  for (int i = 0; i < 5; ++i) peak = std::max(peak, measure_fp32_peak(0.2));
  printf("peak fp32: %.1f GFLOP/s\n", peak / 1e9);
  char name[96];
  snprintf(name, sizeof name, "gemm [%ld x %ld x %ld]", S, F, H);
  timed(name, 2.0 * S * F * H, [&] {
    gemm_nt_parallel(S, F, H, x.data(), H, W.data(), H, big.data(), F, false);
  });
  snprintf(name, sizeof name, "gemm [%ld x %ld x %ld]", S, H, F);
  timed(name, 2.0 * S * F * H, [&] {
    gemm_nt_parallel(S, H, F, big.data(), F, W.data(), H /*reuse as [H,F]*/, small.data(), H,
                     false);
  });
  const double af = 4.0 * nh * D * (double)S * (S + 1) / 2;
  snprintf(name, sizeof name, "attention S=%ld (causal count)", S);
  timed(name, af, [&] { causal_attention(d, S, q.data(), k.data(), v.data(), out.data()); });
  auto ni = rnd(H), wq = rnd(nh * D * H), wk = rnd(nkv * D * H), wv = rnd(nkv * D * H),
       wo = rnd(H * nh * D), wg = rnd(F * H), wu = rnd(F * H), wd = rnd(H * F);
  LayerWeightsF32 lw{ni.data(), wq.data(), wk.data(), wv.data(), wo.data(), ni.data(), wg.data(), wu.data(), wd.data()};
  const double lf = 2.0 * S * (2 * H * nh * D + 2 * H * nkv * D + 3 * H * F) + af;
  auto x0 = x;
  timed("decoder layer", lf, [&] {
    x = x0;  // the layer runs in place; start every rep from the same input
    decoder_layer_window(d, lw, S, x.data());
  });
  printf("(peak %.1f GFLOP/s: the best numbers above are that share of it)\n", peak / 1e9);
}
