// Bindings of the CUDA inference path (perplexity), compiled with the CUDA engine only. The
// hidden states of every window stay on the GPU in fp16; each decoder layer's tensors come
// through two pinned host slots, each mirrored by a device arena: cudaEvalLoad fills one (read
// on native threads, then copied on its own stream) while the layer in the other is computed.
// One coarse call per job, each an AsyncWorker:
//   cudaEvalCreate(ids, dims, seqlen, slotBytes, chunkWindows) → session
//       ids Int32Array [T] (T a whole number of windows); dims { hidden, ffn, heads, kvHeads,
//       headDim, eps, ropeTheta, vocab }. Allocates everything the run needs at once, or says
//       what does not fit in the card's free memory.
//   cudaEvalLoad(session, slot, entries) → Promise<number[]> (non-finite values per entry)
//       entries { at (byte offset in the slot, a multiple of 16), count, dtype: F16 | BF16 |
//       F32 | I32, file, offset } or { at, count, dtype, data }; floats land as fp16, I32 as is.
//   cudaEvalEmbed(session, slot, tableAt) → Promise<{ badIds, seconds }>
//   cudaEvalLayer(session, slot, layout) → Promise<{ nonFinite, badGroups, nonFiniteWeights,
//       times { gemm, attention, other, dequant }, flops { gemm, attention }, deviceUsedGb }>
//       layout { bits, linears: 7 × ({ at } | { qweight, qzeros, scales, gIdx, groups }) in
//       the order q, k, v, o, gate, up, down, inputNorm, postNorm }
//   cudaEvalHead(session, slot, normAt, headAt) → Promise<{ nll: Float64Array [T], nonFinite,
//       seconds, flops, deviceUsedGb }>: per token −log p(next token), 0 at each window's end
//   cudaEvalFree(session)  (sync) frees the GPU and pinned memory now
// Layer, embed and head calls take the process's CUDA lock; a load takes none (its slot is
// never the one in use: the TypeScript wrapper orders the calls).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "../kernels/cuda/dequant.h"
#include "../kernels/cuda/eval_ops.h"
#include "../kernels/cuda/forward.h"
#include "../kernels/cuda/llama.h"
#include "cuda_session.h"
#include "host_read.h"
#include "util.h"

namespace gfb {
namespace {

constexpr int kLinears = 7;  // q, k, v, o, gate, up, down
const char* const kLinearNames[kLinears] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

struct EvalSlot {
  uint8_t* host = nullptr;  // pinned
  gfc::DevBuf<uint8_t> dev;
};

struct EvalSession {
  gfc::LayerDims d{};
  int64_t vocab = 0, S = 0, T = 0, slot_bytes = 0, head_rows = 0;
  gfc::DevBuf<__half> x, qkv, o, gu, down, logits;
  gfc::DevBuf<int32_t> ids, targets;
  gfc::DevBuf<double> nll;
  gfc::DevBuf<int> flags;
  gfc::ForwardScratch scratch;
  EvalSlot slots[2];
  cudaStream_t copy = nullptr;
  std::unique_ptr<gfc::StageClock> clock;
  bool alive = true;

