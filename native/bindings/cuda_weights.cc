// Streaming a decoder layer's weights into a session's pinned host slot (compiled with the CUDA
// engine only). One coarse call per layer:
//   cudaSessionLoad(session, slot, shape, entries) → Promise<number[]>
// entries: { part, at, count, dtype: 'F16' | 'BF16' | 'F32', file, offset } (bytes read from a
// safetensors shard at an absolute offset) or { part, at, count, dtype, data } (a typed array);
// each lands, as fp16, at element `at` of its part. The promise gives each entry's count of
// non-finite values (after conversion), so the caller can name a bad tensor.
// This job takes no lock and makes no CUDA call but the slot's first allocation: it runs while
// the previous layer is quantized from the other slot (the caller never loads the slot in use).
#include <string>
#include <vector>

#include "cuda_session.h"
#include "host_read.h"
#include "util.h"

namespace gfb {
namespace {

struct Entry {
  int part = 0;
  int64_t at = 0, count = 0;
  Dtype dtype = Dtype::F16;
  std::string file;            // empty: from `data`
  int64_t offset = 0;          // byte offset in the file
  const uint8_t* data = nullptr;
  Napi::Reference<Napi::Value> ref;
};

class CudaSessionLoad : public PromiseWorker {
 public:
  CudaSessionLoad(const Napi::CallbackInfo& info) : PromiseWorker(info.Env()) {
    Napi::Env env = info.Env();
    s_ = session_arg(env, info[0]);
    ref_ = Napi::Persistent(info[0]);
    slot_ = (int)info[1].As<Napi::Number>().Int32Value();
    if (slot_ < 0 || slot_ > 1) throw Napi::RangeError::New(env, "slot: expected 0 or 1");
    if (!info[2].IsObject()) throw Napi::TypeError::New(env, "shape: expected an object");
    Napi::Object sh = info[2].As<Napi::Object>();
    counts_ = LayerShape{int_arg(env, sh, "hidden"), int_arg(env, sh, "ffn"), int_arg(env, sh, "heads"),
                         int_arg(env, sh, "kvHeads"), int_arg(env, sh, "headDim")}.counts();
    if (!info[3].IsArray()) throw Napi::TypeError::New(env, "entries: expected an array");
    Napi::Array a = info[3].As<Napi::Array>();
    entries_.resize(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const std::string what = "entries[" + std::to_string(i) + "]";
      if (!a.Get(i).IsObject()) throw Napi::TypeError::New(env, what + ": expected an object");
      Napi::Object o = a.Get(i).As<Napi::Object>();
      Entry& e = entries_[i];
      e.part = (int)int_arg(env, o, "part");
      e.at = int_arg(env, o, "at");
      e.count = int_arg(env, o, "count");
      try {
        e.dtype = parse_dtype(o.Get("dtype").ToString().Utf8Value(), false);
      } catch (const std::exception& ex) {
        throw Napi::TypeError::New(env, what + "." + ex.what());
      }
      if (e.part >= kParts || e.at + e.count > counts_[e.part])
        throw Napi::RangeError::New(env, what + ": past the end of its part");
      if (o.Get("file").IsString()) {
        e.file = o.Get("file").As<Napi::String>().Utf8Value();
        e.offset = int_arg(env, o, "offset");
      } else {
        Napi::Value d = o.Get("data");
        if (!d.IsTypedArray()) throw Napi::TypeError::New(env, what + ": expected a file or a typed array");
        Napi::TypedArray t = d.As<Napi::TypedArray>();
        if ((int64_t)t.ByteLength() != e.count * (int64_t)dtype_bytes(e.dtype))
          throw Napi::RangeError::New(env, what + ".data: expected " + std::to_string(e.count * dtype_bytes(e.dtype)) +
                                               " bytes, got " + std::to_string(t.ByteLength()));
        e.data = (const uint8_t*)t.ArrayBuffer().Data() + t.ByteOffset();
        e.ref = Napi::Persistent(d);
      }
    }
  }

  void Run() override {
    HostSlot& slot = s_->slots[slot_];
    if (!slot.data || slot.counts != counts_) slot.alloc(counts_);
    std::vector<Source> src(entries_.size());
    for (size_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      src[i] = Source{e.file, e.offset, e.data, e.dtype, e.count, (uint8_t*)(slot.part(e.part) + e.at)};
    }
    bad_ = fill_sources(src);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, bad_.size());
    for (size_t i = 0; i < bad_.size(); ++i) out.Set((uint32_t)i, (double)bad_[i]);
    return out;
  }

 private:
  Session* s_;
  Napi::Reference<Napi::Value> ref_;
  int slot_ = 0;
  std::array<int64_t, kParts> counts_{};
  std::vector<Entry> entries_;
  std::vector<int64_t> bad_;
};

}  // namespace

void RegisterCudaWeights(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaSessionLoad", Napi::Function::New(env, start<CudaSessionLoad>));
}

}  // namespace gfb
