// Bindings of the CUDA engine (compiled only when the build found CUDA: GPTQ_FORGE_CUDA).
// Coarse calls, each an AsyncWorker:
//   cudaGptqQuantize(W, H, N, K, options, config)  one linear's solve on the GPU (same result
//                                                  object as gptqQuantize)
//   cudaSessionCreate(x, tokens, seqlen, hidden, xf?)
//                                                  calibration activations (fp16 bits) → GPU;
//                                                  xf (QEP, GPTAQ): the fp16 path's, the same size
//   cudaSessionLoad(session, slot, shape, entries) a layer's weights → a pinned host slot
//                                                  (cuda_weights.cc; runs beside a layer call)
//   cudaQuantizeLayer(session, slot, dims, options, config, plan)
//                                                  one whole decoder layer (weights from the
//                                                  slot), true-sequential along the plan
//                                                  (src/model/layer-plan.ts); the session's
//                                                  activations become its outputs (with
//                                                  config.qep or config.gptaq also the fp16 path's)
//   cudaSessionRead(session, dst, firstToken, fp?) activations back (fp16 bits) into dst; fp:
//                                                  the fp16 path's (QEP, GPTAQ)
//   cudaSessionFree(session)                       (sync) frees the GPU memory now
// Calls on one session are serialised by the TypeScript wrapper, except that a load into one
// slot runs beside the layer call on the other.
#include <cuda_fp16.h>

#include <cmath>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../kernels/cpu/half.h"
#include "../kernels/cuda/gptq.h"
#include "../kernels/cuda/layer_quant.h"
#include "bindings.h"
#include "cuda_session.h"
#include "layer.h"
#include "util.h"

namespace gfb {

std::mutex& cuda_mutex() {
  static std::mutex mu;
  return mu;
}
gfc::Context& cuda_context() {
  static std::unique_ptr<gfc::Context> ctx;
  if (!ctx) ctx = std::make_unique<gfc::Context>();
  return *ctx;
}

namespace {

std::mutex& g_mu = cuda_mutex();
gfc::Context& context() { return cuda_context(); }

// config: { tf32?, cholFp32? } (booleans; absent: false).
gfc::SolveConfig solve_config(const Napi::Env& env, const Napi::Value& v) {
  gfc::SolveConfig c;
  Napi::Object o = object_value(env, v, "config");
  c.tf32 = bool_arg(env, o, "tf32", false, "config");
  c.chol_fp32 = bool_arg(env, o, "cholFp32", false, "config");
  return c;
}

// The solver's options as the GPU solve takes them: block size 128; groupSize -1 or a divisor
// of every K in `ks` (mse as on the CPU engine: the grids' search runs on the GPU).
gf::GptqOptions gpu_options_arg(const Napi::Env& env, const Napi::Value& v, std::initializer_list<int64_t> ks) {
  gf::GptqOptions o = gptq_options_arg(env, v);
  if (o.block_size != 128) range_error(env, "options.blockSize", "128 on the GPU", std::to_string(o.block_size));
  for (int64_t k : ks)
    if (o.group_size != -1 && k % o.group_size != 0)
      range_error(env, "options.groupSize", "-1 or a divisor of " + std::to_string(k), std::to_string(o.group_size));
  return o;
}

Napi::Object solve_object(const Napi::Env& env, const gfc::LinearOut& L) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", L.name);
  out.Set("n", (double)L.n);
  out.Set("k", (double)L.k);
  if (!L.scales.empty()) {
    out.Set("codes", to_js(env, L.codes));
    out.Set("scales", to_js(env, L.scales));
    out.Set("zeros", to_js(env, L.zeros));
  }
  if (!L.qweight.empty()) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("qweight", to_js(env, L.qweight));
    p.Set("qzeros", to_js(env, L.qzeros));
    p.Set("scales", to_js(env, L.scales16));
    out.Set("packed", p);
  }
  out.Set("gIdx", to_js(env, L.g_idx));
  out.Set("perm", to_js(env, L.perm));
  out.Set("loss", L.res.loss);
  out.Set("dampPercent", L.res.damp_percent);
  out.Set("dampRaises", L.res.damp_raises);
  out.Set("deadColumns", (double)L.res.dead_columns);
  out.Set("seconds", L.seconds);
  return out;
}

