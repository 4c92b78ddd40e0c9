// Bindings of the AutoGPTQ v1 packing kernels (kernels/cpu/pack.h); every function returns a
// promise (PromiseWorker). Output arrays are allocated here, on the JS thread, and filled by Run().
#include <stdexcept>
#include <string>

#include "../kernels/cpu/pack.h"
#include "bindings.h"
#include "enums.h"
#include "util.h"

namespace gfb {
namespace {

// bits, K, N as the kernels require them (the TypeScript wrapper checks first).
void layout_args(const Napi::Env& env, const Napi::CallbackInfo& info, size_t at, int& bits,
                 int64_t& K, int64_t& N) {
  bits = (int)int_at(info, at, "bits", 2, 8);
  K = int_at(info, at + 1, "K", 1);
  N = int_at(info, at + 2, "N", 1);
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) range_error(env, "bits", "2, 3, 4 or 8", std::to_string(bits));
  if (K % 32 != 0) range_error(env, "K", "a positive multiple of 32", std::to_string(K));
  if (N % 32 != 0) range_error(env, "N", "a positive multiple of 32", std::to_string(N));
  elements(env, "K × N", {K, N});
}

template <class T, class A>
Held<T> new_array(const Napi::Env& env, int64_t n, const char* what) {
  return hold<T>(env, A::New(env, (size_t)n), what);
}

// packGptq(codes: Uint8Array [N*K], zeros: Int32Array [G*N], bits, K, N, variant: 'reference' | 'optimised')
//   → { qweight: Int32Array [K*bits/32 * N], qzeros: Int32Array [G * N*bits/32], wrappedZeros }
class PackGptq : public PromiseWorker {
 public:
  PackGptq(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "packGptq", 6);
    layout_args(env, info, 2, bits_, K_, N_);
    reference_ = choice_at(info, 5, "variant", pack_variant_names()) == kPackReference;
    codes_ = typed_at<uint8_t>(info, 0, "codes", N_ * K_);
    zeros_ = typed_at<int32_t>(info, 1, "zeros");
    if (zeros_.length == 0 || zeros_.length % N_ != 0)
      range_error(env, "zeros", "G × N (N = " + std::to_string(N_) + ") elements", std::to_string(zeros_.length));
    G_ = (int64_t)zeros_.length / N_;
    qweight_ = new_array<int32_t, Napi::Int32Array>(env, gf::qweight_words(K_, N_, bits_),
                                                    "qweight");
    qzeros_ = new_array<int32_t, Napi::Int32Array>(env, gf::qzeros_words(G_, N_, bits_),
                                                   "qzeros");
  }
  void Run() override {
    if (reference_) {
      gf::pack_qweight_ref(codes_.data, N_, K_, bits_, qweight_.data);
      wrapped_ = gf::pack_qzeros_ref(zeros_.data, G_, N_, bits_, qzeros_.data);
    } else {
      gf::pack_qweight(codes_.data, N_, K_, bits_, qweight_.data);
      wrapped_ = gf::pack_qzeros(zeros_.data, G_, N_, bits_, qzeros_.data);
    }
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("qweight", qweight_.ref.Value());
    out.Set("qzeros", qzeros_.ref.Value());
    out.Set("wrappedZeros", Napi::Number::New(env, (double)wrapped_));
    return out;
  }

 private:
  int bits_ = 0;
  int64_t K_ = 0, N_ = 0, G_ = 0, wrapped_ = 0;
  bool reference_ = false;
  Held<uint8_t> codes_;
  Held<int32_t> zeros_, qweight_, qzeros_;
};

// unpackGptq(qweight, qzeros, bits, K, N, G)
//   → { codes: Uint8Array [N*K], zeros: Int32Array [G*N] (stored zero + 1) }
class UnpackGptq : public PromiseWorker {
 public:
  UnpackGptq(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "unpackGptq", 6);
    layout_args(env, info, 2, bits_, K_, N_);
    G_ = int_at(info, 5, "G", 1);
    elements(env, "G × N", {G_, N_});
    qweight_ = typed_at<int32_t>(info, 0, "qweight", gf::qweight_words(K_, N_, bits_));
    qzeros_ = typed_at<int32_t>(info, 1, "qzeros", gf::qzeros_words(G_, N_, bits_));
    codes_ = new_array<uint8_t, Napi::Uint8Array>(env, N_ * K_, "codes");
    zeros_ = new_array<int32_t, Napi::Int32Array>(env, G_ * N_, "zeros");
  }
  void Run() override {
    gf::unpack_qweight(qweight_.data, K_, N_, bits_, codes_.data);
    gf::unpack_qzeros(qzeros_.data, G_, N_, bits_, zeros_.data);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("codes", codes_.ref.Value());
    out.Set("zeros", zeros_.ref.Value());
    return out;
  }

 private:
  int bits_ = 0;
  int64_t K_ = 0, N_ = 0, G_ = 0;
  Held<int32_t> qweight_, qzeros_, zeros_;
  Held<uint8_t> codes_;
};

// dequantizeGptq(qweight, qzeros, scales: Uint16Array [G*N], gIdx: Int32Array [K], bits, K, N,
//                round16, variant: 'reference' | 'optimised') → Float32Array [N*K]
class DequantizeGptq : public PromiseWorker {
 public:
  DequantizeGptq(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "dequantizeGptq", 9);
    layout_args(env, info, 4, bits_, K_, N_);
    round16_ = bool_at(info, 7, "round16");
    reference_ = choice_at(info, 8, "variant", pack_variant_names()) == kPackReference;
    scales_ = typed_at<uint16_t>(info, 2, "scales");
    if (scales_.length == 0 || scales_.length % N_ != 0)
      range_error(env, "scales", "G × N (N = " + std::to_string(N_) + ") elements", std::to_string(scales_.length));
    G_ = (int64_t)scales_.length / N_;
    qweight_ = typed_at<int32_t>(info, 0, "qweight", gf::qweight_words(K_, N_, bits_));
    qzeros_ = typed_at<int32_t>(info, 1, "qzeros", gf::qzeros_words(G_, N_, bits_));
    g_idx_ = typed_at<int32_t>(info, 3, "gIdx", K_);
    w_ = new_array<float, Napi::Float32Array>(env, N_ * K_, "w");
  }
  void Run() override {
    auto f = reference_ ? gf::dequantize_gptq_ref : gf::dequantize_gptq;
    f(qweight_.data, qzeros_.data, scales_.data, g_idx_.data, K_, N_, G_, bits_, round16_,
      w_.data);
  }
  Napi::Value Result(Napi::Env) override { return w_.ref.Value(); }

 private:
  int bits_ = 0;
  int64_t K_ = 0, N_ = 0, G_ = 0;
  bool round16_ = false, reference_ = false;
  Held<int32_t> qweight_, qzeros_, g_idx_;
  Held<uint16_t> scales_;
  Held<float> w_;
};

}  // namespace

void RegisterPack(Napi::Env env, Napi::Object exports) {
  exports.Set("packGptq", Napi::Function::New(env, start<PackGptq>));
  exports.Set("unpackGptq", Napi::Function::New(env, start<UnpackGptq>));
  exports.Set("dequantizeGptq", Napi::Function::New(env, start<DequantizeGptq>));
  export_enum(env, exports, "packVariant", pack_variant_names());
}

}  // namespace gfb
