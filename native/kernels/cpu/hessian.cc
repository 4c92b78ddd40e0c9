#include "hessian.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "gemm.h"
#include "parallel.h"

namespace gf {

void xtx_accumulate_ref(int64_t T, int64_t K, const float* X, int64_t ldx, float* G) {
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) s += (double)X[t * ldx + i] * X[t * ldx + j];
      G[i * K + j] += (float)s;
    }
}

namespace {

// Tokens are taken in chunks of kTC: xt = chunkᵀ [K, tc] (rows contiguous over tokens, the
// GEMM's inner dimension), and with QEP's fp16 path dt = (Xf − X)ᵀ of the same chunk. Tiles of
// RB × RB: RB = 256, as the single-threaded GEMM reaches ~190 GFLOP/s at 256 rows, ~140-180 at
// 128, ~55 at 64 (Zen 5); small K: 128, for enough tiles for the threads.
constexpr int64_t kTC = 1024;
int64_t tile_rows(int64_t K) { return K <= 512 ? 128 : 256; }

// Rows t0 .. t0 + tc of X [., ldx] transposed into xt [K, tc] and, when Xf, of Xf − X into dt,
// in 32 × 32 blocks so that reads and writes both stay within a few lines.
void transpose_chunk(int64_t K, int64_t t0, int64_t tc, const float* X, const float* Xf, int64_t ldx, float* xt, float* dt) {
  const int64_t nkb = (K + 31) / 32, ntb = (tc + 31) / 32;
  parallel_for(nkb, [&](int64_t kb) {
    const int64_t k0 = kb * 32, k1 = std::min(K, k0 + 32);
    for (int64_t tb = 0; tb < ntb; ++tb) {
      const int64_t s0 = tb * 32, s1 = std::min(tc, s0 + 32);
      for (int64_t k = k0; k < k1; ++k) {
        float* x = xt + k * tc;
        if (!Xf) {
          for (int64_t t = s0; t < s1; ++t) x[t] = X[(t0 + t) * ldx + k];
          continue;
        }
        float* d = dt + k * tc;
        for (int64_t t = s0; t < s1; ++t) {
          const float v = X[(t0 + t) * ldx + k];
          d[t] = Xf[(t0 + t) * ldx + k] - v;
          x[t] = v;
        }
      }
    }
  });
}

// G [K, K] += Xᵀ X (upper-triangle tiles bi ≤ bj only; the diagonal tiles' lower halves are
// computed and later overwritten by symmetrize_upper) when G, and C [K, K] += (Xf − X)ᵀ X
// (every tile: C is not symmetric) when C (then Xf too), over T tokens; each chunk of X is
// transposed once for both. Each tile is one GEMM per chunk, chunks in order, whether G and C
// are summed together or alone: the same bits either way.
void accumulate(int64_t T, int64_t K, const float* X, const float* Xf, int64_t ldx, float* G, float* C) {
  const int64_t RB = tile_rows(K), nb = (K + RB - 1) / RB;
  thread_local std::vector<float> buf;  // the calling thread's; workers get the pointer
  const int64_t need = (C ? 2 : 1) * K * kTC;
  if ((int64_t)buf.size() < need) buf.resize((size_t)need);
  float* xt = buf.data();
  float* dt = C ? xt + K * kTC : nullptr;
  std::vector<std::pair<int64_t, int64_t>> upper;
  for (int64_t bi = 0; bi < nb; ++bi)
    for (int64_t bj = bi; bj < nb; ++bj) upper.emplace_back(bi, bj);
  for (int64_t t0 = 0; t0 < T; t0 += kTC) {
    const int64_t tc = std::min(kTC, T - t0);
    transpose_chunk(K, t0, tc, X, C ? Xf : nullptr, ldx, xt, dt);
    if (G)
      parallel_for((int64_t)upper.size(), [&](int64_t idx) {
        const int64_t i0 = upper[idx].first * RB, j0 = upper[idx].second * RB;
        const int64_t m = std::min(RB, K - i0), n = std::min(RB, K - j0);
        gemm_nt(m, n, tc, xt + i0 * tc, tc, xt + j0 * tc, tc, G + i0 * K + j0, K, true);
      });
    if (C)
      parallel_for(nb * nb, [&](int64_t idx) {
        const int64_t i0 = (idx / nb) * RB, j0 = (idx % nb) * RB;
        const int64_t m = std::min(RB, K - i0), n = std::min(RB, K - j0);
        gemm_nt(m, n, tc, dt + i0 * tc, tc, xt + j0 * tc, tc, C + i0 * K + j0, K, true);
      });
  }
}

}  // namespace

void xtx_accumulate(int64_t T, int64_t K, const float* X, int64_t ldx, float* G) {
  accumulate(T, K, X, nullptr, ldx, G, nullptr);
}

void cross_accumulate_ref(int64_t T, int64_t K, const float* Xf, const float* X, int64_t ldx, float* C) {
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) s += ((double)Xf[t * ldx + i] - X[t * ldx + i]) * X[t * ldx + j];
      C[i * K + j] += (float)s;
    }
}

void cross_accumulate(int64_t T, int64_t K, const float* Xf, const float* X, int64_t ldx, float* C) {
  accumulate(T, K, X, Xf, ldx, nullptr, C);
}

void symmetrize_upper(int64_t K, float* G, float scale) {
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = i; j < K; ++j) G[i * K + j] *= scale;
    for (int64_t j = 0; j < i; ++j) G[i * K + j] = G[j * K + i];
  }
}

double add_batch(int64_t n, int64_t T, int64_t K, const std::function<const float*(int64_t w)>& input, float* H) {
  return add_batch_cross(n, T, K, input, nullptr, H, nullptr);
}

double add_batch_cross(int64_t n, int64_t T, int64_t K, const std::function<const float*(int64_t w)>& input,
                       const std::function<const float*(int64_t w)>& input_fp, float* H, float* C) {
  using clock = std::chrono::steady_clock;
  double seconds = 0;
  std::fill(H, H + K * K, 0.0f);
  if (C) std::fill(C, C + K * K, 0.0f);
  for (int64_t w = 0; w < n; ++w) {
    const float* X = input(w);
    const float* Xf = C ? input_fp(w) : nullptr;
    const auto t0 = clock::now();
    accumulate(T, K, X, Xf, K, H, C);  // H (and C) from one transpose of each chunk of X
    seconds += std::chrono::duration<double>(clock::now() - t0).count();
  }
  const auto t0 = clock::now();
  const float scale = 2.0f / (float)n;
  symmetrize_upper(K, H, scale);
  if (C)
    for (int64_t i = 0; i < K * K; ++i) C[i] *= scale;
  return seconds + std::chrono::duration<double>(clock::now() - t0).count();
}

}  // namespace gf
