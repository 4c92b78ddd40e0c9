#include "layer_quant.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>

#include "half.h"
#include "hessian.h"
#include "qep.h"

namespace gf {

GptqResult solve_linear(int64_t N, int64_t K, float* W, const float* H, const GptqOptions& o, LinearCodes& out,
                        const GptaqInput* gptaq) {
  const int64_t G = o.group_size == -1 ? 1 : K / std::max<int64_t>(o.group_size, 1);
  out.codes.resize(N * K);
  out.scales.resize(G * N);
  out.zeros.resize(G * N);
  out.g_idx.resize(K);
  out.perm.resize(K);
  GptqResult res;
  if (!H) {
    if (gptaq) throw std::invalid_argument("solve_linear: GPTAQ needs a Hessian (not round-to-nearest)");
    rtn_quantize(N, K, W, o, out.codes.data(), out.scales.data(), out.zeros.data(), out.g_idx.data());
    for (int64_t i = 0; i < K; ++i) out.perm[i] = (int32_t)i;
    res.damp_percent = 0;
  } else {
    res = gptq_quantize(N, K, W, H, o, out.codes.data(), out.scales.data(), out.zeros.data(), out.g_idx.data(),
                        out.perm.data(), gptaq);
  }
  for (int64_t i = 0; i < N * K; ++i)
    if (!std::isfinite(W[i])) throw std::runtime_error("the quantized weights contain NaN or Inf");
  // The layer then computes with Q stored in fp16, as the reference's `weight.data = Q.half()`.
  round_to_half_inplace(W, N * K);
  return res;
}

namespace {

using clock_type = std::chrono::steady_clock;
double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

// The layer's forward, cut at its ForwardPoints, over the windows of one call.
class LayerForward {
 public:
  // `view` points at the weights the forward uses: the quantized path's (solved in place, so
  // later points see the Q of earlier groups) or QEP's fp16 path's (never modified).
  LayerForward(const LlamaDims& d, const LayerWeightsF32& view, LayerWindows& win, LayerQuantTimes& t)
      : d_(d), win_(win), t_(t), view_(view), X_((size_t)(win.S * std::max(d.hidden, d.ffn))) {}

  // Width K of the input a point yields.
  int64_t width(ForwardPoint p) const {
    switch (p) {
      case ForwardPoint::attention: return d_.heads * d_.head_dim;
      case ForwardPoint::mlp_act: return d_.ffn;
      default: return d_.hidden;
    }
  }

  // Runs window i's forward up to point p with the weights as they are now; returns the
  // point's output [S, width(p)] when `want_input` (what the Hessian reads), else null. The
  // attention output stays in att[i], the residual h1 in h1[i] (later points read them).
  const float* to(ForwardPoint p, size_t i, bool want_input) {
    const auto t0 = clock_type::now();
    const int64_t S = win_.S, H = d_.hidden;
    const float* input = nullptr;
    switch (p) {
      case ForwardPoint::input_layernorm:
        if (want_input) rms_norm(S, H, win_.x[i], view_.input_norm, d_.eps, d_.round16, X_.data());
        input = X_.data();
        break;
      case ForwardPoint::attention:
        step_attention(d_, view_, S, win_.x[i], win_.att[i]);
        input = win_.att[i];
        break;
      case ForwardPoint::post_attention_layernorm:
        step_attn_residual(d_, view_, S, win_.x[i], win_.att[i], win_.h1[i]);
        if (want_input) rms_norm(S, H, win_.h1[i], view_.post_norm, d_.eps, d_.round16, X_.data());
        input = X_.data();
        break;
      case ForwardPoint::mlp_act:
        if (want_input) step_mlp_act(d_, view_, S, win_.h1[i], X_.data());
        input = X_.data();
        break;
    }
    t_.forward_s += since(t0);
    return want_input ? input : nullptr;
  }

  // The Hessian of point p's output over every window (add_batch), running the forward to it.
  std::vector<float> hessian(ForwardPoint p) {
    const int64_t K = width(p);
    std::vector<float> Hm((size_t)(K * K));
    t_.hessian_s += add_batch((int64_t)win_.x.size(), win_.S, K, [&](int64_t i) { return to(p, (size_t)i, true); },
                              Hm.data());
    return Hm;
  }

