#include "hessian.h"

#include <algorithm>
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
  const int64_t TC = 512;  // tokens per chunk: Xt chunk is K × 512 floats
  const int64_t KB = 128;  // tile edge of G
  const int64_t nb = (K + KB - 1) / KB;
  std::vector<std::pair<int64_t, int64_t>> tiles;  // upper triangle (bi ≤ bj)
  for (int64_t bi = 0; bi < nb; ++bi)
    for (int64_t bj = bi; bj < nb; ++bj) tiles.emplace_back(bi, bj);
  std::vector<float> xt((size_t)(K * TC));
  for (int64_t t0 = 0; t0 < T; t0 += TC) {
    const int64_t tc = std::min(TC, T - t0);
    // Xt[k, t] = X[t0 + t, k]: rows of Xt are contiguous over tokens, the GEMM's inner dim.
    parallel_for((K + 63) / 64, [&](int64_t kb) {
      const int64_t k0 = kb * 64, k1 = std::min(K, k0 + 64);
      for (int64_t t = 0; t < tc; ++t) {
        const float* row = X + (t0 + t) * ldx;
        for (int64_t k = k0; k < k1; ++k) xt[k * tc + t] = row[k];
      }
    });
    parallel_for((int64_t)tiles.size(), [&](int64_t idx) {
      const int64_t i0 = tiles[idx].first * KB, j0 = tiles[idx].second * KB;
      const int64_t m = std::min(KB, K - i0), n = std::min(KB, K - j0);
      gemm_nt(m, n, tc, xt.data() + i0 * tc, tc, xt.data() + j0 * tc, tc, G + i0 * K + j0, K, true);
    });
  }
}

void symmetrize_upper(int64_t K, float* G, float scale) {
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = i; j < K; ++j) G[i * K + j] *= scale;
    for (int64_t j = 0; j < i; ++j) G[i * K + j] = G[j * K + i];
  }
}

}  // namespace gf
