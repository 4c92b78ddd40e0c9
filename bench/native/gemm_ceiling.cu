// Benchmark: the fp16 GEMM rate (cuBLAS through linear_f16: fp16 in/out, fp32 accumulation) of
// each Llama-2-70B layer GEMM and of lm_head over a chunk of 4 windows of 4096 tokens, then an
// 8192³ GEMM: the ceiling the eval's TFLOP/s is compared with (bench/eval-70b.sh reads the
// last line). Built by native/build-cuda.sh as build/cuda/gemm_ceiling.
//   build/cuda/gemm_ceiling
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "../../native/kernels/cuda/checks/check_util.cuh"
#include "../../native/kernels/cuda/llama.h"

using namespace gfc;
using namespace gfc::check;

int main() try {
  Context ctx;
  const int64_t T = 4 * 4096, H = 8192, F = 28672, QD = 64 * 128, KVD = 8 * 128;
  struct G { const char* name; int64_t N, K; };
  const G gemms[] = {{"qkv", QD + 2 * KVD, H}, {"o", H, QD}, {"gate_up", 2 * F, H}, {"down", H, F}, {"lm_head", 32000, H}};
  double best = 0;
  for (const G& g : gemms) {
    DevBuf<__half> A(T * g.K), W(g.N * g.K), C(T * g.N);
    fill_device_halves(ctx, A.get(), T * g.K, 1.0f, 1);
    fill_device_halves(ctx, W.get(), g.N * g.K, 0.01f, 2);
    const double ms = time_ms(ctx, 10, [&] { linear_f16(ctx, T, g.N, g.K, A.get(), g.K, W.get(), g.K, C.get(), g.N); });
    const double tf = 2.0 * T * g.N * g.K / ms / 1e9;
    best = std::max(best, tf);
    std::printf("GEMM %-8s M %lld N %6lld K %6lld: %8.3f ms  %6.1f TFLOP/s\n", g.name, (long long)T, (long long)g.N, (long long)g.K, ms, tf);
  }
  const int64_t n = 8192;
  DevBuf<__half> A(n * n), B(n * n), C(n * n);
  fill_device_halves(ctx, A.get(), n * n, 1.0f, 3);
  fill_device_halves(ctx, B.get(), n * n, 1.0f, 4);
  const double ms = time_ms(ctx, 10, [&] { linear_f16(ctx, n, n, n, A.get(), n, B.get(), n, C.get(), n); });
  std::printf("GEMM 8192³ (fp16 in/out, fp32 accumulation): %.3f ms  %.1f TFLOP/s\n", ms, 2.0 * n * n * n / ms / 1e9);
  best = std::max(best, 2.0 * n * n * n / ms / 1e9);
  std::printf("GEMM ceiling (best measured): %.1f TFLOP/s\n", best);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gemm_ceiling: %s\n", e.what());
  return 2;
}
