// Bindings of the GPTQ kernels: Hessians of a layer's stage inputs, the solve, RTN.
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>

#include "../kernels/cpu/gptq.h"
#include "../kernels/cpu/half.h"
#include "../kernels/cpu/hessian.h"
#include "../kernels/cpu/linalg.h"
#include "bindings.h"
#include "layer.h"
#include "util.h"

namespace gfb {

gf::GptqOptions gptq_options_arg(const Napi::Env& env, const Napi::Value& v) {
  Napi::Object o = object_value(env, v, "options");
  gf::GptqOptions g;
  g.bits = (int)int_arg(env, o, "bits", "options", 2, 8);
  if (g.bits == 5 || g.bits == 6 || g.bits == 7) range_error(env, "options.bits", "2, 3, 4 or 8", std::to_string(g.bits));
  g.group_size = int_arg(env, o, "groupSize", "options", -1);
  if (g.group_size == 0) range_error(env, "options.groupSize", "-1 or a positive integer", "0");
  g.act_order = bool_arg(env, o, "actOrder", false, "options");
  g.static_groups = bool_arg(env, o, "staticGroups", false, "options");
  g.sym = bool_arg(env, o, "sym", false, "options");
  g.mse = bool_arg(env, o, "mse", false, "options");
  const double damp = num_arg(env, o, "dampPercent", "options");
  if (damp < 0) range_error(env, "options.dampPercent", "a number ≥ 0", number_text(damp));
  g.damp_percent = (float)damp;
  g.block_size = int_arg(env, o, "blockSize", "options", 1);
  return g;
}

namespace {


// layerStep(step, x[], aux[], out[], weights, dims, seqlen, wantHessian)
//   → { h: Float32Array [K*K] | null, forwardSeconds, hessianSeconds }
// One step of a decoder layer over all windows (see kernels/cpu/llama.h), with the Hessian
// H = 2/n Σ XᵀX (n = windows) of the input it produces for the next group of linears:
//   0 norm:      x                → H of input_layernorm(x)               (q/k/v)
//   1 attention: x      → out=att → H of att                              (o_proj)
//   2 residual:  x, aux=att → out=h1 → H of post_attention_layernorm(h1)  (gate/up)
//   3 act:       x=h1             → H of silu(gate)·up                    (down_proj)
//   4 output:    x=h1   → out = h1 + down(act)                            (next layer)
class LayerStep : public PromiseWorker {
 public:
  LayerStep(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "layerStep", 8);
    step_ = (int)int_at(info, 0, "step", 0, 4);
    d_ = dims_arg(env, info[5]);
    seqlen_ = int_at(info, 6, "seqlen", 2);
    want_h_ = bool_at(info, 7, "wantHessian") && step_ != 4;
    const int64_t S = seqlen_, H = d_.hidden, qd = d_.heads * d_.head_dim;
    elements(env, "x", {S, std::max(qd, std::max(H, d_.ffn))});
    x_ = windows_arg(env, info[1], S * H);
    if (step_ == 2) aux_ = windows_arg(env, info[2], S * qd);
    if (step_ == 1 || step_ == 2 || step_ == 4) out_ = windows_arg(env, info[3], S * (step_ == 1 ? qd : H));
    if ((!aux_.empty() && aux_.size() != x_.size()) || (!out_.empty() && out_.size() != x_.size()))
      throw Napi::RangeError::New(env, "aux/out: expected one array per window");
    layer_arg(env, info[4], d_, layer_);
    K_ = step_ == 1 ? qd : step_ == 3 ? d_.ffn : H;
  }
  void Run() override {
    using clock = std::chrono::steady_clock;
    const int64_t S = seqlen_, H = d_.hidden;
    if (want_h_) H_.assign((size_t)(K_ * K_), 0.0f);
    std::vector<float> X((size_t)(S * K_));
    for (size_t i = 0; i < x_.size(); ++i) {
      auto t0 = clock::now();
      const float* input = X.data();  // what the Hessian reads
      switch (step_) {
        case 0: gf::rms_norm(S, H, x_[i].data, layer_.w.input_norm, d_.eps, d_.round16, X.data()); break;
        case 1: gf::step_attention(d_, layer_.w, S, x_[i].data, out_[i].data); input = out_[i].data; break;
        case 2:
          gf::step_attn_residual(d_, layer_.w, S, x_[i].data, aux_[i].data, out_[i].data);
          if (want_h_) gf::rms_norm(S, H, out_[i].data, layer_.w.post_norm, d_.eps, d_.round16, X.data());
          break;
        case 3: gf::step_mlp_act(d_, layer_.w, S, x_[i].data, X.data()); break;
        case 4:
          X.resize((size_t)(S * d_.ffn));
          gf::step_mlp_act(d_, layer_.w, S, x_[i].data, X.data());
          gf::step_mlp_out(d_, layer_.w, S, x_[i].data, X.data(), out_[i].data);
          break;
      }
      auto t1 = clock::now();
      if (want_h_) gf::xtx_accumulate(S, K_, input, K_, H_.data());
      forward_s_ += std::chrono::duration<double>(t1 - t0).count();
      hessian_s_ += std::chrono::duration<double>(clock::now() - t1).count();
    }
    if (want_h_) gf::symmetrize_upper(K_, H_.data(), 2.0f / (float)x_.size());
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("h", want_h_ ? (Napi::Value)to_js(env, H_) : env.Null());
    o.Set("forwardSeconds", forward_s_);
    o.Set("hessianSeconds", hessian_s_);
    return o;
  }

