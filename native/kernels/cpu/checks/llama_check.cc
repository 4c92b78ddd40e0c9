// Checks of native/kernels/cpu/llama.h against references in fp64 (simple loops) with
// tolerances derived from the arithmetic, fp32 and round16 (fp16 activation storage) modes:
// rms_norm, rope_inplace, causal_attention (GQA, windows crossing the 64-query blocks and the
// GEMM panels, S = 1), step_attn_residual, step_mlp_act, step_mlp_out, window_nll (and its
// argmax); step_attention and decoder_layer_window against the composition of the public
// pieces they document (bit-exact: the same kernels in the same order).
//   build/cpu-checks/llama_check          exit 0 only when every case passes
#include "../llama.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "../gemm.h"
#include "check_util.h"

using namespace gf;
using namespace gf::check;

namespace {

constexpr double kExpRel = 4e-7;  // vexp.h: relative error ≈ 2e-7; twice that

// An fp16 rounding (round16) costs u16 relative plus the subnormal half-spacing; fp32 storage u32.
double rnd(bool r16, double v) { return r16 ? kHalfU * std::fabs(v) * (1 + kHalfU) + kHalfSub : kFloatU * std::fabs(v); }

struct RmsRef { std::vector<double> y; double rel; };
// y = x·inv·w exactly; rel: the relative error bound of the kernel's fp32 inv (Σx² over H
// positive terms: H·u32, halved by the root; /H, +eps, sqrt, 1/·: 4·u32) and x·inv, ·w.
RmsRef rms_ref(int64_t S, int64_t H, const std::vector<float>& x, const float* w, float eps) {
  RmsRef r{std::vector<double>(S * H), (H / 2.0 + 6) * kFloatU};
  for (int64_t t = 0; t < S; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += (double)x[t * H + i] * x[t * H + i];
    const double inv = 1.0 / std::sqrt(ss / H + eps);
    for (int64_t i = 0; i < H; ++i) r.y[t * H + i] = x[t * H + i] * inv * w[i];
  }
  return r;
}
double rms_tol(const RmsRef& r, bool r16, size_t i, double w) {  // two roundings in round16
  return std::fabs(r.y[i]) * (r.rel + (r16 ? 2 * kHalfU : 0)) * (1 + 2 * kHalfU) + (r16 ? kHalfSub * (1 + std::fabs(w)) : 0);
}

void check_rms_norm(std::mt19937& rng) {
  for (bool r16 : {false, true})
    for (auto [S, H] : {std::pair<int64_t, int64_t>{1, 8}, {65, 384}, {3, 1000}}) {
      const auto x = random_floats(rng, S * H, 2.0f, 0, r16), w = random_floats(rng, H, 0.1f, 1.0f, r16);
      std::vector<float> out(S * H);
      rms_norm(S, H, x.data(), w.data(), 1e-5f, r16, out.data());
      const RmsRef r = rms_ref(S, H, x, w.data(), 1e-5f);
      validate_result(strf("rms_norm S=%lld H=%lld round16=%d", (long long)S, (long long)H, r16), out, r.y,
                      [&](size_t i) { return rms_tol(r, r16, i, w[i % H]); });
    }
}

// Rotate-half RoPE in fp64 from the fp32 angle transformers computes; the tolerance as the
// CUDA check's (llama_check.cu), with the host's cosf/sinf (≤ 1 ulp) and fp32 products/sums
// when not round16.
void rope_ref(int64_t S, int64_t nh, int64_t D, float theta, bool r16, const std::vector<float>& x, std::vector<double>& ref,
              std::vector<double>& tol) {
  const int64_t half = D / 2;
  ref.assign(x.size(), 0);
  tol.assign(x.size(), 0);
  for (int64_t t = 0; t < S; ++t)
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const float ang = (float)t * (1.0f / std::pow(theta, (float)(2 * i) / (float)D));
        const double co = std::cos((double)ang), si = std::sin((double)ang), e_ang = 2 * kFloatU * std::fabs((double)ang) + 2 * kFloatU;
        const double ec = e_ang + (r16 ? kHalfU * std::fabs(co) + kHalfSub : 0), es = e_ang + (r16 ? kHalfU * std::fabs(si) + kHalfSub : 0);
        const int64_t at = t * nh * D + h * D + i;
        const double a = x[at], b = x[at + half];
        for (int part = 0; part < 2; ++part) {
          const double r = part ? b * co + a * si : a * co - b * si;
          const double ein = std::fabs(a) * (part ? es : ec) + std::fabs(b) * (part ? ec : es);
          const double p1 = std::fabs(a) * (std::fabs(part ? si : co) + ec), p2 = std::fabs(b) * (std::fabs(part ? co : si) + es);
          const double eprod = rnd(r16, p1) + rnd(r16, p2);
          ref[at + part * half] = r;
          tol[at + part * half] = ein + eprod + rnd(r16, std::fabs(r) + ein + eprod);
        }
      }
}