  void release() {
    for (auto& s : slots) {
      if (s.host) cudaFreeHost(s.host);
      s.host = nullptr;
      s.dev.release();
    }
    if (copy) cudaStreamDestroy(copy);
    copy = nullptr;
    clock.reset();
    x.release(); qkv.release(); o.release(); gu.release(); down.release(); logits.release();
    ids.release(); targets.release(); nll.release(); flags.release();
    scratch = gfc::ForwardScratch();
    alive = false;
  }
  ~EvalSession() { release(); }
};

// The type tag of an eval session handle: a quantizer session (or any other external) is not one.
constexpr napi_type_tag kEvalSessionTag{0x6770747166657661ULL, 0x4576616c53657301ULL};

EvalSession* eval_arg(const Napi::Env& env, const Napi::Value& v) {
  if (!v.IsExternal() || !v.As<Napi::External<EvalSession>>().CheckTypeTag(&kEvalSessionTag))
    type_error(env, "session", "a CUDA eval session", v);
  EvalSession* s = v.As<Napi::External<EvalSession>>().Data();
  if (!s->alive) throw Napi::Error::New(env, "session: already freed");
  return s;
}

int slot_arg(const Napi::CallbackInfo& info, size_t i) { return (int)int_at(info, i, "slot", 0, 1); }

std::string gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
  return buf;
}

int64_t qkv_rows(const gfc::LayerDims& d) { return (d.heads + 2 * d.kv_heads) * d.head_dim; }

// [N, K] of linear i (q, k, v, o, gate, up, down).
std::array<int64_t, 2> linear_shape(const gfc::LayerDims& d, int i) {
  const int64_t QD = d.heads * d.head_dim, KVD = d.kv_heads * d.head_dim;
  switch (i) {
    case 0: return {QD, d.hidden};
    case 1: case 2: return {KVD, d.hidden};
    case 3: return {d.hidden, QD};
    case 4: case 5: return {d.ffn, d.hidden};
    default: return {d.hidden, d.ffn};
  }
}

class EvalCreate : public PromiseWorker {
 public:
  EvalCreate(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaEvalCreate", 5);
    ids_ = typed_at<int32_t>(info, 0, "ids");
    d_ = layer_dims_arg(env, info[1]);
    vocab_ = int_arg(env, object_value(env, info[1], "dims"), "vocab", "dims", 1);
    elements(env, "dims", {vocab_, d_.hidden, 2});
    S_ = int_at(info, 2, "seqlen", 2);
    slot_bytes_ = int_at(info, 3, "slotBytes", 1);
    chunk_windows_ = int_at(info, 4, "chunkWindows", 1);
    T_ = (int64_t)ids_.length;
    if (S_ < 2 || T_ == 0 || T_ % S_) throw Napi::RangeError::New(env, "ids: expected a whole number of windows of seqlen");
    if (d_.hidden <= 0 || d_.hidden % 8 || d_.ffn % 8 || d_.heads <= 0 || d_.kv_heads <= 0 || d_.heads % d_.kv_heads ||
        d_.head_dim % 8 || vocab_ <= 0)
      throw Napi::RangeError::New(env, "dims: unsupported layer dimensions");
    if (slot_bytes_ <= 0 || slot_bytes_ % 256) throw Napi::RangeError::New(env, "slotBytes: expected a positive multiple of 256");
    if (chunk_windows_ <= 0) throw Napi::RangeError::New(env, "chunkWindows: expected a positive integer");
  }

  void Run() override {
    std::lock_guard<std::mutex> lock(cuda_mutex());
    gfc::Context& ctx = cuda_context();
    const gfc::LayerDims& d = d_;
    const int64_t tc = std::min(T_, chunk_windows_ * S_), hc = std::min<int64_t>(tc, 4096);
    const double H = (double)d.hidden;
    const double states = 2.0 * T_ * H + 16.0 * T_;  // x, ids, targets, nll
    const double slots = 2.0 * slot_bytes_;
    const double weights = 2.0 * H * (qkv_rows(d) + d.heads * d.head_dim + 3.0 * d.ffn);
    const double work = gfc::ForwardScratch::bytes(d, S_, tc) + 2.0 * hc * vocab_;
    const double need = states + slots + weights + work + 0.5e9;  // + cuBLAS workspaces and slack
    size_t free = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free, &total));
    if (need > (double)free) {
      cudaDeviceProp p;
      CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
      throw std::runtime_error(
          std::string("the model does not fit on the GPU (") + p.name + "): it needs about " + gb(need) +
          " (hidden states of " + std::to_string(T_) + " tokens " + gb(states) + ", two weight slots " + gb(slots) +
          ", one layer's fp16 weights " + gb(weights) + ", work buffers " + gb(work) + "), and " + gb((double)free) +
          " of its " + gb((double)total) + " are free; evaluate fewer windows (--max-windows) or use --device cpu");
    }
    auto s = std::make_unique<EvalSession>();
    s->d = d;
    s->vocab = vocab_;
    s->S = S_;
    s->T = T_;
    s->slot_bytes = slot_bytes_;
    s->head_rows = hc;
    s->x.alloc(T_ * d.hidden);
    s->ids.alloc(T_);
    s->targets.alloc(T_);
    s->nll.alloc(T_);
    s->flags.alloc(4);
    s->qkv.alloc(qkv_rows(d) * d.hidden);
    s->o.alloc(d.hidden * d.heads * d.head_dim);
    s->gu.alloc(2 * d.ffn * d.hidden);
    s->down.alloc(d.hidden * d.ffn);
    s->logits.alloc(hc * vocab_);
    s->scratch.alloc(d, S_, tc);
    for (auto& slot : s->slots) {
      CUDA_CHECK(cudaHostAlloc((void**)&slot.host, (size_t)slot_bytes_, cudaHostAllocDefault));
      slot.dev.alloc((size_t)slot_bytes_);
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&s->copy, cudaStreamNonBlocking));
    s->clock = std::make_unique<gfc::StageClock>(ctx);
    std::vector<int32_t> tg(T_);
    for (int64_t t = 0; t < T_; ++t) tg[t] = t % S_ == S_ - 1 ? -1 : ids_.data[t + 1];
    CUDA_CHECK(cudaMemcpyAsync(s->ids.get(), ids_.data, T_ * 4, cudaMemcpyHostToDevice, ctx.stream));
    CUDA_CHECK(cudaMemcpyAsync(s->targets.get(), tg.data(), T_ * 4, cudaMemcpyHostToDevice, ctx.stream));
    ctx.sync();
    s_ = std::move(s);
  }

  Napi::Value Result(Napi::Env env) override {
    auto handle = Napi::External<EvalSession>::New(env, s_.release(), [](Napi::Env, EvalSession* s) {
      std::lock_guard<std::mutex> lock(cuda_mutex());
      delete s;
    });
    handle.TypeTag(&kEvalSessionTag);  // eval_arg accepts only these
    return handle;
  }

 private:
  Held<int32_t> ids_;
  gfc::LayerDims d_{};
  int64_t vocab_ = 0, S_ = 0, T_ = 0, slot_bytes_ = 0, chunk_windows_ = 0;
  std::unique_ptr<EvalSession> s_;
};

