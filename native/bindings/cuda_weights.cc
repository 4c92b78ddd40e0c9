// Streaming a decoder layer's weights into a session's pinned host slot (compiled with the CUDA
// engine only). One coarse call per layer:
//   cudaSessionLoad(session, slot, shape, entries) → Promise<number[]>
// entries: { part (a name of weight_part_names), at, count, dtype: 'F16' | 'BF16' | 'F32', file, offset } (bytes read from a
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
    arg_count(info, "cudaSessionLoad", 4);
    s_ = session_arg(env, info[0]);
    ref_ = Napi::Persistent(info[0]);
    slot_ = (int)int_at(info, 1, "slot", 0, 1);
    counts_ = layer_shape_arg(env, info[2], "shape").counts();
    Napi::Array a = array_value(env, info[3], "entries");
    entries_.resize(a.Length());
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const std::string what = "entries[" + std::to_string(i) + "]";
      Napi::Object o = object_value(env, a.Get(i), what);
      Entry& e = entries_[i];
      e.part = choice_value(env, o.Get("part"), what + ".part", weight_part_names());
      e.at = int_arg(env, o, "at", what.c_str());
      e.count = int_arg(env, o, "count", what.c_str(), 1);
      e.dtype = (Dtype)choice_value(env, o.Get("dtype"), what + ".dtype", float_dtype_names());
      if (e.at + e.count > counts_[e.part])
        range_error(env, what, "elements within " + weight_part_names()[e.part] + "'s " + std::to_string(counts_[e.part]),
                    "[" + std::to_string(e.at) + ", " + std::to_string(e.at + e.count) + ")");
      const Napi::Value file = o.Get("file");
      if (!file.IsUndefined()) {
        e.file = string_value(env, file, what + ".file");
        e.offset = int_arg(env, o, "offset", what.c_str());
      } else {
        Napi::Value d = o.Get("data");
        if (!d.IsTypedArray()) type_error(env, what + ".data", "a typed array (or a file)", d);
        Napi::TypedArray t = d.As<Napi::TypedArray>();
        if ((int64_t)t.ByteLength() != e.count * (int64_t)dtype_bytes(e.dtype))
          range_error(env, what + ".data", std::to_string(e.count * dtype_bytes(e.dtype)) + " bytes",
                      std::to_string(t.ByteLength()));
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
  export_enum(env, exports, "weightPart", weight_part_names());
  export_enum(env, exports, "weightDtype", float_dtype_names());
}

}  // namespace gfb
