#include "gemm.h"

#include <algorithm>

#include "parallel.h"

namespace gf {

void gemm_nt_ref(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += (double)A[i * lda + k] * B[j * ldb + k];
      C[i * ldc + j] = accumulate ? C[i * ldc + j] + (float)s : (float)s;
    }
}

namespace {

// 16 fp32 lanes: one AVX-512 register, two AVX2 registers; the compiler picks.
typedef float v16 __attribute__((vector_size(64), aligned(4)));
constexpr int VL = 16;
constexpr int MR = 4, NR = 4;  // 4×4 dot products in flight = 16 vector accumulators

inline v16 load(const float* p) { return *(const v16*)p; }
inline float hsum(v16 v) {
  float s = 0;
  for (int l = 0; l < VL; ++l) s += v[l];
  return s;
}

// Full MR×NR tile: C[i, j] (+)= dot(A row i, B row j) over K.
inline void tile_4x4(int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
                     float* C, int64_t ldc, bool accumulate) {
  v16 acc[MR][NR] = {};
  const float* a[MR] = {A, A + lda, A + 2 * lda, A + 3 * lda};
  const float* b[NR] = {B, B + ldb, B + 2 * ldb, B + 3 * ldb};
  int64_t k = 0;
  for (; k + VL <= K; k += VL) {
    v16 bv[NR] = {load(b[0] + k), load(b[1] + k), load(b[2] + k), load(b[3] + k)};
    for (int r = 0; r < MR; ++r) {
      v16 av = load(a[r] + k);
      for (int c = 0; c < NR; ++c) acc[r][c] += av * bv[c];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) {
      float s = hsum(acc[r][c]);
      for (int64_t kk = k; kk < K; ++kk) s += a[r][kk] * b[c][kk];
      float* out = C + r * ldc + c;
      *out = accumulate ? *out + s : s;
    }
}

// Edge tile of m ≤ MR rows and n ≤ NR columns.
inline void tile_edge(int64_t m, int64_t n, int64_t K, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      const float* a = A + r * lda;
      const float* b = B + c * ldb;
      v16 acc = {};
      int64_t k = 0;
      for (; k + VL <= K; k += VL) acc += load(a + k) * load(b + k);
      float s = hsum(acc);
      for (; k < K; ++k) s += a[k] * b[k];
      float* out = C + r * ldc + c;
      *out = accumulate ? *out + s : s;
    }
}

}  // namespace

void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
             int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  // Keep a panel of B rows (≈128 KiB) hot in L2 while all rows of A stream past it.
  const int64_t nb = std::max<int64_t>(NR, (32768 / std::max<int64_t>(K, 1)) / NR * NR);
  for (int64_t j0 = 0; j0 < N; j0 += nb) {
    const int64_t j1 = std::min(N, j0 + nb);
    int64_t i = 0;
    for (; i + MR <= M; i += MR) {
      int64_t j = j0;
      for (; j + NR <= j1; j += NR)
        tile_4x4(K, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc, accumulate);
      if (j < j1)
        tile_edge(MR, j1 - j, K, A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc,
                  accumulate);
    }
    if (i < M)
      tile_edge(M - i, j1 - j0, K, A + i * lda, lda, B + j0 * ldb, ldb, C + i * ldc + j0, ldc,
                accumulate);
  }
}

void gemm_nt_parallel(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  // Row tiles of 64 (a multiple of MR) and column tiles of 256: enough tiles to balance
  // two to sixteen threads, big enough that each tile is ≥ 64·256·K FMAs.
  const int64_t mt = 64, nt = 256;
  const int64_t tm = (M + mt - 1) / mt, tn = (N + nt - 1) / nt;
  parallel_for(tm * tn, [&](int64_t t) {
    const int64_t i0 = (t / tn) * mt, j0 = (t % tn) * nt;
    const int64_t m = std::min(mt, M - i0), n = std::min(nt, N - j0);
    gemm_nt(m, n, K, A + i0 * lda, lda, B + j0 * ldb, ldb, C + i0 * ldc + j0, ldc, accumulate);
  });
}

}  // namespace gf