 private:
  int step_ = 0;
  bool want_h_ = false;
  gf::LlamaDims d_;
  HeldLayer layer_;
  int64_t seqlen_ = 0, K_ = 0;
  std::vector<Held<float>> x_, aux_, out_;
  std::vector<float> H_;
  double forward_s_ = 0, hessian_s_ = 0;
};

// gptqQuantize(W [N*K], H [K*K] | null, N, K, options) → { q (fp16-rounded), codes, scales, zeros, gIdx, perm,
//   loss, dampPercent, dampRaises, deadColumns }. With H = null: round-to-nearest.
class GptqQuantize : public PromiseWorker {
 public:
  GptqQuantize(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "gptqQuantize", 5);
    N_ = int_at(info, 2, "N", 1);
    K_ = int_at(info, 3, "K", 1);
    o_ = gptq_options_arg(env, info[4]);
    if (o_.group_size != -1 && K_ % o_.group_size != 0)
      range_error(env, "options.groupSize", "-1 or a divisor of K (" + std::to_string(K_) + ")", std::to_string(o_.group_size));
    w_ = typed_at<float>(info, 0, "W", elements(env, "W", {N_, K_}));
    rtn_ = info[1].IsNull();
    if (!rtn_) h_ = typed_at<float>(info, 1, "H", elements(env, "H", {K_, K_}));
  }
  void Run() override {
    const int64_t G = o_.group_size == -1 ? 1 : K_ / std::max<int64_t>(o_.group_size, 1);
    q_.assign(w_.data, w_.data + N_ * K_);
    codes_.resize(N_ * K_);
    scales_.resize(G * N_);
    zeros_.resize(G * N_);
    gidx_.resize(K_);
    perm_.resize(K_);
    if (rtn_) {
      gf::rtn_quantize(N_, K_, q_.data(), o_, codes_.data(), scales_.data(), zeros_.data(), gidx_.data());
      for (int64_t i = 0; i < K_; ++i) perm_[i] = (int32_t)i;
      res_.damp_percent = 0;
    } else {
      res_ = gf::gptq_quantize(N_, K_, q_.data(), h_.data, o_, codes_.data(), scales_.data(),
                               zeros_.data(), gidx_.data(), perm_.data());
    }
    for (float v : q_)
      if (!std::isfinite(v)) throw std::runtime_error("the quantized weights contain NaN or Inf");
    // The layer then computes with Q stored in fp16, as the reference's `weight.data = Q.half()`.
    gf::round_to_half_inplace(q_.data(), (int64_t)q_.size());
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("q", to_js(env, q_));
    out.Set("codes", to_js(env, codes_));
    out.Set("scales", to_js(env, scales_));
    out.Set("zeros", to_js(env, zeros_));
    out.Set("gIdx", to_js(env, gidx_));
    out.Set("perm", to_js(env, perm_));
    out.Set("loss", res_.loss);
    out.Set("dampPercent", res_.damp_percent);
    out.Set("dampRaises", res_.damp_raises);
    out.Set("deadColumns", (double)res_.dead_columns);
    return out;
  }

