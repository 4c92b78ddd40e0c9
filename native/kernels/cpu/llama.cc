#include "llama.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gemm.h"
#include "half.h"
#include "parallel.h"
#include "vexp.h"

namespace gf {

namespace {
// Per-thread scratch buffers that keep their pages between calls: a fresh multi-megabyte
// std::vector per window costs page faults and zeroing that measured ~40 % of a layer's time.
// Each (function, slot) pair has its own buffer; contents are garbage on entry.
template <int Slot>
float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if ((int64_t)buf.size() < n) buf.resize((size_t)n);
  return buf.data();
}

inline void maybe_round(bool round16, float* x, int64_t n) {
  if (round16) round_to_half_inplace(x, n);
}
}  // namespace

void rms_norm(int64_t S, int64_t H, const float* x, const float* w, float eps, bool round16,
              float* out) {
  // transformers: normalise in fp32, cast to the model dtype, then multiply by the weight
  // (rounded again). Written as whole-row passes so each loop vectorises.
  parallel_for((S + 63) / 64, [&](int64_t blk) {
    for (int64_t t = blk * 64; t < std::min(S, blk * 64 + 64); ++t) {
      const float* row = x + t * H;
      float* o = out + t * H;
      float ss = 0;
      for (int64_t i = 0; i < H; ++i) ss += row[i] * row[i];
      const float inv = 1.0f / std::sqrt(ss / (float)H + eps);
      for (int64_t i = 0; i < H; ++i) o[i] = row[i] * inv;
      maybe_round(round16, o, H);
      for (int64_t i = 0; i < H; ++i) o[i] *= w[i];
      maybe_round(round16, o, H);
    }
  });
}

void rope_inplace(int64_t S, int64_t n_heads, int64_t D, float theta, bool round16, float* x) {
  // transformers: inv_freq = 1 / theta^(arange(0, D, 2) / D) in fp32; angle = pos · inv_freq
  // in fp32; cos/sin cast to the model dtype; x·cos + rotate_half(x)·sin with every product
  // and the sum stored in the model dtype. rotate_half(x) = [−x₂, x₁].
  const int64_t half = D / 2;
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(theta, (float)(2 * i) / (float)D);
  parallel_for((S + 63) / 64, [&](int64_t blk) {
    std::vector<float> c(half), s(half), p(4 * half);
    for (int64_t t = blk * 64; t < std::min(S, blk * 64 + 64); ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const float ang = (float)t * inv_freq[i];
        c[i] = std::cos(ang);
        s[i] = std::sin(ang);
      }
      maybe_round(round16, c.data(), half);
      maybe_round(round16, s.data(), half);
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + t * n_heads * D + h * D;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          p[i] = a * c[i];
          p[half + i] = -b * s[i];
          p[2 * half + i] = b * c[i];
          p[3 * half + i] = a * s[i];
        }
        maybe_round(round16, p.data(), 4 * half);
        for (int64_t i = 0; i < half; ++i) {
          v[i] = p[i] + p[half + i];
          v[i + half] = p[2 * half + i] + p[3 * half + i];
        }
        maybe_round(round16, v, D);
      }
    }
  });
}