class EvalLoad : public PromiseWorker {
 public:
  EvalLoad(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaEvalLoad", 3);
    s_ = eval_arg(env, info[0]);
    ref_ = Napi::Persistent(info[0]);
    slot_ = slot_arg(info, 1);
    Napi::Array a = array_value(env, info[2], "entries");
    src_.resize(a.Length());
    refs_.resize(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const std::string what = "entries[" + std::to_string(i) + "]";
      Napi::Object o = object_value(env, a.Get(i), what);
      Source& e = src_[i];
      const int64_t at = int_arg(env, o, "at", what.c_str());
      e.count = int_arg(env, o, "count", what.c_str(), 1);
      e.dtype = (Dtype)choice_value(env, o.Get("dtype"), what + ".dtype", eval_dtype_names());
      const int64_t end = at + elements(env, what, {e.count, (int64_t)stored_bytes(e.dtype)});
      if (at % 16 || end > s_->slot_bytes)
        throw Napi::RangeError::New(env, what + ": bytes [" + std::to_string(at) + ", " + std::to_string(end) +
                                             ") are not 16-byte aligned within the slot's " + std::to_string(s_->slot_bytes));
      used_ = std::max(used_, end);
      e.dst = s_->slots[slot_].host + at;
      const Napi::Value file = o.Get("file");
      if (!file.IsUndefined()) {
        e.file = string_value(env, file, what + ".file");
        e.offset = int_arg(env, o, "offset", what.c_str());
      } else {
        Napi::Value dv = o.Get("data");
        if (!dv.IsTypedArray()) type_error(env, what + ".data", "a typed array (or a file)", dv);
        Napi::TypedArray t = dv.As<Napi::TypedArray>();
        if ((int64_t)t.ByteLength() != e.count * (int64_t)dtype_bytes(e.dtype))
          range_error(env, what + ".data", std::to_string(e.count * dtype_bytes(e.dtype)) + " bytes",
                      std::to_string(t.ByteLength()));
        e.data = (const uint8_t*)t.ArrayBuffer().Data() + t.ByteOffset();
        refs_[i] = Napi::Persistent(dv);
      }
    }
  }