  // Point p's forward over every window without a Hessian (its kept activations only).
  void run(ForwardPoint p) {
    for (size_t i = 0; i < win_.x.size(); ++i) to(p, i, false);
  }

  // x ← h1 + down(silu(gate(n2)) · up(n2)): the layer's outputs, the next layer's inputs.
  void output() {
    for (size_t i = 0; i < win_.x.size(); ++i) {
      const auto t0 = clock_type::now();
      step_mlp_act(d_, view_, win_.S, win_.h1[i], X_.data());
      step_mlp_out(d_, view_, win_.S, win_.h1[i], X_.data(), win_.x[i]);
      t_.forward_s += since(t0);
    }
  }

 private:
  const LlamaDims& d_;
  LayerWindows& win_;
  LayerQuantTimes& t_;
  LayerWeightsF32 view_;
  std::vector<float> X_;  // [S, max(hidden, ffn)]
};

LayerWeightsF32 view_of(const LayerWeightsMut& w) {
  return LayerWeightsF32{w.input_norm, w.lin[(int)Linear::q], w.lin[(int)Linear::k], w.lin[(int)Linear::v],
                         w.lin[(int)Linear::o], w.post_norm, w.lin[(int)Linear::gate], w.lin[(int)Linear::up],
                         w.lin[(int)Linear::down]};
}

// A group's H [K, K] and, with QEP, its cross term C [K, K] (else empty): add_batch over the
// quantized path, add_batch_cross over both paths at point p (each forward run to it).
struct GroupStats {
  std::vector<float> H, C;
  // QEP: the factor of H and C, made for the group's first corrected linear and kept for the others.
  std::optional<QepFactor> qep;
};

GroupStats gather(ForwardPoint p, bool want_c, LayerForward& fwd, LayerForward* fpf, LayerWindows& win, LayerQuantTimes& t) {
  if (!fpf || !want_c) {
    GroupStats g{fwd.hessian(p), {}, std::nullopt};
    // The fp16 path still steps to p (attention and the residual are kept for later points).
    if (fpf) fpf->run(p);
    return g;
  }
  const int64_t K = fwd.width(p);
  GroupStats g{std::vector<float>((size_t)(K * K)), std::vector<float>((size_t)(K * K)), std::nullopt};
  t.hessian_s += add_batch_cross(
      (int64_t)win.x.size(), win.S, K, [&](int64_t i) { return fwd.to(p, (size_t)i, true); },
      [&](int64_t i) { return fpf->to(p, (size_t)i, true); }, g.H.data(), g.C.data());
  return g;
}

// N rows (outputs) and K columns (inputs) of a linear.
void linear_shape(const LlamaDims& d, Linear l, int64_t& n, int64_t& k) {
  const int64_t H = d.hidden, F = d.ffn, qd = d.heads * d.head_dim, kvd = d.kv_heads * d.head_dim;
  switch (l) {
    case Linear::q: n = qd; k = H; break;
    case Linear::k: case Linear::v: n = kvd; k = H; break;
    case Linear::o: n = H; k = qd; break;
    case Linear::gate: case Linear::up: n = F; k = H; break;
    case Linear::down: n = H; k = F; break;
  }
}

}  // namespace

void quantize_layer(const LlamaDims& d, const LayerPlan& plan, LayerWeightsMut& w, const LayerQuantOptions& o,
                    LayerWindows* win, FpPath* fp, std::vector<LinearResult>& out, LayerQuantTimes& t) {
  check_plan(plan);
  if (o.rtn != (win == nullptr)) throw std::invalid_argument("quantize_layer: windows are needed unless rtn");
  if (o.qep && o.gptaq) throw std::invalid_argument("quantize_layer: qep and gptaq both correct toward the fp16 path; one at a time");
  if ((o.qep || o.gptaq) != (fp != nullptr))
    throw std::invalid_argument("quantize_layer: the fp16 path is needed exactly with qep or gptaq");
  if (fp && (o.rtn || fp->win.S != win->S || fp->win.x.size() != win->x.size() ||
             fp->win.att.size() != win->x.size() || fp->win.h1.size() != win->x.size()))
    throw std::invalid_argument("quantize_layer: the fp16 path's windows must match the quantized path's");
  if (!(std::isfinite(o.qep_alpha) && o.qep_alpha >= 0))
    throw std::invalid_argument("quantize_layer: qep alpha must be a finite number >= 0");
  if (!(std::isfinite(o.gptaq_alpha) && o.gptaq_alpha >= 0))
    throw std::invalid_argument("quantize_layer: gptaq alpha must be a finite number >= 0");
  // Whether QEP corrects linear l (down_proj is not, by default).
  auto corrects = [&](Linear l) { return o.qep && o.qep_correct[(int)l] && o.qep_alpha > 0; };
  // One linear: with QEP (and a corrected linear), W ← W* rounded to fp16 (the group's factor of H
  // and C made once, for its first corrected linear), then the GPTQ solve.
  auto solve = [&](Linear l, GroupStats* g) {
    LinearResult r;
    r.linear = l;
    linear_shape(d, l, r.n, r.k);
    const auto t0 = clock_type::now();
    float* W = w.lin[(int)l];
    if (g && !g->C.empty() && corrects(l)) {
      if (!g->qep) g->qep = qep_factor(r.k, g->H.data(), g->C.data(), o.gptq.damp_percent);
      qep_apply(r.n, r.k, W, *g->qep, o.qep_alpha);
      round_to_half_inplace(W, r.n * r.k);  // the reference keeps W* in the model's dtype
    }
    // GPTAQ: every linear's solve takes its group's C (α = 0 included: the same solve with P = 0).
    const GptaqInput ga{g && o.gptaq && !g->C.empty() ? g->C.data() : nullptr, o.gptaq_alpha};
    r.res = solve_linear(r.n, r.k, W, g ? g->H.data() : nullptr, o.gptq, r.codes, ga.C ? &ga : nullptr);
    r.seconds = since(t0);
    t.solve_s += r.seconds;
    out.push_back(std::move(r));
  };
  if (o.rtn) {
    for (const PlanGroup& g : plan.groups)
      for (Linear l : g.linears) solve(l, nullptr);
    return;
  }
  LayerForward fwd(d, view_of(w), *win, t);
  std::unique_ptr<LayerForward> fpf;
  if (fp) fpf = std::make_unique<LayerForward>(d, fp->w, fp->win, t);
  // Whether a group needs the cross term: GPTAQ's every group; QEP's where one of its linears is
  // corrected (down_proj is not, by default: the widest C of the layer is then never formed).
  auto wants_c = [&](const PlanGroup& g) {
    bool any = o.gptaq;
    for (Linear l : g.linears) any |= corrects(l);
    return any;
  };
  if (o.true_sequential) {
    // Each group's Hessian with the groups before it already quantized.
    for (const PlanGroup& g : plan.groups) {
      GroupStats st = gather(g.input, wants_c(g), fwd, fpf.get(), *win, t);
      for (Linear l : g.linears) solve(l, &st);
    }
  } else {
    // All Hessians from the unquantized layer, then the quantized layer's own activations.
    std::vector<GroupStats> st;
    for (const PlanGroup& g : plan.groups) st.push_back(gather(g.input, wants_c(g), fwd, fpf.get(), *win, t));
    for (size_t i = 0; i < plan.groups.size(); ++i) {
      for (Linear l : plan.groups[i].linears) solve(l, &st[i]);
      st[i] = GroupStats{};  // its H, C and QEP factor are not needed by the later groups
    }
    fwd.run(ForwardPoint::attention);
    fwd.run(ForwardPoint::post_attention_layernorm);
  }
  fwd.output();
  // The fp16 path's attention output and residual are those of the unquantized layer (its
  // weights never change), computed while gathering; its outputs follow from them.
  if (fpf) fpf->output();
}

}  // namespace gf