void check_rope(std::mt19937& rng) {
  struct Case { int64_t S, nh, D; float theta; };
  for (bool r16 : {false, true})
    for (const Case& c : {Case{37, 3, 64, 10000.0f}, Case{130, 2, 128, 500000.0f}, Case{5, 1, 80, 10000.0f}}) {
      auto x = random_floats(rng, c.S * c.nh * c.D, 2.0f, 0, r16);
      std::vector<double> ref, tol;
      rope_ref(c.S, c.nh, c.D, c.theta, r16, x, ref, tol);
      rope_inplace(c.S, c.nh, c.D, c.theta, r16, x.data());
      validate_result(strf("rope_inplace S=%lld heads=%lld D=%lld theta=%g round16=%d", (long long)c.S, (long long)c.nh, (long long)c.D, c.theta, r16), x,
                      ref, [&](size_t i) { return tol[i]; });
    }
}

// Exact softmax attention of one window and its tolerance: scores by fp32 GEMM (D·u32·Σ|q·k|),
// exp(s·scale − max·scale) by vexp (kExpRel, and u32 on the argument), the row sum (fp32 lanes
// of ≤ 64, then fp64: 64·u32), 1/Σ and ·1/Σ (2·u32), P·V by fp32 GEMM over n keys (n·u32).
// Perturbing each exp by ε moves o by ≤ 2ε·Σ P|v|; round16 rounds the output once.
void attention_ref(const LlamaDims& d, int64_t S, const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                   std::vector<double>& o, std::vector<double>& tol) {
  const int64_t D = d.head_dim, qs = d.heads * D, kvs = d.kv_heads * D, group = d.heads / d.kv_heads;
  const double scale = 1.0 / std::sqrt((double)D);
  o.assign(S * qs, 0);
  tol.assign(S * qs, 0);
  std::vector<double> s(S), a(S);
  for (int64_t t = 0; t < S; ++t)
    for (int64_t h = 0; h < d.heads; ++h) {
      const int64_t kh = h / group, n = t + 1;
      double mx = -INFINITY, eps = 0;
      for (int64_t j = 0; j < n; ++j) {
        double dot = 0, ab = 0;
        for (int64_t i = 0; i < D; ++i) { dot += (double)q[t * qs + h * D + i] * k[j * kvs + kh * D + i]; ab += std::fabs((double)q[t * qs + h * D + i] * k[j * kvs + kh * D + i]); }
        s[j] = dot * scale;
        a[j] = ab * scale;
        mx = std::max(mx, s[j]);
      }
      for (int64_t j = 0; j < n; ++j) eps = std::max(eps, (D + 1) * kFloatU * a[j] + 2 * kFloatU * (std::fabs(s[j]) + std::fabs(mx)) + kExpRel);
      double L = 0;
      for (int64_t j = 0; j < n; ++j) L += std::exp(s[j] - mx);
      for (int64_t i = 0; i < D; ++i) {
        double acc = 0, pa = 0;
        for (int64_t j = 0; j < n; ++j) {
          const double p = std::exp(s[j] - mx) / L, vv = v[j * kvs + kh * D + i];
          acc += p * vv;
          pa += p * std::fabs(vv);
        }
        o[t * qs + h * D + i] = acc;
        const double e = pa * (std::expm1(2 * eps) + (64 + n + 4) * kFloatU);
        tol[t * qs + h * D + i] = e + (d.round16 ? rnd(true, std::fabs(acc) + e) : 0);
      }
    }
}

