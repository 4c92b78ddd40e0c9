// Bindings of the CPU Llama forward: every function returns a promise (PromiseWorker).
#include <cstring>
#include <stdexcept>
#include <vector>

#include "../kernels/cpu/gemm.h"
#include "../kernels/cpu/half.h"
#include "../kernels/cpu/llama.h"
#include "../kernels/cpu/parallel.h"
#include "../kernels/cpu/peak.h"
#include "bindings.h"
#include "enums.h"
#include "layer.h"
#include "util.h"

namespace gfb {
namespace {

// NaN/Inf tests on the bits (immune to any fast-math flag): exponent bits all ones.
inline bool f32_non_finite(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return (b & 0x7f800000u) == 0x7f800000u;
}

// Non-finite values among n floats, counted on worker threads.
inline int64_t count_non_finite_f32(const float* x, int64_t n) {
  const int64_t chunk = 1 << 18, chunks = (n + chunk - 1) / chunk;
  std::vector<int64_t> bad(chunks, 0);
  gf::parallel_for(chunks, [&](int64_t c) {
    const int64_t i0 = c * chunk, i1 = std::min(n, i0 + chunk);
    int64_t k = 0;
    for (int64_t i = i0; i < i1; ++i) k += f32_non_finite(x[i]);
    bad[c] = k;
  });
  int64_t total = 0;
  for (int64_t v : bad) total += v;
  return total;
}

// nonFinite(src: Uint16Array (dtype 'F16' | 'BF16') | Float32Array ('F32'), dtype) → NaN/Inf count
class NonFinite : public PromiseWorker {
 public:
  NonFinite(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    arg_count(info, "nonFinite", 2);
    kind_ = choice_at(info, 1, "dtype", dtype_names());
    if (kind_ == kDtypeF32) f32_ = typed_at<float>(info, 0, "src");
    else u16_ = typed_at<uint16_t>(info, 0, "src");
  }
  void Run() override {
    if (kind_ == kDtypeF32) {
      non_finite_ = count_non_finite_f32(f32_.data, (int64_t)f32_.length);
      return;
    }
    const uint16_t mask = kind_ == kDtypeF16 ? 0x7c00 : 0x7f80;
    const int64_t n = (int64_t)u16_.length, chunk = 1 << 18, chunks = (n + chunk - 1) / chunk;
    std::vector<int64_t> bad(chunks, 0);
    gf::parallel_for(chunks, [&](int64_t c) {
      const int64_t i0 = c * chunk, i1 = std::min(n, i0 + chunk);
      int64_t k = 0;
      for (int64_t i = i0; i < i1; ++i) k += (u16_.data[i] & mask) == mask;
      bad[c] = k;
    });
    for (int64_t v : bad) non_finite_ += v;
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, (double)non_finite_); }

 private:
  int kind_ = 0;
  Held<uint16_t> u16_;
  Held<float> f32_;
  int64_t non_finite_ = 0;
};

// bf16ToF32(src: Uint16Array, dst: Float32Array) → number of non-finite values (NaN/Inf)
class Bf16ToF32 : public PromiseWorker {
 public:
  Bf16ToF32(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    arg_count(info, "bf16ToF32", 2);
    src_ = typed_at<uint16_t>(info, 0, "src");
    dst_ = typed_at<float>(info, 1, "dst", (int64_t)src_.length);
  }
  void Run() override {
    const int64_t n = (int64_t)src_.length, chunk = 1 << 18, chunks = (n + chunk - 1) / chunk;
    std::vector<int64_t> bad(chunks, 0);
    gf::parallel_for(chunks, [&](int64_t c) {
      const int64_t i0 = c * chunk, i1 = std::min(n, i0 + chunk);
      int64_t k = 0;
      for (int64_t i = i0; i < i1; ++i) {
        const uint32_t b = (uint32_t)src_.data[i] << 16;
        std::memcpy(dst_.data + i, &b, 4);
        k += (src_.data[i] & 0x7f80) == 0x7f80;
      }
      bad[c] = k;
    });
    for (int64_t v : bad) non_finite_ += v;
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, (double)non_finite_); }

 private:
  Held<uint16_t> src_;
  Held<float> dst_;
  int64_t non_finite_ = 0;
};

// f16ToF32(src: Uint16Array, dst: Float32Array) → number of non-finite values (NaN/Inf)
class F16ToF32 : public PromiseWorker {
 public:
  F16ToF32(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    arg_count(info, "f16ToF32", 2);
    src_ = typed_at<uint16_t>(info, 0, "src");
    dst_ = typed_at<float>(info, 1, "dst", (int64_t)src_.length);
  }
  void Run() override {
    const int64_t n = (int64_t)src_.length, chunk = 1 << 20;
    gf::parallel_for((n + chunk - 1) / chunk, [&](int64_t c) {
      const int64_t i0 = c * chunk;
      gf::halves_to_floats(src_.data + i0, dst_.data + i0, std::min(chunk, n - i0));
    });
    // fp16 NaN/Inf: exponent bits all ones.
    for (int64_t i = 0; i < n; ++i) non_finite_ += (src_.data[i] & 0x7c00) == 0x7c00;
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, (double)non_finite_); }

 private:
  Held<uint16_t> src_;
  Held<float> dst_;
  int64_t non_finite_ = 0;
};

