// fp32 GEMM C (+)= A·Bᵀ, GotoBLAS-style: B packed into panels of NR columns ([k][NR]
// contiguous, zero-padded), A read in place (one broadcast per row and k from MR row
// pointers: no A packing at all), and an MR×NR outer-product micro-kernel whose
// accumulators stay in registers for a whole K block.
//
// Blocking for Zen 5 (L1d 48 KiB, L2 1 MiB, 2 × 512-bit FMA pipes, 4-cycle FMA latency).
// Numbers: GFLOP/s, best of ≥ 10 runs; one thread (peak ≈ 220) on 4096×1024×384 /
// 4096×384×1024 / 32×32000×384, then two threads (peak ≈ 440) on the same shapes.
//  * MR×NR = 8×32 on AVX-512: 16 zmm accumulators (2 pipes × 4 cycles = 8 FMAs in flight,
//    twice over); per k 2 B loads + 8 broadcasts feed 16 FMAs. 6×32: 206/200/181,
//    385/370/348; 8×32: 210/199/179, 388/359/349; 12×32: 207/184/176, 373/350/333;
//    8×48: 205/201/127, 388/376/246. AVX2: 6×16 (12 of 16 ymm); SSE: 6×8.
//  * KC = 384: the B micro-panel KC×NR×4 B = 48 KiB is about L1 (L2 feeds the rest at
//    ~20 B/cycle, well under its 64), and fewer K blocks mean fewer C reloads. K is cut into
//    equal blocks ≤ KC. KC 256/384/512: 191/210/210 (first shape), 149/179/181 (lm_head).
//  * MC = 256 rows: the A block MC×KC×4 B = 384 KiB stays in L2 across the B panels
//    (MC 128/256/512: 207/206/203 on the first shape).
//  * NC = 512: the packed B block NC×KC×4 B = 768 KiB, L2/L3; A is not packed, so NC only
//    sets the buffer size (256/512/1024: 208/210/210).
// Small M (lm_head blocks of 32 rows × 32000 columns): packing B would cost N·K loads and
// stores for only M·N·K FMAs, so the roles swap: Cᵀ = B·Aᵀ, A (tiny) is packed, B's rows are
// broadcast in place, and the micro-tile is stored transposed.
#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

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

// ---- one SIMD register: AVX-512 (16 lanes), AVX2+FMA (8), else SSE via vector extensions (4)
#if defined(__AVX512F__)
typedef __m512 vf;
constexpr int VL = 16, MR = 8;
#define GF_V(op) _mm512_##op
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vf;
constexpr int VL = 8, MR = 6;  // 16 ymm: 12 accumulators + 2 B + 1 broadcast
#define GF_V(op) _mm256_##op
#endif
#ifdef GF_V
inline vf vload(const float* p) { return GF_V(loadu_ps)(p); }
inline void vstore(float* p, vf v) { GF_V(storeu_ps)(p, v); }
inline vf vset1(float x) { return GF_V(set1_ps)(x); }
inline vf vfma(vf a, vf b, vf c) { return GF_V(fmadd_ps)(a, b, c); }
inline vf vadd(vf a, vf b) { return GF_V(add_ps)(a, b); }
inline vf vzero() { return GF_V(setzero_ps)(); }
#undef GF_V
#else
typedef float vf __attribute__((vector_size(16)));
constexpr int VL = 4, MR = 6;
inline vf vload(const float* p) { vf v; std::memcpy(&v, p, sizeof v); return v; }
inline void vstore(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
inline vf vset1(float x) { return vf{} + x; }
inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
inline vf vadd(vf a, vf b) { return a + b; }
inline vf vzero() { return vf{}; }
#endif

constexpr int NV = 2, NR = NV * VL;  // panel width: two registers
constexpr int64_t KC = 384, MC = 256, NC = 512;
constexpr int64_t kNone = INT64_MAX / 4;
// K block length: K cut into equal blocks of at most KC (1024 → 3 × 342, not 384+384+256).
inline int64_t kstep(int64_t K) {
  const int64_t nb = (K + KC - 1) / KC;
  return (K + nb - 1) / nb;
}

// Micro-kernel: rows r < R, columns c < n ≤ V·VL of the tile at C:
//   C[r, c] (+)= Σ_k A[r·lda + k] · bp[k·NR + c]      (TR: stored at C[c·ldc + r])
template <int R, int V, bool TR>
void micro(int64_t kc, const float* a, int64_t lda, const float* bp, float* C, int64_t ldc,
           bool load_c, int n) {
  vf acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = vzero();
  const float* ar[R];
  for (int r = 0; r < R; ++r) ar[r] = a + r * lda;
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    vf b[V];
    for (int v = 0; v < V; ++v) b[v] = vload(bp + k * NR + v * VL);
    for (int r = 0; r < R; ++r) {
      const vf x = vset1(ar[r][k]);
      for (int v = 0; v < V; ++v) acc[r][v] = vfma(x, b[v], acc[r][v]);
    }
  }
  if (!TR && n == V * VL) {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < V; ++v) {
        float* p = C + r * ldc + v * VL;
        vstore(p, load_c ? vadd(acc[r][v], vload(p)) : acc[r][v]);
      }
    return;
  }
  alignas(64) float t[R][V * VL];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) vstore(&t[r][v * VL], acc[r][v]);
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < n; ++c) {
      float* p = TR ? C + c * ldc + r : C + r * ldc + c;
      *p = load_c ? *p + t[r][c] : t[r][c];
    }
}