  void Run() override {
    bad_ = fill_sources(src_);
    EvalSlot& slot = s_->slots[slot_];
    CUDA_CHECK(cudaMemcpyAsync(slot.dev.get(), slot.host, (size_t)used_, cudaMemcpyHostToDevice, s_->copy));
    CUDA_CHECK(cudaStreamSynchronize(s_->copy));
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, bad_.size());
    for (size_t i = 0; i < bad_.size(); ++i) out.Set((uint32_t)i, (double)bad_[i]);
    return out;
  }

 private:
  EvalSession* s_;
  Napi::Reference<Napi::Value> ref_;
  int slot_ = 0;
  int64_t used_ = 0;
  std::vector<Source> src_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
  std::vector<int64_t> bad_;
};

// Reads the session's 4 flags and clears them.
std::array<int, 4> take_flags(gfc::Context& ctx, EvalSession& s) {
  std::array<int, 4> f{};
  CUDA_CHECK(cudaMemcpyAsync(f.data(), s.flags.get(), sizeof f, cudaMemcpyDeviceToHost, ctx.stream));
  CUDA_CHECK(cudaMemsetAsync(s.flags.get(), 0, sizeof f, ctx.stream));
  ctx.sync();
  return f;
}

// A byte offset in a slot: `bytes` at `v` (named `name`), 16-byte aligned within the slot.
int64_t offset_value(const Napi::Env& env, const Napi::Value& v, const std::string& name, int64_t bytes,
                     int64_t slot_bytes) {
  const int64_t at = int_value(env, v, name);
  if (at % 16 || at + bytes > slot_bytes)
    range_error(env, name, std::to_string(bytes) + " bytes 16-byte aligned within the slot's " + std::to_string(slot_bytes),
                std::to_string(at));
  return at;
}

int64_t offset_arg(const Napi::Env& env, const Napi::Object& o, const char* key, int64_t bytes, int64_t slot_bytes) {
  return offset_value(env, o.Get(key), key, bytes, slot_bytes);
}

class EvalEmbed : public PromiseWorker {
 public:
  EvalEmbed(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaEvalEmbed", 3);
    s_ = eval_arg(env, info[0]);
    ref_ = Napi::Persistent(info[0]);
    slot_ = slot_arg(info, 1);
    at_ = offset_value(env, info[2], "tableAt", s_->vocab * s_->d.hidden * 2, s_->slot_bytes);
  }
  void Run() override {
    std::lock_guard<std::mutex> lock(cuda_mutex());
    gfc::Context& ctx = cuda_context();
    const auto t0 = std::chrono::steady_clock::now();
    take_flags(ctx, *s_);
    gfc::embed_rows(ctx, s_->T, s_->d.hidden, s_->vocab, s_->ids.get(),
                    (const __half*)(s_->slots[slot_].dev.get() + at_), s_->x.get(), s_->flags.get());
    bad_ = take_flags(ctx, *s_)[0];
    seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("badIds", bad_);
    r.Set("seconds", seconds_);
    return r;
  }

 private:
  EvalSession* s_;
  Napi::Reference<Napi::Value> ref_;
  int slot_ = 0, bad_ = 0;
  int64_t at_ = 0;
  double seconds_ = 0;
};

struct LinearPlace {
  bool quantized = false;
  int64_t at = 0, qweight = 0, qzeros = 0, scales = 0, g_idx = 0, groups = 1;
};

