// The CPU engine's one call per decoder layer (kernels/cpu/layer_quant.h):
//   cpuQuantizeLayer(weights, dims, windows | null, options, config, plan)
//     weights: the layer's nine fp32 weights (as decoderLayer); dims: as decoderLayer (round16);
//     windows: { x, att, h1: Float32Array[] (one per window), seqlen }, null with rtn;
//       x [S·hidden] in: the layer's inputs, out: its outputs; att [S·heads·D], h1 [S·hidden]
//       scratch; with config.qep also xf, attf, h1f: the same for QEP's fp16 path (xf in: the
//       fp16 model's activations entering the layer, out: leaving the unquantized layer);
//     options: the solver's (gptqQuantize's); config: { rtn, trueSequential, qep?: null |
//       { alpha in [0, 1], linears: names of the linears whose W is corrected }, gptaq?: null |
//       { alpha in [0, 1] } (GPTAQ: every linear's solve takes its group's cross term; not with
//       qep; needs xf, attf, h1f as qep does) };
//     plan: the layer plan (src/model/layer-plan.ts; checked, bindings/layer.cc).
//   → { linears: [{ name, n, k, codes, scales, zeros, gIdx, perm, loss, dampPercent,
//        dampRaises, deadColumns, seconds }] in the plan's order,
//       times: { forward, hessian, solve } (seconds) }
// The Hessians and the weights stay here: only the codes and grids of each linear come back.
#include <stdexcept>
#include <string>
#include <vector>

#include "../kernels/cpu/layer_quant.h"
#include "bindings.h"
#include "layer.h"
#include "util.h"

namespace gfb {
namespace {

class CpuQuantizeLayer : public PromiseWorker {
 public:
  CpuQuantizeLayer(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cpuQuantizeLayer", 6);
    d_ = dims_arg(env, info[1]);
    layer_arg(env, info[0], d_, layer_);
    o_.gptq = gptq_options_arg(env, info[3]);
    Napi::Object c = object_at(info, 4, "config");
    o_.rtn = bool_arg(env, c, "rtn", false, "config");
    o_.true_sequential = bool_arg(env, c, "trueSequential", false, "config");
    plan_ = plan_arg(env, info[5]);
    const QepArg qep = qep_arg(env, c);
    if (qep.on) {
      o_.qep = true;
      o_.qep_alpha = qep.alpha;
      for (gf::Linear l : qep.linears) o_.qep_correct[(int)l] = true;
      if (o_.rtn) throw Napi::TypeError::New(env, "config.qep: expected null with rtn (QEP needs calibration windows)");
    }
    const GptaqArg gptaq = gptaq_arg(env, c, o_.qep);
    if (gptaq.on) {
      o_.gptaq = true;
      o_.gptaq_alpha = gptaq.alpha;
      if (o_.rtn) throw Napi::TypeError::New(env, "config.gptaq: expected null with rtn (GPTAQ needs calibration windows)");
    }
    if (o_.rtn) {
      if (!info[2].IsNull()) throw Napi::TypeError::New(env, "windows: expected null with rtn, got " + describe(info[2]));
      return;
    }
    Napi::Object w = object_at(info, 2, "windows");
    const int64_t S = int_arg(env, w, "seqlen", "windows", 2);
    const int64_t H = d_.hidden, qd = d_.heads * d_.head_dim;
    x_ = windows_arg(env, w.Get("x"), S * H);
    att_ = windows_arg(env, w.Get("att"), S * qd);
    h1_ = windows_arg(env, w.Get("h1"), S * H);
    if (x_.empty()) throw Napi::RangeError::New(env, "windows.x: expected at least one window");
    if (att_.size() != x_.size() || h1_.size() != x_.size())
      throw Napi::RangeError::New(env, "windows.att, windows.h1: expected " + std::to_string(x_.size()) +
                                           " windows (as x)");
    win_.S = S;
    for (size_t i = 0; i < x_.size(); ++i) {
      win_.x.push_back(x_[i].data);
      win_.att.push_back(att_[i].data);
      win_.h1.push_back(h1_[i].data);
    }
    if (!o_.qep && !o_.gptaq) return;
    xf_ = windows_arg(env, w.Get("xf"), S * H);
    attf_ = windows_arg(env, w.Get("attf"), S * qd);
    h1f_ = windows_arg(env, w.Get("h1f"), S * H);
    if (xf_.size() != x_.size() || attf_.size() != x_.size() || h1f_.size() != x_.size())
      throw Napi::RangeError::New(env, "windows.xf, windows.attf, windows.h1f: expected " + std::to_string(x_.size()) +
                                           " windows (as x)");
    fp_.win.S = S;
    for (size_t i = 0; i < x_.size(); ++i) {
      fp_.win.x.push_back(xf_[i].data);
      fp_.win.att.push_back(attf_[i].data);
      fp_.win.h1.push_back(h1f_[i].data);
    }
  }