typedef void (*MicroFn)(int64_t, const float*, int64_t, const float*, float*, int64_t, bool, int);

template <bool TR, int... R>
struct Table {
  static constexpr MicroFn fn[2][sizeof...(R)] = {{micro<R, 1, TR>...}, {micro<R, NV, TR>...}};
};
#if defined(__AVX512F__)
template <bool TR>
using Micro = Table<TR, 1, 2, 3, 4, 5, 6, 7, 8>;
#else
template <bool TR>
using Micro = Table<TR, 1, 2, 3, 4, 5, 6>;
#endif

// C[0:mc, 0:nc] (+)= A[0:mc, 0:kc] · (packed panels at Bp, panel stride bps).
// ndiag: row i needs columns j ≤ i + ndiag only (tiles wholly beyond are skipped, left
// unwritten). kdiag: row i needs k ≤ i + kdiag only; k0 is this K block's start (A must be
// zero for k in (i + kdiag, end of its MR-row block]).
template <bool TR>
void macro(int64_t mc, int64_t nc, int64_t kc, const float* A, int64_t lda, const float* Bp,
           int64_t bps, float* C, int64_t ldc, bool load_c, int64_t ndiag = kNone,
           int64_t kdiag = kNone, int64_t k0 = 0) {
  for (int64_t j = 0; j < nc; j += NR) {
    const int n = (int)std::min<int64_t>(NR, nc - j);
    const float* bp = Bp + (j / NR) * bps;
    // ndiag: start at the first row block with a row i ≥ j - ndiag (rows above need none)
    int64_t i = ndiag == kNone ? 0 : std::max<int64_t>(0, j - ndiag) / MR * MR;
    for (; i < mc; i += MR) {
      const int r = (int)std::min<int64_t>(MR, mc - i);
      const int64_t k = std::min(kc, i + r + kdiag - k0);  // K limit of this row block
      if (k <= 0) continue;
      float* c = TR ? C + j * ldc + i : C + i * ldc + j;
      Micro<TR>::fn[n > VL][r - 1](k, A + i * lda, lda, bp, c, ldc, load_c, n);
    }
  }
}