class EvalLayer : public PromiseWorker {
 public:
  EvalLayer(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaEvalLayer", 3);
    s_ = eval_arg(env, info[0]);
    ref_ = Napi::Persistent(info[0]);
    slot_ = slot_arg(info, 1);
    Napi::Object l = object_value(env, info[2], "layout");
    const int64_t sb = s_->slot_bytes, H = s_->d.hidden;
    Napi::Array lin = array_value(env, l.Get("linears"), "layout.linears");
    if (lin.Length() != kLinears)
      range_error(env, "layout.linears", "7 entries (q, k, v, o, gate, up, down)", std::to_string(lin.Length()));
    bits_ = l.Get("bits").IsUndefined() ? 16 : (int)int_arg(env, l, "bits", "layout", 2, 8);
    for (int i = 0; i < kLinears; ++i) {
      Napi::Object o = object_value(env, lin.Get(i), std::string("layout.linears[") + std::to_string(i) + "] (" + kLinearNames[i] + ")");
      const auto [N, K] = linear_shape(s_->d, i);
      LinearPlace& p = place_[i];
      p.quantized = o.Has("qweight");
      if (!p.quantized) {
        p.at = offset_arg(env, o, "at", N * K * 2, sb);
        continue;
      }
      if (bits_ != 2 && bits_ != 3 && bits_ != 4 && bits_ != 8) throw Napi::RangeError::New(env, "layout.bits: expected 2, 3, 4 or 8");
      if (K % 32 || N % 32) throw Napi::RangeError::New(env, std::string(kLinearNames[i]) + ": GPTQ needs N and K multiples of 32");
      p.groups = int_arg(env, o, "groups");
      if (p.groups <= 0 || p.groups > K) throw Napi::RangeError::New(env, std::string(kLinearNames[i]) + ".groups: expected 1 to K");
      p.qweight = offset_arg(env, o, "qweight", K * bits_ / 32 * N * 4, sb);
      p.qzeros = offset_arg(env, o, "qzeros", p.groups * (N * bits_ / 32) * 4, sb);
      p.scales = offset_arg(env, o, "scales", p.groups * N * 2, sb);
      p.g_idx = offset_arg(env, o, "gIdx", K * 4, sb);
    }
    input_norm_ = offset_arg(env, l, "inputNorm", H * 2, sb);
    post_norm_ = offset_arg(env, l, "postNorm", H * 2, sb);
  }

  void Run() override {
    std::lock_guard<std::mutex> lock(cuda_mutex());
    gfc::Context& ctx = cuda_context();
    EvalSession& s = *s_;
    const gfc::LayerDims& d = s.d;
    const int64_t QD = d.heads * d.head_dim, KVD = d.kv_heads * d.head_dim, H = d.hidden;
    const uint8_t* base = s.slots[slot_].dev.get();
    __half* dst[kLinears] = {s.qkv.get(), s.qkv.get() + QD * H, s.qkv.get() + (QD + KVD) * H, s.o.get(),
                             s.gu.get(), s.gu.get() + d.ffn * H, s.down.get()};
    take_flags(ctx, s);
    s.clock->begin(gfc::StageClock::kDequant);
    for (int i = 0; i < kLinears; ++i) {
      const auto [N, K] = linear_shape(d, i);
      const LinearPlace& p = place_[i];
      if (!p.quantized) {
        CUDA_CHECK(cudaMemcpyAsync(dst[i], base + p.at, (size_t)(N * K * 2), cudaMemcpyDeviceToDevice, ctx.stream));
      } else {
        gfc::dequantize_gptq(ctx, (const int32_t*)(base + p.qweight), (const int32_t*)(base + p.qzeros),
                             (const __half*)(base + p.scales), (const int32_t*)(base + p.g_idx), K, N, p.groups, bits_,
                             dst[i], K, s.flags.get() + 1);
      }
    }
    s.clock->end();
    const gfc::ForwardWeights w{s.qkv.get(), s.o.get(), s.gu.get(), s.down.get(),
                                (const __half*)(base + input_norm_), (const __half*)(base + post_norm_)};
    gfc::forward_layer(ctx, d, s.S, s.T, s.x.get(), w, s.scratch, *s.clock, flops_);
    gfc::count_nonfinite(ctx, s.T * H, s.x.get(), s.flags.get() + 3);
    times_ = s.clock->collect();
    const auto f = take_flags(ctx, s);
    bad_groups_ = f[1];
    non_finite_weights_ = f[2];
    non_finite_ = f[3];
    used_gb_ = gfc::device_used_gb();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("nonFinite", non_finite_);
    r.Set("badGroups", bad_groups_);
    r.Set("nonFiniteWeights", non_finite_weights_);
    Napi::Object t = Napi::Object::New(env);
    t.Set("gemm", times_[gfc::StageClock::kGemm]);
    t.Set("attention", times_[gfc::StageClock::kAttention]);
    t.Set("other", times_[gfc::StageClock::kOther]);
    t.Set("dequant", times_[gfc::StageClock::kDequant]);
    r.Set("times", t);
    Napi::Object fl = Napi::Object::New(env);
    fl.Set("gemm", flops_.gemm);
    fl.Set("attention", flops_.attention);
    r.Set("flops", fl);
    r.Set("deviceUsedGb", used_gb_);
    return r;
  }