 private:
  int64_t N_ = 0, K_ = 0;
  gf::GptqOptions o_;
  bool rtn_ = false;
  Held<float> w_, h_;
  std::vector<float> q_, scales_;
  std::vector<uint8_t> codes_;
  std::vector<int32_t> zeros_, gidx_, perm_;
  gf::GptqResult res_;
};

// xtx(X [T*K], T, K, reference) → Float32Array [K*K] = XᵀX (tests and benchmarks)
class Xtx : public PromiseWorker {
 public:
  Xtx(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    arg_count(info, "xtx", 4);
    T_ = int_at(info, 1, "T");
    K_ = int_at(info, 2, "K");
    ref_ = bool_at(info, 3, "reference");
    x_ = typed_at<float>(info, 0, "X", elements(info.Env(), "X", {T_, K_}));
    elements(info.Env(), "K × K", {K_, K_});
  }
  void Run() override {
    g_.assign((size_t)(K_ * K_), 0.0f);
    if (ref_) {
      gf::xtx_accumulate_ref(T_, K_, x_.data, K_, g_.data());
    } else {
      gf::xtx_accumulate(T_, K_, x_.data, K_, g_.data());
      gf::symmetrize_upper(K_, g_.data(), 1.0f);
    }
  }
  Napi::Value Result(Napi::Env env) override { return to_js(env, g_); }

 private:
  int64_t T_ = 0, K_ = 0;
  bool ref_ = false;
  Held<float> x_;
  std::vector<float> g_;
};

// upperCholeskyOfInverse(H Float64Array [K*K], K, reference) → Float64Array | null (not PD)
class UpperCholInv : public PromiseWorker {
 public:
  UpperCholInv(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    arg_count(info, "upperCholeskyOfInverse", 3);
    K_ = int_at(info, 1, "K");
    ref_ = bool_at(info, 2, "reference");
    h_ = typed_at<double>(info, 0, "H", elements(info.Env(), "H", {K_, K_}));
  }
  void Run() override {
    u_.resize(K_ * K_);
    ok_ = ref_ ? gf::upper_cholesky_of_inverse_ref(K_, h_.data, u_.data())
               : gf::upper_cholesky_of_inverse(K_, h_.data, u_.data());
  }
  Napi::Value Result(Napi::Env env) override { return ok_ ? (Napi::Value)to_js(env, u_) : env.Null(); }

 private:
  int64_t K_ = 0;
  bool ref_ = false, ok_ = false;
  Held<double> h_;
  std::vector<double> u_;
};

}  // namespace

void RegisterGptq(Napi::Env env, Napi::Object exports) {
  exports.Set("layerStep", Napi::Function::New(env, start<LayerStep>));
  exports.Set("gptqQuantize", Napi::Function::New(env, start<GptqQuantize>));
  exports.Set("xtx", Napi::Function::New(env, start<Xtx>));
  exports.Set("upperCholeskyOfInverse", Napi::Function::New(env, start<UpperCholInv>));
}

}  // namespace gfb