void check_attention(std::mt19937& rng) {
  struct Case { int64_t S, heads, kv, D; float std; };
  for (bool r16 : {false, true})
    for (const Case& c : {Case{1, 2, 1, 64, 1.0f}, Case{33, 4, 2, 64, 1.0f}, Case{100, 6, 2, 64, 2.0f}, Case{257, 4, 4, 128, 1.0f}, Case{70, 8, 1, 80, 3.0f}}) {
      const LlamaDims d{c.heads * c.D, 4, c.heads, c.kv, c.D, 1e-5f, 10000.0f, r16};
      const auto q = random_floats(rng, c.S * c.heads * c.D, c.std, 0, r16), k = random_floats(rng, c.S * c.kv * c.D, c.std, 0, r16),
                 v = random_floats(rng, c.S * c.kv * c.D, c.std, 0, r16);
      std::vector<float> out(c.S * c.heads * c.D, NAN);
      causal_attention(d, c.S, q.data(), k.data(), v.data(), out.data());
      std::vector<double> ref, tol;
      attention_ref(d, c.S, q, k, v, ref, tol);
      validate_result(strf("causal_attention S=%lld heads=%lld/%lld D=%lld std %.0f round16=%d", (long long)c.S, (long long)c.heads, (long long)c.kv,
                           (long long)c.D, c.std, r16), out, ref, [&](size_t i) { return tol[i]; });
    }
}

struct Weights {
  std::vector<float> in_norm, q, k, v, o, post_norm, gate, up, down, final_norm, lm_head;
  LayerWeightsF32 w() const { return {in_norm.data(), q.data(), k.data(), v.data(), o.data(), post_norm.data(), gate.data(), up.data(), down.data()}; }
};
Weights make_weights(std::mt19937& rng, const LlamaDims& d, int64_t V) {
  const int64_t H = d.hidden, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
  auto r = [&](size_t n, float std, float mean = 0) { return random_floats(rng, n, std, mean, true); };
  return {r(H, 0.1f, 1), r(qd * H, 0.1f), r(kvd * H, 0.1f), r(kvd * H, 0.1f), r(H * qd, 0.05f), r(H, 0.1f, 1),
          r(d.ffn * H, 0.1f), r(d.ffn * H, 0.1f), r(H * d.ffn, 0.05f), r(H, 0.1f, 1), r(V * H, 0.1f)};
}

// y = base + X·Wᵀ (X [S, K], W [N, K]) in fp64 and its error bound: the fp32 GEMM (K·u32·Σ|x·w|),
// the rounding of the product (round16) and of the sum.
void residual_ref(const LlamaDims& d, int64_t S, int64_t N, int64_t K, const std::vector<float>& base, const std::vector<float>& X,
                  const std::vector<float>& W, std::vector<double>& ref, std::vector<double>& tol) {
  ref.assign(S * N, 0);
  tol.assign(S * N, 0);
  for (int64_t t = 0; t < S; ++t)
    for (int64_t n = 0; n < N; ++n) {
      double y = 0, a = 0;
      for (int64_t k = 0; k < K; ++k) { y += (double)X[t * K + k] * W[n * K + k]; a += std::fabs((double)X[t * K + k] * W[n * K + k]); }
      const double ey = (K + 1) * kFloatU * a + (d.round16 ? rnd(true, std::fabs(y)) : 0);
      ref[t * N + n] = base[t * N + n] + y;
      tol[t * N + n] = ey + rnd(d.round16, std::fabs(ref[t * N + n]) + ey);
    }
}

