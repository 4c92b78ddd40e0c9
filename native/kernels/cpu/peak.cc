#include "peak.h"

#include <atomic>
#include <chrono>

#include "parallel.h"

namespace gf {

namespace {
typedef float v16 __attribute__((vector_size(64)));

// 12 independent accumulators hide the FMA latency (4 cycles × 2-3 pipes).
__attribute__((noinline)) float fma_chains(int64_t iters) {
  v16 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = v16{} + 1.0f + i * 1e-3f;
  const v16 a = v16{} + 0.999999f, b = v16{} + 1e-7f;
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * a + b;
  float s = 0;
  for (int i = 0; i < 12; ++i) s += acc[i][0];
  return s;
}
}  // namespace

double measure_fp32_peak(double seconds) {
  const int64_t iters = 1 << 20;  // 12 · 16 · 2 · 2^20 ≈ 0.4 GFLOP per call
  const double flop_per_call = 12.0 * 16 * 2 * (double)iters;
  std::atomic<int64_t> calls{0};
  std::atomic<float> sink{0};
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::duration<double>(seconds);
  parallel_for(num_threads(), [&](int64_t) {
    float s = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      s += fma_chains(iters);
      calls.fetch_add(1);
    }
    sink.store(s);
  });
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return (double)calls.load() * flop_per_call / el;
}

}  // namespace gf