void causal_attention(const LlamaDims& d, int64_t S, const float* q, const float* k,
                      const float* v, float* out) {
  const int64_t D = d.head_dim, Hq = d.heads, Hkv = d.kv_heads, group = Hq / Hkv;
  const int64_t qs = Hq * D, kvs = Hkv * D;  // row strides
  // Query blocks of 64 rows (8 register blocks of 8); P = 64 × keys ≤ 1 MiB at S = 4096.
  // Nothing past the diagonal is computed (S tiles skipped, P·V's K range cut per row
  // block), so the block only trades P's cache footprint against per-block overhead:
  // S = 4096, 6/2 heads, D = 64, 2 threads: QB 32/64/128 → 277/286/287 GFLOP/s.
  const int64_t QB = 64, nqb = (S + QB - 1) / QB, items = Hq * nqb;
  const int64_t W = std::min<int64_t>(num_threads(), items);
  // K and V of each kv head are packed once into GEMM panels of NR columns and shared by the
  // `group` query heads that read them: K as the B of S = Q·Kᵀ (panels of NR keys, [D][NR]),
  // V as the B of O = P·V (panels of NR head dims, [S][NR]: slices of V's rows).
  const int64_t NR = gemm_panel_width();
  const int64_t Sp = (S + NR - 1) / NR * NR, Dp = (D + NR - 1) / NR * NR;
  const int64_t kps = D * NR, vps = S * NR;  // panel strides
  const int64_t ldp = (S + 15) / 16 * 16 + 16, per = QB * ldp + QB;  // per worker: P, 1/Σ
  // One buffer of the calling thread, kept between calls (fresh pages fault, slowly here);
  // workers (spawned per parallel_for) get slices.
  thread_local std::vector<float> buf;
  const size_t need = (size_t)(Hkv * (Sp * D + Dp * S) + W * per);
  if (buf.size() < need) buf.resize(need);
  float* kp = buf.data();
  float* vp = kp + Hkv * Sp * D;
  float* work = vp + Hkv * Dp * S;
  parallel_for(2 * Hkv, [&](int64_t t) {
    const int64_t h = t / 2;
    if (t % 2 == 0)
      gemm_pack_b(S, D, k + h * D, kvs, kp + h * Sp * D, kps);
    else
      gemm_pack_bt(D, S, v + h * D, kvs, vp + h * Dp * S, vps);
  });
  const float scale = 1.0f / std::sqrt((float)D);
  // Largest blocks (last queries) first, all heads of a block together: the dynamic hand-out
  // then ends on small items.
  std::atomic<int64_t> next{0};
  parallel_for(W, [&](int64_t w) {
    float* P = work + w * per;
    float* inv = P + QB * ldp;
    for (int64_t item; (item = next.fetch_add(1)) < items;) {
      const int64_t qb = nqb - 1 - item / Hq, h = item % Hq, hk = h / group;
      const int64_t t0 = qb * QB, t1 = std::min(S, t0 + QB), m = t1 - t0;
      const int64_t nk = t1;  // keys 0..t1-1 can be seen by this block
      // S = Q·Kᵀ; row r needs keys ≤ t0 + r only.
      gemm_nt_packed(m, nk, D, q + t0 * qs + h * D, qs, kp + hk * Sp * D, kps, P, ldp, false,
                     /*ndiag=*/t0, -1);
      for (int64_t r = 0; r < m; ++r) {
        float* p = P + r * ldp;
        const int64_t len = t0 + r + 1;  // causal: keys ≤ the query's position
        const float mx = max_of(p, len);
        inv[r] = (float)(1.0 / exp_scale_shift_sum(p, scale, mx * scale, p, len));
        std::fill(p + len, p + std::min(nk, len + 16), 0.0f);  // gemm_nt_packed's kdiag rule
      }
      // O = P·V unnormalised (row r reads keys ≤ t0 + r), then × 1/Σ per row.
      float* o = out + t0 * qs + h * D;
      gemm_nt_packed(m, D, nk, P, ldp, vp + hk * Dp * S, vps, o, qs, false, -1, /*kdiag=*/t0);
      for (int64_t r = 0; r < m; ++r)
        for (int64_t i = 0; i < D; ++i) o[r * qs + i] *= inv[r];
    }
  });
  maybe_round(d.round16, out, S * qs);
}

void step_attention(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, const float* x,
                    float* att) {
  const int64_t H = d.hidden, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
  const bool r = d.round16;
  float* xn = scratch<0>(S * H);
  float* q = scratch<1>(S * qd);
  float* k = scratch<2>(S * kvd);
  float* v = scratch<3>(S * kvd);
  rms_norm(S, H, x, w.input_norm, d.eps, r, xn);
  gemm_nt_parallel(S, qd, H, xn, H, w.q, H, q, qd, false);
  gemm_nt_parallel(S, kvd, H, xn, H, w.k, H, k, kvd, false);
  gemm_nt_parallel(S, kvd, H, xn, H, w.v, H, v, kvd, false);
  maybe_round(r, q, S * qd);
  maybe_round(r, k, S * kvd);
  maybe_round(r, v, S * kvd);
  rope_inplace(S, d.heads, d.head_dim, d.rope_theta, r, q);
  rope_inplace(S, d.kv_heads, d.head_dim, d.rope_theta, r, k);
  causal_attention(d, S, q, k, v, att);
}

namespace {
// out[i] = a[i] + b[i] (then rounded to fp16 when asked), for i < n, on all threads.
void add_rows(int64_t n, const float* a, const float* b, bool round16, float* out) {
  const int64_t chunk = 1 << 16;
  parallel_for((n + chunk - 1) / chunk, [&](int64_t c) {
    const int64_t i0 = c * chunk, i1 = std::min(n, i0 + chunk);
    for (int64_t i = i0; i < i1; ++i) out[i] = a[i] + b[i];
    maybe_round(round16, out + i0, i1 - i0);
  });
}
}  // namespace

