// Bindings of the GPTQ kernels: one linear's solve (or RTN), XᵀX and the Cholesky route, and
// QEP's cross term and weight correction (tests and benchmarks). The CPU engine's per-layer call is in cpu_layer.cc.
#include <string>

#include "../kernels/cpu/gptq.h"
#include "../kernels/cpu/hessian.h"
#include "../kernels/cpu/layer_quant.h"
#include "../kernels/cpu/linalg.h"
#include "../kernels/cpu/qep.h"
#include "bindings.h"
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
    q_.assign(w_.data, w_.data + N_ * K_);
    res_ = gf::solve_linear(N_, K_, q_.data(), rtn_ ? nullptr : h_.data, o_, c_);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("q", to_js(env, q_));
    out.Set("codes", to_js(env, c_.codes));
    out.Set("scales", to_js(env, c_.scales));
    out.Set("zeros", to_js(env, c_.zeros));
    out.Set("gIdx", to_js(env, c_.g_idx));
    out.Set("perm", to_js(env, c_.perm));
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
  std::vector<float> q_;
  gf::LinearCodes c_;
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

// crossTerm(Xf [T*K], X [T*K], T, K, reference) → Float32Array [K*K] = (Xf − X)ᵀ X (QEP; tests)
class CrossTerm : public PromiseWorker {
 public:
  CrossTerm(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    arg_count(info, "crossTerm", 5);
    T_ = int_at(info, 2, "T");
    K_ = int_at(info, 3, "K");
    ref_ = bool_at(info, 4, "reference");
    xf_ = typed_at<float>(info, 0, "Xf", elements(info.Env(), "Xf", {T_, K_}));
    x_ = typed_at<float>(info, 1, "X", elements(info.Env(), "X", {T_, K_}));
    elements(info.Env(), "K × K", {K_, K_});
  }
  void Run() override {
    c_.assign((size_t)(K_ * K_), 0.0f);
    (ref_ ? gf::cross_accumulate_ref : gf::cross_accumulate)(T_, K_, xf_.data, x_.data, K_, c_.data());
  }
  Napi::Value Result(Napi::Env env) override { return to_js(env, c_); }

 private:
  int64_t T_ = 0, K_ = 0;
  bool ref_ = false;
  Held<float> xf_, x_;
  std::vector<float> c_;
};

// qepCorrect(W [N*K], H [K*K], C [K*K], N, K, alpha, dampPercent, reference) →
//   { w: W* (fp32, before the layer's fp16 rounding), dampPercent, dampRaises } (QEP; tests)
class QepCorrect : public PromiseWorker {
 public:
  QepCorrect(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "qepCorrect", 8);
    N_ = int_at(info, 3, "N", 1);
    K_ = int_at(info, 4, "K", 1);
    alpha_ = alpha_value(env, number_at(info, 5, "alpha"), "alpha");
    damp_ = number_at(info, 6, "dampPercent");
    if (!(damp_ >= 0 && damp_ < 1)) range_error(env, "dampPercent", "a number in [0, 1)", number_text(damp_));
    ref_ = bool_at(info, 7, "reference");
    w_ = typed_at<float>(info, 0, "W", elements(env, "W", {N_, K_}));
    h_ = typed_at<float>(info, 1, "H", elements(env, "H", {K_, K_}));
    c_ = typed_at<float>(info, 2, "C", elements(env, "C", {K_, K_}));
  }
  void Run() override {
    out_.assign(w_.data, w_.data + N_ * K_);
    res_ = (ref_ ? gf::qep_correct_ref : gf::qep_correct)(N_, K_, out_.data(), h_.data, c_.data, (float)alpha_, (float)damp_);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("w", to_js(env, out_));
    o.Set("dampPercent", res_.damp_percent);
    o.Set("dampRaises", res_.damp_raises);
    return o;
  }

 private:
  int64_t N_ = 0, K_ = 0;
  double alpha_ = 0, damp_ = 0;
  bool ref_ = false;
  Held<float> w_, h_, c_;
  std::vector<float> out_;
  gf::QepResult res_;
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
  exports.Set("gptqQuantize", Napi::Function::New(env, start<GptqQuantize>));
  exports.Set("xtx", Napi::Function::New(env, start<Xtx>));
  exports.Set("upperCholeskyOfInverse", Napi::Function::New(env, start<UpperCholInv>));
  exports.Set("crossTerm", Napi::Function::New(env, start<CrossTerm>));
  exports.Set("qepCorrect", Napi::Function::New(env, start<QepCorrect>));
}

}  // namespace gfb