#if defined(__AVX512F__)
// dst[k·ldd + r] = src[r·ld + k] for a 16×16 block (rows of src → columns of dst).
// (The masked forms with an all-ones mask avoid GCC 12's bogus -Wuninitialized on the
// plain intrinsics; they compile to the same unmasked instructions.)
inline __m512 unlo(__m512 a, __m512 b) { return _mm512_mask_unpacklo_ps(a, 0xffff, a, b); }
inline __m512 unhi(__m512 a, __m512 b) { return _mm512_mask_unpackhi_ps(a, 0xffff, a, b); }
template <int I>
inline __m512 shuf(__m512 a, __m512 b) { return _mm512_mask_shuffle_ps(a, 0xffff, a, b, I); }
template <int I>
inline __m512 lanes(__m512 a, __m512 b) { return _mm512_mask_shuffle_f32x4(a, 0xffff, a, b, I); }
inline void transpose16(const float* src, int64_t ld, float* dst, int64_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
  for (int i = 0; i < 16; i += 2) {
    t[i] = unlo(r[i], r[i + 1]);
    t[i + 1] = unhi(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = shuf<0x44>(t[i], t[i + 2]);
    r[i + 1] = shuf<0xee>(t[i], t[i + 2]);
    r[i + 2] = shuf<0x44>(t[i + 1], t[i + 3]);
    r[i + 3] = shuf<0xee>(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = lanes<0x88>(r[h + i], r[h + i + 4]);
      t[h + i + 4] = lanes<0xdd>(r[h + i], r[h + i + 4]);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = lanes<0x88>(t[i], t[i + 8]);
    r[i + 8] = lanes<0xdd>(t[i], t[i + 8]);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}
#endif

}  // namespace

int64_t gemm_panel_width() { return NR; }

void gemm_pack_b(int64_t N, int64_t K, const float* B, int64_t ldb, float* Bp, int64_t bps) {
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    const int64_t n = std::min<int64_t>(NR, N - j0);
    const float* b = B + j0 * ldb;
    float* p = Bp + (j0 / NR) * bps;
    int64_t k = 0;
#if defined(__AVX512F__)
    if (n == NR)
      for (; k + 16 <= K; k += 16)
        for (int h = 0; h < NR; h += 16) transpose16(b + h * ldb + k, ldb, p + k * NR + h, NR);
#endif
    for (; k < K; ++k) {
      for (int64_t c = 0; c < n; ++c) p[k * NR + c] = b[c * ldb + k];
      for (int64_t c = n; c < NR; ++c) p[k * NR + c] = 0.0f;
    }
  }
}

void gemm_pack_bt(int64_t N, int64_t K, const float* Bt, int64_t ldbt, float* Bp, int64_t bps) {
  for (int64_t j0 = 0; j0 < N; j0 += NR) {
    const int64_t n = std::min<int64_t>(NR, N - j0);
    float* p = Bp + (j0 / NR) * bps;
    for (int64_t k = 0; k < K; ++k) {
      std::memcpy(p + k * NR, Bt + k * ldbt + j0, n * sizeof(float));
      std::fill(p + k * NR + n, p + (k + 1) * NR, 0.0f);
    }
  }
}

void gemm_nt_packed(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                    const float* Bp, int64_t bps, float* C, int64_t ldc, bool accumulate,
                    int64_t ndiag, int64_t kdiag) {
  if (ndiag < 0) ndiag = kNone;
  if (kdiag < 0) kdiag = kNone;
  const int64_t ks = kstep(K);
  for (int64_t pc = 0; pc < K; pc += ks) {
    const int64_t kc = std::min(ks, K - pc);
    for (int64_t ic = 0; ic < M; ic += MC) {
      const int64_t mc = std::min(MC, M - ic);
      const int64_t nd = ndiag == kNone ? kNone : ndiag + ic;
      const int64_t nc = std::min(N, ndiag == kNone ? N : mc + nd);
      macro<false>(mc, nc, kc, A + ic * lda + pc, lda, Bp + pc * NR, bps, C + ic * ldc, ldc,
                   accumulate || pc > 0, nd, kdiag == kNone ? kNone : kdiag + ic, pc);
    }
  }
}

namespace {

// Growable buffer of the calling thread, kept between calls: fresh pages cost a page fault
// each (several µs in this VM), so nothing big is allocated per call. Worker threads are
// spawned per parallel_for, so multi-threaded callers hand each worker a slice of theirs.
float* thread_buffer(int64_t n) {
  thread_local std::unique_ptr<float[]> buf;
  thread_local int64_t cap = 0;
  if (n > cap) {
    cap = std::max(n, cap + cap / 2);
    buf.reset(new float[cap]);
  }
  return buf.get();
}

// Runs fn(task, worker) for task in [0, n) on up to num_threads() workers, tasks handed out
// in order; worker ∈ [0, workers) is unique among the concurrently running calls.
template <class F>
void run_tasks(int64_t n, int64_t workers, F fn) {
  std::atomic<int64_t> next{0};
  parallel_for(workers, [&](int64_t w) {
    for (int64_t t; (t = next.fetch_add(1)) < n;) fn(t, w);
  });
}

// Packing B costs ~N·K, packing A ~M·K (both per K block); pack the smaller operand, but the
// transposed stores of the swapped path only pay off when M is well below N.
inline bool use_swapped(int64_t M, int64_t N) { return M <= 2 * NR && 2 * M <= N; }

// Floats of packing buffer gemm_nt_buf needs (also for any K' ≤ K: kstep(K') ≤ min(K, KC)).
inline int64_t buffer_size(int64_t M, int64_t N, int64_t K, bool swapped) {
  const int64_t P = swapped ? M : std::min(NC, N);
  return (P + NR - 1) / NR * NR * std::min(K, KC);
}

// M or N ≤ 4 (matrix-vector-like): the outer-product kernel would waste most lanes, so dot
// products along K, 4 columns at a time (1×32000×384: 17 → 31, 4096×4×384: 51 → 79 GFLOP/s).
inline float hsum(vf v) {
  alignas(64) float t[VL];
  vstore(t, v);
  float s = 0;
  for (int l = 0; l < VL; ++l) s += t[l];
  return s;
}
void gemm_dots(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
               int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  for (int64_t j0 = 0; j0 < N; j0 += 4) {
    const int n = (int)std::min<int64_t>(4, N - j0);
    for (int64_t i = 0; i < M; ++i) {
      const float* a = A + i * lda;
      const float* b[4];
      for (int c = 0; c < 4; ++c) b[c] = B + (j0 + std::min(c, n - 1)) * ldb;
      vf acc[4] = {vzero(), vzero(), vzero(), vzero()};
      int64_t k = 0;
      for (; k + VL <= K; k += VL) {
        const vf x = vload(a + k);
        for (int c = 0; c < 4; ++c) acc[c] = vfma(x, vload(b[c] + k), acc[c]);
      }
      for (int c = 0; c < n; ++c) {
        float s = hsum(acc[c]);
        for (int64_t kk = k; kk < K; ++kk) s += a[kk] * b[c][kk];
        float* out = C + i * ldc + j0 + c;
        *out = accumulate ? *out + s : s;
      }
    }
  }
}

void gemm_nt_buf(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate, bool swapped,
                 float* buf) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
    return;
  }
  if (M <= 4 || N <= 4) return gemm_dots(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
  const int64_t ks = kstep(K);
  if (swapped) {  // Cᵀ[N, M] = B·Aᵀ: A packed (M ≤ 2 panels), B's rows broadcast in place
    for (int64_t pc = 0; pc < K; pc += ks) {
      const int64_t kc = std::min(ks, K - pc);
      gemm_pack_b(M, kc, A + pc, lda, buf, kc * NR);
      for (int64_t ic = 0; ic < N; ic += MC)
        macro<true>(std::min(MC, N - ic), M, kc, B + ic * ldb + pc, ldb, buf, kc * NR,
                    C + ic, ldc, accumulate || pc > 0);
    }
    return;
  }
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    for (int64_t pc = 0; pc < K; pc += ks) {
      const int64_t kc = std::min(ks, K - pc);
      gemm_pack_b(nc, kc, B + jc * ldb + pc, ldb, buf, kc * NR);
      for (int64_t ic = 0; ic < M; ic += MC)
        macro<false>(std::min(MC, M - ic), nc, kc, A + ic * lda + pc, lda, buf, kc * NR,
                     C + ic * ldc + jc, ldc, accumulate || pc > 0);
    }
  }
}

}  // namespace

void gemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
             int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  const bool sw = use_swapped(M, N);
  gemm_nt_buf(M, N, K, A, lda, B, ldb, C, ldc, accumulate, sw,
              thread_buffer(buffer_size(M, N, K, sw)));
}

void gemm_nt_parallel(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  const int64_t T = num_threads();
  // Below ~1 MFLOP a thread start (~20-50 us) costs more than it saves.
  if (T == 1 || (double)M * N * K < 5e5 || M <= 0 || N <= 0 || K <= 0)
    return gemm_nt(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
  // Tasks are tp × tr blocks of the output: tp shares of the packed operand's P rows (whole
  // panels) times tr shares of the broadcast operand's R rows. Each task packs its P share,
  // so the packed operand is packed tr times (~2 memory passes per element), and streams
  // its R rows once per P share, so the broadcast operand is read tp times: cut R while
  // R > 2P, else P. 4 tasks per thread keep both cores busy when another process takes a
  // share of one. 4096×384×1024: 8 P cuts (A, 16 MiB, read 8×) 306 GFLOP/s, 8 R cuts 346.
  const bool sw = use_swapped(M, N);
  const int64_t P = sw ? M : N, R = sw ? N : M;  // packed rows, broadcast rows
  const int64_t np = (P + NR - 1) / NR, nr = std::max<int64_t>(1, R / (4 * MR));
  const int64_t target = 4 * T;
  int64_t tp, tr;
  if (R > 2 * P) {
    tr = std::min(nr, target);
    tp = std::min(np, (target + tr - 1) / tr);
  } else {
    tp = std::min(np, target);
    tr = std::min(nr, (target + tp - 1) / tp);
  }
  // Small outputs with a long K (P·V-like 64×64×4096, 256×256×4096) cut K instead: no
  // operand is packed or read twice. 64×64×4096: 4 output tiles 168, K cut 175-213 GFLOP/s;
  // 256×256×4096: 285 vs 365.
  if (tp * tr >= T && !(M <= 256 && N <= 256 && K >= 2048)) {
    const int64_t W = std::min(T, tp * tr);
    const int64_t pmax = (np + tp - 1) / tp * NR;  // largest P share
    const int64_t per = sw ? buffer_size(pmax, R, K, true) : buffer_size(R, pmax, K, false);
    float* buf = thread_buffer(W * per);
    run_tasks(tp * tr, W, [&](int64_t t, int64_t w) {
      const int64_t ip = t % tp, ir = t / tp;
      const int64_t p0 = np * ip / tp * NR, p1 = std::min(P, np * (ip + 1) / tp * NR);
      const int64_t r0 = R * ir / tr / MR * MR, r1 = ir + 1 == tr ? R : R * (ir + 1) / tr / MR * MR;
      const int64_t i0 = sw ? p0 : r0, i1 = sw ? p1 : r1, j0 = sw ? r0 : p0, j1 = sw ? r1 : p1;
      gemm_nt_buf(i1 - i0, j1 - j0, K, A + i0 * lda, lda, B + j0 * ldb, ldb, C + i0 * ldc + j0,
                  ldc, accumulate, sw, buf + w * per);
    });
    return;
  }
  // K cut: each worker sums a K range, the first straight into C, the others into their own
  // M×N buffer; then the partial sums are added.
  const int64_t W = std::min(T, (K + KC - 1) / KC), bsz = buffer_size(M, N, K, sw);
  const int64_t per = bsz + M * N;  // packing buffer, then the partial sum
  float* buf = thread_buffer(W * per);
  run_tasks(W, W, [&](int64_t s, int64_t) {
    const int64_t k0 = K * s / W, k1 = K * (s + 1) / W;
    float* mine = buf + s * per;
    if (s == 0)
      gemm_nt_buf(M, N, k1, A, lda, B, ldb, C, ldc, accumulate, sw, mine);
    else
      gemm_nt_buf(M, N, k1 - k0, A + k0, lda, B + k0, ldb, mine + bsz, N, false, sw, mine);
  });
  for (int64_t s = 1; s < W; ++s)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += buf[s * per + bsz + i * N + j];
}

}  // namespace gf