void step_attn_residual(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, const float* x,
                        const float* att, float* h1) {
  const int64_t H = d.hidden, qd = d.heads * d.head_dim;
  gemm_nt_parallel(S, H, qd, att, qd, w.o, qd, h1, H, false);
  maybe_round(d.round16, h1, S * H);
  add_rows(S * H, x, h1, d.round16, h1);
}

void step_mlp_act(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, const float* h1,
                  float* act) {
  const int64_t H = d.hidden, F = d.ffn;
  const bool r = d.round16;
  float* xn = scratch<0>(S * H);
  float* u = scratch<4>(S * F);
  rms_norm(S, H, h1, w.post_norm, d.eps, r, xn);
  gemm_nt_parallel(S, F, H, xn, H, w.gate, H, act, F, false);
  gemm_nt_parallel(S, F, H, xn, H, w.up, H, u, F, false);
  // act = silu(gate) · up, each step stored in the model dtype: whole-chunk passes, the
  // sigmoid with the vectorised exp.
  const int64_t chunk = 1 << 14, n = S * F;
  parallel_for((n + chunk - 1) / chunk, [&](int64_t c) {
    const int64_t i0 = c * chunk, m = std::min(n, i0 + chunk) - i0;
    float* g = act + i0;
    float* up = u + i0;
    maybe_round(r, g, m);
    maybe_round(r, up, m);
    int64_t i = 0;
    for (; i + 16 <= m; i += 16) {
      vf16 gv;
      __builtin_memcpy(&gv, g + i, sizeof(gv));
      const vf16 sv = gv / (1.0f + vexp(-gv));
      __builtin_memcpy(g + i, &sv, sizeof(sv));
    }
    for (; i < m; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i]));
    maybe_round(r, g, m);
    for (i = 0; i < m; ++i) g[i] *= up[i];
    maybe_round(r, g, m);
  });
}

void step_mlp_out(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, const float* h1,
                  const float* act, float* out) {
  const int64_t H = d.hidden, F = d.ffn;
  float* y = scratch<0>(S * H);
  gemm_nt_parallel(S, H, F, act, F, w.down, F, y, H, false);
  maybe_round(d.round16, y, S * H);
  add_rows(S * H, h1, y, d.round16, out);
}

void decoder_layer_window(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, float* x) {
  float* att = scratch<5>(S * d.heads * d.head_dim);
  float* h1 = scratch<6>(S * d.hidden);
  float* act = scratch<7>(S * d.ffn);
  step_attention(d, w, S, x, att);
  step_attn_residual(d, w, S, x, att, h1);
  step_mlp_act(d, w, S, h1, act);
  step_mlp_out(d, w, S, h1, act, x);
}

void window_nll(const LlamaDims& d, int64_t V, int64_t S, const float* x, const float* norm,
                const float* lm_head, const int32_t* ids, float* nll, int32_t* argmax) {
  const int64_t H = d.hidden;
  float* xn = scratch<0>(S * H);
  rms_norm(S, H, x, norm, d.eps, d.round16, xn);
  // Logits for RB rows at a time: [RB, V] stays small whatever the vocabulary.
  const int64_t RB = 32;
  std::vector<float> logits(RB * V);
  for (int64_t t0 = 0; t0 < S; t0 += RB) {
    const int64_t m = std::min(RB, S - t0);
    gemm_nt_parallel(m, V, H, xn + t0 * H, H, lm_head, H, logits.data(), V, false);
    parallel_for(m, [&](int64_t rr) {
      const int64_t t = t0 + rr;
      float* l = logits.data() + rr * V;
      maybe_round(d.round16, l, V);
      int64_t best = 0;
      for (int64_t j = 1; j < V; ++j)
        if (l[j] > l[best]) best = j;
      argmax[t] = (int32_t)best;
      if (t == S - 1) return;  // the last position has no target inside the window
      thread_local std::vector<float> e;
      e.resize((size_t)V);
      const float mx = l[best];
      const double sum = exp_shift_sum(l, mx, e.data(), V);
      nll[t] = (float)(std::log(sum) + mx - l[ids[t + 1]]);
    });
  }
}

}  // namespace gf