  void Run() override {
    // The linears are solved in place: copies, the caller's arrays stay as they were.
    const float* src[gf::kLinears] = {layer_.w.q, layer_.w.k, layer_.w.v, layer_.w.o,
                                      layer_.w.gate, layer_.w.up, layer_.w.down};
    const int64_t H = d_.hidden, F = d_.ffn, qd = d_.heads * d_.head_dim, kvd = d_.kv_heads * d_.head_dim;
    const int64_t count[gf::kLinears] = {qd * H, kvd * H, kvd * H, H * qd, F * H, F * H, H * F};
    gf::LayerWeightsMut w{layer_.w.input_norm, layer_.w.post_norm, {}};
    for (int i = 0; i < gf::kLinears; ++i) {
      lin_[i].assign(src[i], src[i] + count[i]);
      w.lin[i] = lin_[i].data();
    }
    // The fp16 path (QEP, GPTAQ) reads the caller's weights, which stay unquantized.
    fp_.w = layer_.w;
    gf::quantize_layer(d_, plan_, w, o_, o_.rtn ? nullptr : &win_, o_.qep || o_.gptaq ? &fp_ : nullptr, out_, t_);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array lin = Napi::Array::New(env, out_.size());
    for (size_t i = 0; i < out_.size(); ++i) {
      const gf::LinearResult& L = out_[i];
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", gf::linear_name(L.linear));
      o.Set("n", (double)L.n);
      o.Set("k", (double)L.k);
      o.Set("codes", to_js(env, L.codes.codes));
      o.Set("scales", to_js(env, L.codes.scales));
      o.Set("zeros", to_js(env, L.codes.zeros));
      o.Set("gIdx", to_js(env, L.codes.g_idx));
      o.Set("perm", to_js(env, L.codes.perm));
      o.Set("loss", L.res.loss);
      o.Set("dampPercent", L.res.damp_percent);
      o.Set("dampRaises", L.res.damp_raises);
      o.Set("deadColumns", (double)L.res.dead_columns);
      o.Set("seconds", L.seconds);
      lin.Set((uint32_t)i, o);
    }
    Napi::Object t = Napi::Object::New(env);
    t.Set("forward", t_.forward_s);
    t.Set("hessian", t_.hessian_s);
    t.Set("solve", t_.solve_s);
    Napi::Object r = Napi::Object::New(env);
    r.Set("linears", lin);
    r.Set("times", t);
    return r;
  }

 private:
  gf::LlamaDims d_;
  HeldLayer layer_;
  gf::LayerQuantOptions o_;
  gf::LayerPlan plan_;
  std::vector<Held<float>> x_, att_, h1_, xf_, attf_, h1f_;
  gf::LayerWindows win_;
  gf::FpPath fp_;
  std::vector<float> lin_[gf::kLinears];
  std::vector<gf::LinearResult> out_;
  gf::LayerQuantTimes t_;
};

}  // namespace

void RegisterCpuLayer(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuQuantizeLayer", Napi::Function::New(env, start<CpuQuantizeLayer>));
}

}  // namespace gfb