 private:
  EvalSession* s_;
  Napi::Reference<Napi::Value> ref_;
  int slot_ = 0, bits_ = 16;
  std::array<LinearPlace, kLinears> place_{};
  int64_t input_norm_ = 0, post_norm_ = 0;
  gfc::ForwardFlops flops_;
  std::vector<double> times_;
  int bad_groups_ = 0, non_finite_weights_ = 0, non_finite_ = 0;
  double used_gb_ = 0;
};

class EvalHead : public PromiseWorker {
 public:
  EvalHead(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    arg_count(info, "cudaEvalHead", 4);
    s_ = eval_arg(env, info[0]);
    ref_ = Napi::Persistent(info[0]);
    slot_ = slot_arg(info, 1);
    norm_at_ = offset_value(env, info[2], "normAt", s_->d.hidden * 2, s_->slot_bytes);
    head_at_ = offset_value(env, info[3], "headAt", s_->vocab * s_->d.hidden * 2, s_->slot_bytes);
  }
  void Run() override {
    std::lock_guard<std::mutex> lock(cuda_mutex());
    gfc::Context& ctx = cuda_context();
    EvalSession& s = *s_;
    const int64_t H = s.d.hidden, V = s.vocab;
    const uint8_t* base = s.slots[slot_].dev.get();
    const __half* norm = (const __half*)(base + norm_at_);
    const __half* head = (const __half*)(base + head_at_);
    take_flags(ctx, s);
    s.clock->begin(gfc::StageClock::kHead);
    for (int64_t r0 = 0; r0 < s.T; r0 += s.head_rows) {
      const int64_t m = std::min(s.head_rows, s.T - r0);
      gfc::rms_norm(ctx, m, H, s.x.get() + r0 * H, norm, s.d.eps, s.scratch.nrm.get());
      gfc::linear_f16(ctx, m, V, H, s.scratch.nrm.get(), H, head, H, s.logits.get(), V);
      gfc::token_nll(ctx, m, V, s.logits.get(), V, s.targets.get() + r0, s.nll.get() + r0);
    }
    s.clock->end();
    seconds_ = s.clock->collect()[gfc::StageClock::kHead];
    nll_.resize(s.T);
    CUDA_CHECK(cudaMemcpyAsync(nll_.data(), s.nll.get(), s.T * 8, cudaMemcpyDeviceToHost, ctx.stream));
    ctx.sync();
    for (double v : nll_) non_finite_ += !std::isfinite(v);
    flops_ = 2.0 * (double)s.T * (double)H * (double)V;
    used_gb_ = gfc::device_used_gb();
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object r = Napi::Object::New(env);
    r.Set("nll", to_js(env, nll_));
    r.Set("nonFinite", (double)non_finite_);
    r.Set("seconds", seconds_);
    r.Set("flops", flops_);
    r.Set("deviceUsedGb", used_gb_);
    return r;
  }

 private:
  EvalSession* s_;
  Napi::Reference<Napi::Value> ref_;
  int slot_ = 0;
  int64_t norm_at_ = 0, head_at_ = 0, non_finite_ = 0;
  std::vector<double> nll_;
  double seconds_ = 0, flops_ = 0, used_gb_ = 0;
};

Napi::Value EvalFree(const Napi::CallbackInfo& info) {
  arg_count(info, "cudaEvalFree", 1);
  EvalSession* s = eval_arg(info.Env(), info[0]);
  std::lock_guard<std::mutex> lock(cuda_mutex());
  s->release();
  return info.Env().Undefined();
}

}  // namespace

void RegisterCudaEval(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaEvalCreate", Napi::Function::New(env, start<EvalCreate>));
  exports.Set("cudaEvalLoad", Napi::Function::New(env, start<EvalLoad>));
  exports.Set("cudaEvalEmbed", Napi::Function::New(env, start<EvalEmbed>));
  exports.Set("cudaEvalLayer", Napi::Function::New(env, start<EvalLayer>));
  exports.Set("cudaEvalHead", Napi::Function::New(env, start<EvalHead>));
  exports.Set("cudaEvalFree", Napi::Function::New(env, sync<EvalFree>));
  export_enum(env, exports, "evalDtype", eval_dtype_names());
  export_enum(env, exports, "evalLinear", Names(kLinearNames, kLinearNames + kLinears));
}

}  // namespace gfb
