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
inline void maybe_round(bool round16, float* x, int64_t n) {
  if (round16) round_to_half_inplace(x, n);
}
inline float r16(bool round16, float x) { return round16 ? round_half(x) : x; }
}  // namespace

void rms_norm(int64_t S, int64_t H, const float* x, const float* w, float eps, bool round16,
              float* out) {
  parallel_for((S + 63) / 64, [&](int64_t blk) {
    for (int64_t t = blk * 64; t < std::min(S, blk * 64 + 64); ++t) {
      const float* row = x + t * H;
      float* o = out + t * H;
      float ss = 0;
      for (int64_t i = 0; i < H; ++i) ss += row[i] * row[i];
      const float inv = 1.0f / std::sqrt(ss / (float)H + eps);
      for (int64_t i = 0; i < H; ++i) o[i] = r16(round16, w[i] * r16(round16, row[i] * inv));
    }
  });
}

void rope_inplace(int64_t S, int64_t n_heads, int64_t D, float theta, bool round16, float* x) {
  // transformers: inv_freq = 1 / theta^(arange(0, D, 2) / D) in fp32; angle = pos · inv_freq
  // in fp32; cos/sin cast to the model dtype.
  const int64_t half = D / 2;
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(theta, (float)(2 * i) / (float)D);
  parallel_for((S + 63) / 64, [&](int64_t blk) {
    std::vector<float> c(half), s(half);
    for (int64_t t = blk * 64; t < std::min(S, blk * 64 + 64); ++t) {
      for (int64_t i = 0; i < half; ++i) {
        const float ang = (float)t * inv_freq[i];
        c[i] = r16(round16, std::cos(ang));
        s[i] = r16(round16, std::sin(ang));
      }
      for (int64_t h = 0; h < n_heads; ++h) {
        float* v = x + t * n_heads * D + h * D;
        for (int64_t i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          // x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1]
          v[i] = r16(round16, r16(round16, a * c[i]) + r16(round16, -b * s[i]));
          v[i + half] = r16(round16, r16(round16, b * c[i]) + r16(round16, a * s[i]));
        }
      }
    }
  });
}

void causal_attention(const LlamaDims& d, int64_t S, const float* q, const float* k,
                      const float* v, float* out) {
  const int64_t D = d.head_dim, Hq = d.heads, Hkv = d.kv_heads, group = Hq / Hkv;
  const int64_t qs = Hq * D, kvs = Hkv * D;  // row strides
  // Vᵀ per kv head, [Hkv][D][S], so that P·V is a dot-product GEMM over keys.
  std::vector<float> vt((size_t)(Hkv * D * S));
  parallel_for(Hkv, [&](int64_t h) {
    for (int64_t t = 0; t < S; ++t)
      for (int64_t i = 0; i < D; ++i) vt[(h * D + i) * S + t] = v[t * kvs + h * D + i];
  });
  const int64_t QB = 64;
  const int64_t nqb = (S + QB - 1) / QB;
  const float scale = 1.0f / std::sqrt((float)D);
  parallel_for(Hq * nqb, [&](int64_t item) {
    // Largest blocks first would balance better; items are handed out dynamically anyway.
    const int64_t h = item / nqb, qb = nqb - 1 - item % nqb;
    const int64_t hk = h / group;
    const int64_t t0 = qb * QB, t1 = std::min(S, t0 + QB), m = t1 - t0;
    const int64_t nk = t1;  // keys 0..t1-1 can be seen by this block
    thread_local std::vector<float> P;
    P.resize((size_t)(QB * S));
    gemm_nt(m, nk, D, q + t0 * qs + h * D, qs, k + hk * D, kvs, P.data(), nk, false);
    for (int64_t r = 0; r < m; ++r) {
      float* p = P.data() + r * nk;
      const int64_t len = t0 + r + 1;  // causal: keys ≤ the query's position
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < len; ++j) mx = std::max(mx, p[j] *= scale);
      const double sum = exp_shift_sum(p, mx, p, len);
      const float inv = (float)(1.0 / sum);
      for (int64_t j = 0; j < len; ++j) p[j] *= inv;
      std::fill(p + len, p + nk, 0.0f);
    }
    gemm_nt(m, D, nk, P.data(), nk, vt.data() + hk * D * S, S, out + t0 * qs + h * D, qs, false);
  });
  maybe_round(d.round16, out, S * qs);
}