// f32ToF16(src: Float32Array, dst: Uint16Array) → how many values were not exact in fp16.
class F32ToF16 : public PromiseWorker {
 public:
  F32ToF16(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    arg_count(info, "f32ToF16", 2);
    src_ = typed_at<float>(info, 0, "src");
    dst_ = typed_at<uint16_t>(info, 1, "dst", (int64_t)src_.length);
  }
  void Run() override {
    const int64_t n = (int64_t)src_.length, chunk = 1 << 20, chunks = (n + chunk - 1) / chunk;
    std::vector<int64_t> inexact(chunks, 0);
    gf::parallel_for(chunks, [&](int64_t c) {
      const int64_t i0 = c * chunk;
      inexact[c] = gf::floats_to_halves(src_.data + i0, dst_.data + i0, std::min(chunk, n - i0));
    });
    for (int64_t v : inexact) inexact_ += v;
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, (double)inexact_); }

 private:
  Held<float> src_;
  Held<uint16_t> dst_;
  int64_t inexact_ = 0;
};

// embed(ids: Int32Array [W*S], table: Float32Array [V*H], vocab, windows: Float32Array[] of [S*H])
class Embed : public PromiseWorker {
 public:
  Embed(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "embed", 4);
    ids_ = typed_at<int32_t>(info, 0, "ids");
    vocab_ = int_at(info, 2, "vocab", 1);
    table_ = typed_at<float>(info, 1, "table");
    if (table_.length % vocab_ != 0)
      range_error(env, "table", "a multiple of vocab (" + std::to_string(vocab_) + ") elements", std::to_string(table_.length));
    hidden_ = (int64_t)table_.length / vocab_;
    const size_t windows = array_value(env, info[3], "windows").Length();
    if (windows == 0 || ids_.length % windows != 0)
      range_error(env, "ids", "windows × seqlen ids (" + std::to_string(windows) + " windows)", std::to_string(ids_.length));
    seqlen_ = (int64_t)ids_.length / windows;
    windows_ = windows_arg(env, info[3], elements(env, "windows", {seqlen_, hidden_}));
  }
  void Run() override {
    for (size_t i = 0; i < ids_.length; ++i)
      if (ids_.data[i] < 0 || ids_.data[i] >= vocab_)
        throw std::runtime_error("token id " + std::to_string(ids_.data[i]) +
                                 " is outside the vocabulary (" + std::to_string(vocab_) + ")");
    gf::parallel_for((int64_t)ids_.length, [&](int64_t t) {
      float* dst = windows_[t / seqlen_].data + (t % seqlen_) * hidden_;
      std::memcpy(dst, table_.data + (int64_t)ids_.data[t] * hidden_, hidden_ * sizeof(float));
    });
  }

 private:
  Held<int32_t> ids_;
  Held<float> table_;
  int64_t vocab_ = 0, hidden_ = 0, seqlen_ = 0;
  std::vector<Held<float>> windows_;
};

// decoderLayer(windows: Float32Array[] of [S*H], weights: {...Float32Array}, dims, seqlen)
//   → number of NaN/Inf values in the windows after the layer
class DecoderLayer : public PromiseWorker {
 public:
  DecoderLayer(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "decoderLayer", 4);
    d_ = dims_arg(env, info[2]);
    seqlen_ = int_at(info, 3, "seqlen", 2);
    windows_ = windows_arg(env, info[0], elements(env, "windows", {seqlen_, d_.hidden}));
    layer_arg(env, info[1], d_, layer_);
  }
  void Run() override {
    for (auto& w : windows_) {
      gf::decoder_layer_window(d_, layer_.w, seqlen_, w.data);
      non_finite_ += count_non_finite_f32(w.data, (int64_t)w.length);
    }
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, (double)non_finite_); }

 private:
  gf::LlamaDims d_;
  HeldLayer layer_;
  int64_t seqlen_ = 0, non_finite_ = 0;
  std::vector<Held<float>> windows_;
};

