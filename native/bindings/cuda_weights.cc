// Streaming a decoder layer's weights into a session's pinned host slot (compiled with the CUDA
// engine only). One coarse call per layer:
//   cudaSessionLoad(session, slot, shape, entries) → Promise<number[]>
// entries: { part, at, count, dtype: 'F16' | 'BF16' | 'F32', file, offset } (bytes read from a
// safetensors shard at an absolute offset) or { part, at, count, dtype, data } (a typed array);
// each lands, as fp16, at element `at` of its part. The promise gives each entry's count of
// non-finite values (after conversion), so the caller can name a bad tensor.
// This job takes no lock and makes no CUDA call but the slot's first allocation: it runs while
// the previous layer is quantized from the other slot (the caller never loads the slot in use).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "../kernels/cpu/half.h"
#include "cuda_session.h"
#include "util.h"

namespace gfb {
namespace {

enum class Dtype { F16, BF16, F32 };

size_t dtype_bytes(Dtype d) { return d == Dtype::F32 ? 4 : 2; }

struct Entry {
  int part = 0;
  int64_t at = 0, count = 0;
  Dtype dtype = Dtype::F16;
  std::string file;            // empty: from `data`
  int64_t offset = 0;          // byte offset in the file
  const uint8_t* data = nullptr;
  Napi::Reference<Napi::Value> ref;
};

// n values of `d` at src → fp16 bits at dst.
void to_half(Dtype d, const uint8_t* src, int64_t n, uint16_t* dst) {
  if (d == Dtype::F16) {
    std::memcpy(dst, src, (size_t)n * 2);
  } else if (d == Dtype::BF16) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t b;
      std::memcpy(&b, src + 2 * i, 2);
      const uint32_t bits = (uint32_t)b << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      dst[i] = gf::float_to_half(f);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      dst[i] = gf::float_to_half(f);
    }
  }
}

int64_t non_finite(const uint16_t* h, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += (h[i] & 0x7c00) == 0x7c00;
  return c;
}

// Reads exactly `bytes` at `offset` of `path` into dst.
void read_at(const std::string& path, int64_t offset, size_t bytes, uint8_t* dst) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes) {
    const ssize_t r = ::pread(fd, dst + done, bytes - done, (off_t)(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const std::string why = r < 0 ? std::strerror(errno) : "unexpected end of file";
      ::close(fd);
      throw std::runtime_error(path + ": reading " + std::to_string(bytes) + " bytes at offset " +
                               std::to_string(offset) + ": " + why);
    }
    done += (size_t)r;
  }
  ::close(fd);
}

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
      const std::string dt = o.Get("dtype").ToString().Utf8Value();
      if (dt == "F16") e.dtype = Dtype::F16;
      else if (dt == "BF16") e.dtype = Dtype::BF16;
      else if (dt == "F32") e.dtype = Dtype::F32;
      else throw Napi::TypeError::New(env, what + ".dtype: expected F16, BF16 or F32, got " + dt);
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
    // Pieces of at most 64 MiB, handed to up to 4 reader threads (one stream rarely fills NVMe).
    struct Piece { size_t entry; int64_t start, count; };
    std::vector<Piece> pieces;
    for (size_t i = 0; i < entries_.size(); ++i) {
      const int64_t step = (64 << 20) / (int64_t)dtype_bytes(entries_[i].dtype);
      for (int64_t s = 0; s < entries_[i].count; s += step)
        pieces.push_back({i, s, std::min(step, entries_[i].count - s)});
    }
    bad_.assign(entries_.size(), 0);
    std::vector<std::atomic<int64_t>> bad(entries_.size());
    std::atomic<size_t> next{0};
    std::mutex mu;
    std::string error;
    auto work = [&]() {
      std::vector<uint8_t> buf;
      for (size_t k; (k = next.fetch_add(1)) < pieces.size();) {
        const Piece& p = pieces[k];
        const Entry& e = entries_[p.entry];
        uint16_t* dst = slot.part(e.part) + e.at + p.start;
        const size_t eb = dtype_bytes(e.dtype), bytes = (size_t)p.count * eb;
        try {
          if (e.file.empty()) {
            to_half(e.dtype, e.data + (size_t)p.start * eb, p.count, dst);
          } else if (e.dtype == Dtype::F16) {
            read_at(e.file, e.offset + p.start * (int64_t)eb, bytes, (uint8_t*)dst);
          } else {
            buf.resize(bytes);
            read_at(e.file, e.offset + p.start * (int64_t)eb, bytes, buf.data());
            to_half(e.dtype, buf.data(), p.count, dst);
          }
          bad[p.entry] += non_finite(dst, p.count);
        } catch (const std::exception& ex) {
          std::lock_guard<std::mutex> lock(mu);
          if (error.empty()) error = ex.what();
          next = pieces.size();
        }
      }
    };
    const size_t n = std::min<size_t>(4, pieces.size());
    std::vector<std::thread> threads;
    for (size_t i = 1; i < n; ++i) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
    if (!error.empty()) throw std::runtime_error(error);
    for (size_t i = 0; i < bad.size(); ++i) bad_[i] = bad[i];
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