void decoder_layer_window(const LlamaDims& d, const LayerWeightsF32& w, int64_t S, float* x) {
  const int64_t H = d.hidden, F = d.ffn, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
  const bool r = d.round16;
  std::vector<float> xn(S * H), q(S * qd), k(S * kvd), v(S * kvd), att(S * qd);
  rms_norm(S, H, x, w.input_norm, d.eps, r, xn.data());
  gemm_nt_parallel(S, qd, H, xn.data(), H, w.q, H, q.data(), qd, false);
  gemm_nt_parallel(S, kvd, H, xn.data(), H, w.k, H, k.data(), kvd, false);
  gemm_nt_parallel(S, kvd, H, xn.data(), H, w.v, H, v.data(), kvd, false);
  maybe_round(r, q.data(), S * qd);
  maybe_round(r, k.data(), S * kvd);
  maybe_round(r, v.data(), S * kvd);
  rope_inplace(S, d.heads, d.head_dim, d.rope_theta, r, q.data());
  rope_inplace(S, d.kv_heads, d.head_dim, d.rope_theta, r, k.data());
  causal_attention(d, S, q.data(), k.data(), v.data(), att.data());
  // o_proj output goes into xn (free now), then the residual add.
  gemm_nt_parallel(S, H, qd, att.data(), qd, w.o, qd, xn.data(), H, false);
  maybe_round(r, xn.data(), S * H);
  for (int64_t i = 0; i < S * H; ++i) x[i] = r16(r, x[i] + xn[i]);
  // MLP: down(silu(gate(x̂)) · up(x̂)), x̂ = post-attention RMSNorm.
  rms_norm(S, H, x, w.post_norm, d.eps, r, xn.data());
  std::vector<float> g(S * F), u(S * F);
  gemm_nt_parallel(S, F, H, xn.data(), H, w.gate, H, g.data(), F, false);
  gemm_nt_parallel(S, F, H, xn.data(), H, w.up, H, u.data(), F, false);
  parallel_for((S + 63) / 64, [&](int64_t blk) {
    for (int64_t i = blk * 64 * F; i < std::min(S, blk * 64 + 64) * F; ++i) {
      const float gv = r16(r, g[i]), uv = r16(r, u[i]);
      const float act = r16(r, gv / (1.0f + std::exp(-gv)));  // silu
      g[i] = r16(r, act * uv);
    }
  });
  gemm_nt_parallel(S, H, F, g.data(), F, w.down, F, xn.data(), H, false);
  maybe_round(r, xn.data(), S * H);
  for (int64_t i = 0; i < S * H; ++i) x[i] = r16(r, x[i] + xn[i]);
}

void window_nll(const LlamaDims& d, int64_t V, int64_t S, const float* x, const float* norm,
                const float* lm_head, const int32_t* ids, float* nll, int32_t* argmax) {
  const int64_t H = d.hidden;
  std::vector<float> xn(S * H);
  rms_norm(S, H, x, norm, d.eps, d.round16, xn.data());
  // Logits for RB rows at a time: [RB, V] stays small whatever the vocabulary.
  const int64_t RB = 32;
  std::vector<float> logits(RB * V);
  for (int64_t t0 = 0; t0 < S; t0 += RB) {
    const int64_t m = std::min(RB, S - t0);
    gemm_nt_parallel(m, V, H, xn.data() + t0 * H, H, lm_head, H, logits.data(), V, false);
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
