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

void xtx_accumulate(int64_t T, int64_t K, const float* X, int64_t ldx, float* G) {
  // Tokens are taken in chunks of TC: Xt = chunkᵀ [K, TC] (rows contiguous over tokens, the
  // GEMM's inner dimension), then the upper-triangle tiles (bi ≤ bj) of G, RB × RB each, are
  // GEMMs G[bi, bj] += Xt[bi] · Xt[bj]ᵀ handed out to the threads. The diagonal tiles' lower
  // halves are computed and later overwritten by symmetrize_upper. RB = 256: the single-
  // threaded GEMM reaches ~190 GFLOP/s at 256 rows, ~140-180 at 128, ~55 at 64 (Zen 5).
  const int64_t TC = 1024, RB = K <= 512 ? 128 : 256;  // small K: enough tiles for the threads
  thread_local std::vector<float> buf;  // the calling thread's; workers get the pointer
  if ((int64_t)buf.size() < K * TC) buf.resize((size_t)(K * TC));
  float* xt = buf.data();
  const int64_t nb = (K + RB - 1) / RB;
  std::vector<std::pair<int64_t, int64_t>> tiles;
  for (int64_t bi = 0; bi < nb; ++bi)
    for (int64_t bj = bi; bj < nb; ++bj) tiles.emplace_back(bi, bj);
  for (int64_t t0 = 0; t0 < T; t0 += TC) {
    const int64_t tc = std::min(TC, T - t0);
    // Transpose in 32 × 32 blocks so that reads and writes both stay within a few lines.
    const int64_t nkb = (K + 31) / 32, ntb = (tc + 31) / 32;
    parallel_for(nkb, [&](int64_t kb) {
      const int64_t k0 = kb * 32, k1 = std::min(K, k0 + 32);
      for (int64_t tb = 0; tb < ntb; ++tb) {
        const int64_t s0 = tb * 32, s1 = std::min(tc, s0 + 32);
        for (int64_t k = k0; k < k1; ++k) {
          float* dst = xt + k * tc;
          for (int64_t t = s0; t < s1; ++t) dst[t] = X[(t0 + t) * ldx + k];
        }
      }
    });
    parallel_for((int64_t)tiles.size(), [&](int64_t idx) {
      const int64_t i0 = tiles[idx].first * RB, j0 = tiles[idx].second * RB;
      const int64_t m = std::min(RB, K - i0), n = std::min(RB, K - j0);
      gemm_nt(m, n, tc, xt + i0 * tc, tc, xt + j0 * tc, tc, G + i0 * K + j0, K, true);
    });
  }
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
  // As xtx_accumulate, with two transposed chunks: dt = (Xf − X)ᵀ [K, TC] and xt = Xᵀ [K, TC];
  // every tile (bi, bj) of C, upper and lower, is C[bi, bj] += dt[bi] · xt[bj]ᵀ.
  const int64_t TC = 1024, RB = K <= 512 ? 128 : 256;
  thread_local std::vector<float> buf;
  if ((int64_t)buf.size() < 2 * K * TC) buf.resize((size_t)(2 * K * TC));
  float* dt = buf.data();
  float* xt = dt + K * TC;
  const int64_t nb = (K + RB - 1) / RB;
  for (int64_t t0 = 0; t0 < T; t0 += TC) {
    const int64_t tc = std::min(TC, T - t0);
    const int64_t nkb = (K + 31) / 32, ntb = (tc + 31) / 32;
    parallel_for(nkb, [&](int64_t kb) {
      const int64_t k0 = kb * 32, k1 = std::min(K, k0 + 32);
      for (int64_t tb = 0; tb < ntb; ++tb) {
        const int64_t s0 = tb * 32, s1 = std::min(tc, s0 + 32);
        for (int64_t k = k0; k < k1; ++k) {
          float* d = dt + k * tc;
          float* x = xt + k * tc;
          for (int64_t t = s0; t < s1; ++t) {
            const float v = X[(t0 + t) * ldx + k];
            d[t] = Xf[(t0 + t) * ldx + k] - v;
            x[t] = v;
          }
        }
      }
    });
    parallel_for(nb * nb, [&](int64_t idx) {
      const int64_t i0 = (idx / nb) * RB, j0 = (idx % nb) * RB;
      const int64_t m = std::min(RB, K - i0), n = std::min(RB, K - j0);
      gemm_nt(m, n, tc, dt + i0 * tc, tc, xt + j0 * tc, tc, C + i0 * K + j0, K, true);
    });
  }
}

void symmetrize_upper(int64_t K, float* G, float scale) {
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = i; j < K; ++j) G[i * K + j] *= scale;
    for (int64_t j = 0; j < i; ++j) G[i * K + j] = G[j * K + i];
  }
}

double add_batch(int64_t n, int64_t T, int64_t K, const std::function<const float*(int64_t w)>& input, float* H) {
  using clock = std::chrono::steady_clock;
  double seconds = 0;
  std::fill(H, H + K * K, 0.0f);
  for (int64_t w = 0; w < n; ++w) {
    const float* X = input(w);
    const auto t0 = clock::now();
    xtx_accumulate(T, K, X, K, H);
    seconds += std::chrono::duration<double>(clock::now() - t0).count();
  }
  const auto t0 = clock::now();
  symmetrize_upper(K, H, 2.0f / (float)n);
  return seconds + std::chrono::duration<double>(clock::now() - t0).count();
}

double add_batch_cross(int64_t n, int64_t T, int64_t K, const std::function<const float*(int64_t w)>& input,
                       const std::function<const float*(int64_t w)>& input_fp, float* H, float* C) {
  using clock = std::chrono::steady_clock;
  double seconds = 0;
  std::fill(H, H + K * K, 0.0f);
  std::fill(C, C + K * K, 0.0f);
  for (int64_t w = 0; w < n; ++w) {
    const float* X = input(w);
    const float* Xf = input_fp(w);
    const auto t0 = clock::now();
    xtx_accumulate(T, K, X, K, H);
    cross_accumulate(T, K, Xf, X, K, C);
    seconds += std::chrono::duration<double>(clock::now() - t0).count();
  }
  const auto t0 = clock::now();
  symmetrize_upper(K, H, 2.0f / (float)n);
  const float scale = 2.0f / (float)n;
  for (int64_t i = 0; i < K * K; ++i) C[i] *= scale;
  return seconds + std::chrono::duration<double>(clock::now() - t0).count();
}

}  // namespace gf