// windowNll(windows: Float32Array[], ids: Int32Array [W*S], norm: Float32Array [H],
//           lmHead: Float32Array [V*H], dims, seqlen)
//   → { nll: Float32Array [W*(S-1)], argmax: Int32Array [W*S], nonFinite: NaN/Inf NLL values }
class WindowNll : public PromiseWorker {
 public:
  WindowNll(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "windowNll", 6);
    d_ = dims_arg(env, info[4]);
    seqlen_ = int_at(info, 5, "seqlen", 2);
    windows_ = windows_arg(env, info[0], elements(env, "windows", {seqlen_, d_.hidden}));
    ids_ = typed_at<int32_t>(info, 1, "ids", elements(env, "ids", {(int64_t)windows_.size(), seqlen_}));
    norm_ = typed_at<float>(info, 2, "norm", d_.hidden);
    head_ = typed_at<float>(info, 3, "lmHead");
    if (head_.length == 0 || head_.length % d_.hidden != 0)
      range_error(env, "lmHead", "a multiple of hidden (" + std::to_string(d_.hidden) + ") elements", std::to_string(head_.length));
    vocab_ = (int64_t)head_.length / d_.hidden;
    nll_.resize(windows_.size() * (seqlen_ - 1));
    argmax_.resize(windows_.size() * seqlen_);
  }
  void Run() override {
    for (size_t i = 0; i < ids_.length; ++i)
      if (ids_.data[i] < 0 || ids_.data[i] >= vocab_)
        throw std::runtime_error("target id outside the vocabulary");
    for (size_t w = 0; w < windows_.size(); ++w)
      gf::window_nll(d_, vocab_, seqlen_, windows_[w].data, norm_.data, head_.data,
                     ids_.data + w * seqlen_, nll_.data() + w * (seqlen_ - 1),
                     argmax_.data() + w * seqlen_);
    non_finite_ = count_non_finite_f32(nll_.data(), (int64_t)nll_.size());
  }
  Napi::Value Result(Napi::Env env) override {
    auto nll = Napi::Float32Array::New(env, nll_.size());
    std::memcpy(nll.Data(), nll_.data(), nll_.size() * sizeof(float));
    auto argmax = Napi::Int32Array::New(env, argmax_.size());
    std::memcpy(argmax.Data(), argmax_.data(), argmax_.size() * sizeof(int32_t));
    Napi::Object out = Napi::Object::New(env);
    out.Set("nll", nll);
    out.Set("argmax", argmax);
    out.Set("nonFinite", Napi::Number::New(env, (double)non_finite_));
    return out;
  }

 private:
  gf::LlamaDims d_;
  int64_t seqlen_ = 0, vocab_ = 0, non_finite_ = 0;
  std::vector<Held<float>> windows_;
  Held<int32_t> ids_;
  Held<float> norm_, head_;
  std::vector<float> nll_;
  std::vector<int32_t> argmax_;
};

// gemmNt(A: [M*K], B: [N*K], M, N, K, variant: 'reference' | 'tiled' | 'parallel' (tiled+threads))
class GemmNt : public PromiseWorker {
 public:
  GemmNt(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "gemmNt", 6);
    M_ = int_at(info, 2, "M");
    N_ = int_at(info, 3, "N");
    K_ = int_at(info, 4, "K");
    variant_ = choice_at(info, 5, "variant", gemm_variant_names());
    a_ = typed_at<float>(info, 0, "A", elements(env, "A", {M_, K_}));
    b_ = typed_at<float>(info, 1, "B", elements(env, "B", {N_, K_}));
    c_.resize(elements(env, "C", {M_, N_}));
  }
  void Run() override {
    auto f = variant_ == kGemmReference ? gf::gemm_nt_ref : variant_ == kGemmTiled ? gf::gemm_nt : gf::gemm_nt_parallel;
    f(M_, N_, K_, a_.data, K_, b_.data, K_, c_.data(), N_, false);
  }
  Napi::Value Result(Napi::Env env) override {
    auto out = Napi::Float32Array::New(env, c_.size());
    std::memcpy(out.Data(), c_.data(), c_.size() * sizeof(float));
    return out;
  }

 private:
  int64_t M_ = 0, N_ = 0, K_ = 0;
  int variant_ = 0;
  Held<float> a_, b_;
  std::vector<float> c_;
};

// peakFlops(seconds) → measured fp32 FLOP/s over all worker threads
class PeakFlops : public PromiseWorker {
 public:
  PeakFlops(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    arg_count(info, "peakFlops", 1);
    seconds_ = number_at(info, 0, "seconds");
    if (!(seconds_ > 0 && seconds_ <= 60)) range_error(info.Env(), "seconds", "a duration in (0, 60]", number_text(seconds_));
  }
  void Run() override { flops_ = gf::measure_fp32_peak(seconds_); }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, flops_); }

 private:
  double seconds_ = 1, flops_ = 0;
};

}  // namespace

void RegisterForward(Napi::Env env, Napi::Object exports) {
  exports.Set("f16ToF32", Napi::Function::New(env, start<F16ToF32>));
  exports.Set("f32ToF16", Napi::Function::New(env, start<F32ToF16>));
  exports.Set("bf16ToF32", Napi::Function::New(env, start<Bf16ToF32>));
  exports.Set("nonFinite", Napi::Function::New(env, start<NonFinite>));
  exports.Set("embed", Napi::Function::New(env, start<Embed>));
  exports.Set("decoderLayer", Napi::Function::New(env, start<DecoderLayer>));
  exports.Set("windowNll", Napi::Function::New(env, start<WindowNll>));
  exports.Set("gemmNt", Napi::Function::New(env, start<GemmNt>));
  exports.Set("peakFlops", Napi::Function::New(env, start<PeakFlops>));
  export_enum(env, exports, "dtype", dtype_names());
  export_enum(env, exports, "gemmVariant", gemm_variant_names());
}

}  // namespace gfb
