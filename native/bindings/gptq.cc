// Bindings of the GPTQ kernels: one linear's solve (or RTN), XᵀX and the Cholesky route
// (tests and benchmarks). The CPU engine's per-layer call is in cpu_layer.cc.
#include <string>

#include "../kernels/cpu/gptq.h"
#include "../kernels/cpu/hessian.h"
#include "../kernels/cpu/layer_quant.h"
#include "../kernels/cpu/linalg.h"
#include "bindings.h"
#include "util.h"

namespace gfb {

gf::GptqOptions gptq_options_arg(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(env, "options: expected an object");
  Napi::Object o = v.As<Napi::Object>();
  gf::GptqOptions g;
  g.bits = (int)int_arg(env, o, "bits");
  const double gs = num_arg(env, o, "groupSize");
  g.group_size = (int64_t)gs;
  g.act_order = o.Get("actOrder").ToBoolean();
  g.static_groups = o.Get("staticGroups").ToBoolean();
  g.sym = o.Get("sym").ToBoolean();
  g.mse = o.Get("mse").ToBoolean();
  g.damp_percent = (float)num_arg(env, o, "dampPercent");
  g.block_size = int_arg(env, o, "blockSize");
  return g;
}

namespace {


// gptqQuantize(W [N*K], H [K*K] | null, N, K, options) → { q (fp16-rounded), codes, scales, zeros, gIdx, perm,
//   loss, dampPercent, dampRaises, deadColumns }. With H = null: round-to-nearest.
class GptqQuantize : public PromiseWorker {
 public:
  GptqQuantize(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    N_ = info[2].As<Napi::Number>().Int64Value();
    K_ = info[3].As<Napi::Number>().Int64Value();
    o_ = gptq_options_arg(env, info[4]);
    w_ = hold<float>(env, info[0], "W", N_ * K_);
    rtn_ = info[1].IsNull();
    if (!rtn_) h_ = hold<float>(env, info[1], "H", K_ * K_);
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
    T_ = info[1].As<Napi::Number>().Int64Value();
    K_ = info[2].As<Napi::Number>().Int64Value();
    ref_ = info[3].ToBoolean();
    x_ = hold<float>(info.Env(), info[0], "X", T_ * K_);
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
    K_ = info[1].As<Napi::Number>().Int64Value();
    ref_ = info[2].ToBoolean();
    h_ = hold<double>(info.Env(), info[0], "H", K_ * K_);
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
}

}  // namespace gfb