class CudaGptqQuantize : public PromiseWorker {
 public:
  CudaGptqQuantize(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaGptqQuantize", 6);
    N_ = int_at(info, 2, "N", 1);
    K_ = int_at(info, 3, "K", 1);
    o_ = gpu_options_arg(env, info[4], {K_});
    cfg_ = solve_config(env, info[5]);
    w_ = typed_at<float>(info, 0, "W", elements(env, "W", {N_, K_}));
    h_ = typed_at<float>(info, 1, "H", elements(env, "H", {K_, K_}));
  }
  void Run() override {
    std::lock_guard<std::mutex> lock(g_mu);
    gfc::Context& ctx = context();
    const int64_t G = o_.group_size == -1 ? 1 : K_ / std::max<int64_t>(o_.group_size, 1);
    gfc::DevBuf<float> W(N_ * K_), H(K_ * K_), scales(G * N_);
    gfc::DevBuf<uint8_t> codes(N_ * K_);
    gfc::DevBuf<int32_t> zeros(G * N_);
    CUDA_CHECK(cudaMemcpyAsync(W.get(), w_.data, N_ * K_ * 4, cudaMemcpyHostToDevice, ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(H.get(), h_.data, K_ * K_ * 4, cudaMemcpyHostToDevice, ctx.stream));
    L_.g_idx.resize(K_);
    L_.perm.resize(K_);
    L_.res = gfc::gptq_quantize(ctx, N_, K_, W.get(), H.get(), o_, codes.get(), scales.get(), zeros.get(),
                                L_.g_idx.data(), L_.perm.data(), cfg_);
    q_.resize(N_ * K_);
    L_.codes.resize(N_ * K_);
    L_.scales.resize(G * N_);
    L_.zeros.resize(G * N_);
    CUDA_CHECK(cudaMemcpyAsync(q_.data(), W.get(), N_ * K_ * 4, cudaMemcpyDeviceToHost, ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(L_.codes.data(), codes.get(), N_ * K_, cudaMemcpyDeviceToHost, ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(L_.scales.data(), scales.get(), G * N_ * 4, cudaMemcpyDeviceToHost, ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(L_.zeros.data(), zeros.get(), G * N_ * 4, cudaMemcpyDeviceToHost, ctx.stream));
    ctx.sync();
    for (float v : q_)
      if (!std::isfinite(v)) throw std::runtime_error("the quantized weights contain NaN or Inf");
    gf::round_to_half_inplace(q_.data(), (int64_t)q_.size());  // the layer's fp16 weight
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = solve_object(env, L_);
    out.Set("q", to_js(env, q_));
    return out;
  }

 private:
  int64_t N_ = 0, K_ = 0;
  gf::GptqOptions o_;
  gfc::SolveConfig cfg_;
  Held<float> w_, h_;
  gfc::LinearOut L_;
  std::vector<float> q_;
};

class CudaSessionCreate : public PromiseWorker {
 public:
  CudaSessionCreate(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaSessionCreate", 4, 5);
    tokens_ = int_at(info, 1, "tokens", 1);
    seqlen_ = int_at(info, 2, "seqlen", 2);
    hidden_ = int_at(info, 3, "hidden", 8);
    if (tokens_ % seqlen_) range_error(env, "tokens", "a multiple of seqlen (" + std::to_string(seqlen_) + ")", std::to_string(tokens_));
    if (hidden_ % 8) range_error(env, "hidden", "a positive multiple of 8", std::to_string(hidden_));
    x_ = typed_at<uint16_t>(info, 0, "x", elements(env, "x", {tokens_, hidden_}));
    if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull()) {
      xf_ = typed_at<uint16_t>(info, 4, "xf", elements(env, "xf", {tokens_, hidden_}));
      qep_ = true;
    }
  }
  void Run() override {
    std::lock_guard<std::mutex> lock(g_mu);
    gfc::Context& ctx = context();
    s_ = std::make_unique<Session>();
    s_->tokens = tokens_;
    s_->seqlen = seqlen_;
    s_->hidden = hidden_;
    s_->x.alloc(tokens_ * hidden_);
    CUDA_CHECK(cudaMemcpyAsync(s_->x.get(), x_.data, tokens_ * hidden_ * 2, cudaMemcpyHostToDevice, ctx.stream));
    if (qep_) {
      s_->xf.alloc(tokens_ * hidden_);
      CUDA_CHECK(cudaMemcpyAsync(s_->xf.get(), xf_.data, tokens_ * hidden_ * 2, cudaMemcpyHostToDevice, ctx.stream));
    }
    ctx.sync();
  }
  Napi::Value Result(Napi::Env env) override {
    auto handle = Napi::External<Session>::New(env, s_.release(), [](Napi::Env, Session* s) {
      std::lock_guard<std::mutex> lock(g_mu);
      delete s;
    });
    handle.TypeTag(&kSessionTag);  // session_arg accepts only these
    return handle;
  }

 private:
  int64_t tokens_ = 0, seqlen_ = 0, hidden_ = 0;
  Held<uint16_t> x_, xf_;
  bool qep_ = false;
  std::unique_ptr<Session> s_;
};

// cudaSessionRead(session, dst: Uint16Array, firstToken, fp?: boolean): the activations of
// dst.length / hidden tokens from firstToken on into dst (the caller allocates: no second host
// copy); with fp true, QEP's fp16 path's (an Error when the session has none).
class CudaSessionRead : public PromiseWorker {
 public:
  CudaSessionRead(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaSessionRead", 3, 4);
    s_ = session_arg(env, info[0]);
    fp_ = info.Length() > 3 && !info[3].IsUndefined() && bool_at(info, 3, "fp");
    if (fp_ && !s_->xf.get()) throw Napi::Error::New(env, "fp: this session has no fp16 path (it was created without xf)");
    ref_ = Napi::Persistent(info[0]);
    dst_ = typed_at<uint16_t>(info, 1, "dst");
    first_ = int_at(info, 2, "firstToken", 0, s_->tokens);
    if (dst_.length % s_->hidden || first_ + (int64_t)(dst_.length / s_->hidden) > s_->tokens)
      range_error(env, "dst", "whole tokens within the session's activations (" + std::to_string(s_->tokens - first_) +
                               " × " + std::to_string(s_->hidden) + " elements at most)", std::to_string(dst_.length));
  }
  void Run() override {
    std::lock_guard<std::mutex> lock(g_mu);
    gfc::Context& ctx = context();
    const __half* src = (fp_ ? s_->xf.get() : s_->x.get()) + first_ * s_->hidden;
    CUDA_CHECK(cudaMemcpyAsync(dst_.data, src, dst_.length * 2, cudaMemcpyDeviceToHost, ctx.stream));
    ctx.sync();
  }

 private:
  Session* s_;
  Napi::Reference<Napi::Value> ref_;
  Held<uint16_t> dst_;
  int64_t first_ = 0;
  bool fp_ = false;
};

// slot: the session's host slot holding the layer's weights (cudaSessionLoad), stacks as in
// layer_quant.h; dims: { hidden, ffn, heads, kvHeads, headDim, eps, ropeTheta };
// config: { tf32, cholFp32, memBudgetGb, wantCodes (default true), wantPacked, qep?: null |
// { alpha in [0, 1], linears: names of the corrected linears, not mlp.down_proj }, gptaq?: null |
// { alpha in [0, 1] } (GPTAQ: every stack's solve takes its group's cross term; not with qep) }
// (qep or gptaq exactly when the session holds the fp16 path); plan: the layer plan (bindings/layer.cc: plan_arg;
// linears come back in its order).
class CudaQuantizeLayer : public PromiseWorker {
 public:
  CudaQuantizeLayer(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaQuantizeLayer", 6);
    s_ = session_arg(env, info[0]);
    ref_ = Napi::Persistent(info[0]);
    slot_ = (int)int_at(info, 1, "slot", 0, 1);
    d_ = layer_dims_arg(env, info[2]);
    if (d_.hidden != s_->hidden) range_error(env, "dims.hidden", std::to_string(s_->hidden) + " (the session's)", std::to_string(d_.hidden));
    const HostSlot& slot = s_->slots[slot_];
    if (!slot.data || slot.counts != LayerShape{d_.hidden, d_.ffn, d_.heads, d_.kv_heads, d_.head_dim}.counts())
      throw Napi::Error::New(env, "slot " + std::to_string(slot_) + ": no weights of this layer shape were loaded");
    o_.gptq = gpu_options_arg(env, info[3], {d_.hidden, d_.ffn});
    o_.solve = solve_config(env, info[4]);
    Napi::Object c = object_value(env, info[4], "config");
    if (!c.Get("memBudgetGb").IsUndefined()) o_.mem_budget_gb = num_arg(env, c, "memBudgetGb", "config");
    if (o_.mem_budget_gb < 0) range_error(env, "config.memBudgetGb", "a number ≥ 0", number_text(o_.mem_budget_gb));
    o_.want_packed = bool_arg(env, c, "wantPacked", false, "config");
    o_.want_codes = bool_arg(env, c, "wantCodes", o_.want_codes, "config");
    o_.plan = plan_arg(env, info[5]);
    const QepArg qep = qep_arg(env, c);
    if (qep.on) {
      o_.qep = true;
      o_.qep_alpha = qep.alpha;
      for (gf::Linear l : qep.linears) {
        if (l == gf::Linear::down)
          range_error(env, "config.qep.linears", "linears the CUDA engine corrects (not mlp.down_proj)", gf::linear_name(l));
        o_.qep_correct[(int)l] = true;
      }
    }
    const GptaqArg gptaq = gptaq_arg(env, c, o_.qep);
    o_.gptaq = gptaq.on;
    o_.gptaq_alpha = gptaq.alpha;
    if (o_.qep && !s_->xf.get())
      throw Napi::Error::New(env, "config.qep: this session has no fp16 path (create it with xf for QEP)");
    if (o_.gptaq && !s_->xf.get())
      throw Napi::Error::New(env, "config.gptaq: this session has no fp16 path (create it with xf for GPTAQ)");
    if (!o_.qep && !o_.gptaq && s_->xf.get())
      throw Napi::Error::New(env, "config.qep: this session holds an fp16 path (created with xf): the layer call needs config.qep or config.gptaq");
  }
  void Run() override {
    std::lock_guard<std::mutex> lock(g_mu);
    gfc::Context& ctx = context();
    const HostSlot& slot = s_->slots[slot_];
    auto up = [&](int part) {
      gfc::DevBuf<__half> b(slot.counts[part]);
      CUDA_CHECK(cudaMemcpyAsync(b.get(), slot.part(part), slot.counts[part] * 2, cudaMemcpyHostToDevice, ctx.stream));
      return b;
    };
    auto qkv = up(kQkv), o = up(kO), gu = up(kGateUp), down = up(kDown), n1 = up(kInputNorm), n2 = up(kPostNorm);
    const gfc::LayerDev w{qkv.get(), o.get(), gu.get(), down.get(), n1.get(), n2.get()};
    gfc::quantize_layer(ctx, d_, s_->seqlen, s_->tokens, s_->x.get(), o_.qep || o_.gptaq ? s_->xf.get() : nullptr, w, o_, out_, &t_);
    ctx.sync();
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    Napi::Array lin = Napi::Array::New(env, out_.size());
    for (size_t i = 0; i < out_.size(); ++i) lin.Set((uint32_t)i, solve_object(env, out_[i]));
    r.Set("linears", lin);
    Napi::Object t = Napi::Object::New(env);
    t.Set("forward", t_.forward_s);
    t.Set("attention", t_.attention_s);
    t.Set("hessian", t_.hessian_s);
    t.Set("cholesky", t_.chol_s);
    t.Set("solve", t_.solve_s);
    t.Set("copyOut", t_.pack_s);
    t.Set("qep", t_.qep_s);
    t.Set("peakBuffersGb", t_.peak_buffers_gb);
    r.Set("times", t);
    return r;
  }

 private:
  Session* s_;
  Napi::Reference<Napi::Value> ref_;
  gfc::LayerDims d_;
  int slot_ = 0;
  gfc::LayerQuantOptions o_;
  std::vector<gfc::LinearOut> out_;
  gfc::LayerTimes t_;
};

Napi::Value SessionFree(const Napi::CallbackInfo& info) {
  arg_count(info, "cudaSessionFree", 1);
  Session* s = session_arg(info.Env(), info[0]);
  std::lock_guard<std::mutex> lock(g_mu);
  s->x.release();
  s->xf.release();
  for (auto& slot : s->slots) slot.free();
  return info.Env().Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  arg_count(info, "cudaInfo", 0);
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  o.Set("devices", e == cudaSuccess ? n : 0);
  if (e != cudaSuccess) o.Set("error", cudaGetErrorString(e));
  if (e == cudaSuccess && n > 0) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) {
      o.Set("name", p.name);
      o.Set("totalMemory", (double)p.totalGlobalMem);
    }
  }
  return o;
}

}  // namespace

void RegisterCuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaBuilt", true);
  exports.Set("cudaInfo", Napi::Function::New(env, sync<Info>));
  exports.Set("cudaGptqQuantize", Napi::Function::New(env, start<CudaGptqQuantize>));
  exports.Set("cudaSessionCreate", Napi::Function::New(env, start<CudaSessionCreate>));
  exports.Set("cudaSessionRead", Napi::Function::New(env, start<CudaSessionRead>));
  exports.Set("cudaQuantizeLayer", Napi::Function::New(env, start<CudaQuantizeLayer>));
  exports.Set("cudaSessionFree", Napi::Function::New(env, sync<SessionFree>));
  RegisterCudaWeights(env, exports);
  RegisterCudaEval(env, exports);
}

}  // namespace gfb