void check_layer(std::mt19937& rng) {
  for (bool r16 : {false, true}) {
    const LlamaDims d{128, 256, 4, 2, 32, 1e-5f, 10000.0f, r16};
    const int64_t S = 70, H = d.hidden, F = d.ffn, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim, V = 300;
    const Weights W = make_weights(rng, d, V);
    const auto x = random_floats(rng, S * H, 1.0f, 0, r16), att = random_floats(rng, S * qd, 0.5f, 0, r16);
    const std::string tag = strf("S=%lld hidden %lld ffn %lld heads %lld/%lld D %lld round16=%d", (long long)S, (long long)H, (long long)F,
                                 (long long)d.heads, (long long)d.kv_heads, (long long)d.head_dim, r16);
    // step_attention = rms_norm → q/k/v GEMMs (rounded) → RoPE on q and k → causal_attention.
    std::vector<float> a1(S * qd), xn(S * H), q(S * qd), k(S * kvd), v(S * kvd), a2(S * qd);
    step_attention(d, W.w(), S, x.data(), a1.data());
    rms_norm(S, H, x.data(), W.in_norm.data(), d.eps, r16, xn.data());
    gemm_nt_parallel(S, qd, H, xn.data(), H, W.q.data(), H, q.data(), qd, false);
    gemm_nt_parallel(S, kvd, H, xn.data(), H, W.k.data(), H, k.data(), kvd, false);
    gemm_nt_parallel(S, kvd, H, xn.data(), H, W.v.data(), H, v.data(), kvd, false);
    if (r16) { round_to_half_inplace(q.data(), S * qd); round_to_half_inplace(k.data(), S * kvd); round_to_half_inplace(v.data(), S * kvd); }
    rope_inplace(S, d.heads, d.head_dim, d.rope_theta, r16, q.data());
    rope_inplace(S, d.kv_heads, d.head_dim, d.rope_theta, r16, k.data());
    causal_attention(d, S, q.data(), k.data(), v.data(), a2.data());
    validate_exact("step_attention vs its documented composition, " + tag, a1, a2);
    // step_attn_residual: h1 = x + o(att).
    std::vector<float> h1(S * H);
    std::vector<double> ref, tol;
    step_attn_residual(d, W.w(), S, x.data(), att.data(), h1.data());
    residual_ref(d, S, H, qd, x, att, W.o, ref, tol);
    validate_result("step_attn_residual vs fp64, " + tag, h1, ref, [&](size_t i) { return tol[i]; });
    // step_mlp_act: act = silu(gate(n)) · up(n), n = post_norm(h1); errors propagated to first
    // order from n (rms tolerance) through the GEMMs (H·u32), silu (|silu'| ≤ 1.1, vexp) and ·.
    std::vector<float> act(S * F);
    step_mlp_act(d, W.w(), S, h1.data(), act.data());
    const RmsRef n = rms_ref(S, H, h1, W.post_norm.data(), d.eps);
    std::vector<double> aref(S * F), atol(S * F);
    for (int64_t t = 0; t < S; ++t)
      for (int64_t f = 0; f < F; ++f) {
        double g = 0, u = 0, ag = 0, au = 0, en_g = 0, en_u = 0;
        for (int64_t i = 0; i < H; ++i) {
          const double ni = n.y[t * H + i], eni = rms_tol(n, r16, t * H + i, W.post_norm[i]);
          g += ni * W.gate[f * H + i], u += ni * W.up[f * H + i];
          ag += std::fabs(ni * W.gate[f * H + i]), au += std::fabs(ni * W.up[f * H + i]);
          en_g += eni * std::fabs(W.gate[f * H + i]), en_u += eni * std::fabs(W.up[f * H + i]);
        }
        const double s = g / (1 + std::exp(-g)), eg = en_g + (H + 1) * kFloatU * ag + (r16 ? rnd(true, std::fabs(g)) : 0);
        const double eu = en_u + (H + 1) * kFloatU * au + (r16 ? rnd(true, std::fabs(u)) : 0);
        const double es = 1.1 * eg + std::fabs(s) * (kExpRel + 3 * kFloatU) + (r16 ? rnd(true, std::fabs(s)) : 0);
        const double e = (std::fabs(u) * es + std::fabs(s) * eu + es * eu) * (1 + 1e-3);
        aref[t * F + f] = s * u;
        atol[t * F + f] = e + rnd(r16, std::fabs(s * u) + e);
      }
    validate_result("step_mlp_act vs fp64, " + tag, act, aref, [&](size_t i) { return atol[i]; });
    // step_mlp_out: out = h1 + down(act), out aliasing h1.
    std::vector<float> out = h1;
    const auto act_in = random_floats(rng, S * F, 0.5f, 0, r16);
    step_mlp_out(d, W.w(), S, out.data(), act_in.data(), out.data());
    residual_ref(d, S, H, F, h1, act_in, W.down, ref, tol);
    validate_result("step_mlp_out (out = h1) vs fp64, " + tag, out, ref, [&](size_t i) { return tol[i]; });
    // decoder_layer_window = the four steps.
    std::vector<float> y = x, at(S * qd), hh(S * H), ac(S * F), z(S * H);
    decoder_layer_window(d, W.w(), S, y.data());
    step_attention(d, W.w(), S, x.data(), at.data());
    step_attn_residual(d, W.w(), S, x.data(), at.data(), hh.data());
    step_mlp_act(d, W.w(), S, hh.data(), ac.data());
    step_mlp_out(d, W.w(), S, hh.data(), ac.data(), z.data());
    validate_exact("decoder_layer_window vs its four steps, " + tag, y, z);
    // window_nll: final norm, lm_head, log-softmax of the next token; argmax.
    std::vector<int32_t> ids(S), am(S);
    for (auto& id : ids) id = (int32_t)(rng() % V);
    std::vector<float> nll(S - 1);
    window_nll(d, V, S, x.data(), W.final_norm.data(), W.lm_head.data(), ids.data(), nll.data(), am.data());
    const RmsRef fnorm = rms_ref(S, H, x, W.final_norm.data(), d.eps);
    std::vector<double> nref(S - 1), ntol(S - 1);
    int argmax_bad = 0;
    for (int64_t t = 0; t < S; ++t) {
      std::vector<double> l(V), el(V);
      for (int64_t j = 0; j < V; ++j) {
        double s = 0, a = 0, en = 0;
        for (int64_t i = 0; i < H; ++i) {
          s += fnorm.y[t * H + i] * W.lm_head[j * H + i], a += std::fabs(fnorm.y[t * H + i] * W.lm_head[j * H + i]);
          en += rms_tol(fnorm, r16, t * H + i, W.final_norm[i]) * std::fabs(W.lm_head[j * H + i]);
        }
        l[j] = s;
        el[j] = en + (H + 1) * kFloatU * a + rnd(r16, std::fabs(s));
      }
      const int64_t best = std::max_element(l.begin(), l.end()) - l.begin();
      const double emax = *std::max_element(el.begin(), el.end());
      // The argmax may differ only where another logit is within both error bounds of the max.
      bool ok = am[t] == best;
      if (!ok && am[t] >= 0 && am[t] < V) ok = l[best] - l[am[t]] <= el[best] + el[am[t]];
      argmax_bad += !ok;
      if (t == S - 1) continue;
      double sum = 0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(l[j] - l[best]);
      nref[t] = std::log(sum) + l[best] - l[ids[t + 1]];
      // log Σ exp moves by ≤ max |Δl|, the target's logit by its own; exp (vexp, argument u32),
      // the sums (64·u32) and log: relative errors of the sum are absolute errors of the log.
      ntol[t] = emax + el[ids[t + 1]] + kExpRel + 64 * kFloatU + 2 * kFloatU * (std::fabs(l[best]) + 40) + kFloatU * std::fabs(nref[t]);
    }
    validate_result("window_nll vs fp64, V=300, " + tag, nll, nref, [&](size_t i) { return ntol[i]; });
    report(argmax_bad == 0, strf("window_nll argmax: %d position(s) differ from the fp64 argmax beyond a near-tie, %s", argmax_bad, tag.c_str()));
  }
}

}  // namespace

int main() {
  return run_check("llama_check", [] {
    std::mt19937 rng(1402);
    check_rms_norm(rng);
    check_rope(rng);
    check_attention(rng);
    check_layer(rng);
  });
}
