// Host-side reads of tensor bytes for the CUDA engine's pinned slots (quantizer and
// inference path): positioned reads of a safetensors shard, conversion of floating-point
// tensors to fp16 bits, and a count of non-finite fp16 values.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include <mutex>

#include "../kernels/cpu/half.h"

namespace gfb {

// I32 (qweight, qzeros, g_idx) is copied as it is; the floating types land as fp16 bits.
enum class Dtype { F16, BF16, F32, I32 };

inline size_t dtype_bytes(Dtype d) { return d == Dtype::F32 || d == Dtype::I32 ? 4 : 2; }
// Bytes of one value once in a slot.
inline size_t stored_bytes(Dtype d) { return d == Dtype::I32 ? 4 : 2; }

// The dtypes of tensor entries, by name in Dtype order: the quantizer's slots take the floating
// ones, the inference path's also I32 (exported as enums.weightDtype and enums.evalDtype).
inline const std::vector<std::string>& float_dtype_names() {
  static const std::vector<std::string> v{"F16", "BF16", "F32"};
  return v;
}
inline const std::vector<std::string>& eval_dtype_names() {
  static const std::vector<std::string> v{"F16", "BF16", "F32", "I32"};
  return v;
}

// n values of `d` at src → dst: fp16 bits, or the int32 values themselves for I32.
inline void to_half_or_copy(Dtype d, const uint8_t* src, int64_t n, uint8_t* out) {
  uint16_t* dst = (uint16_t*)out;
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
  } else if (d == Dtype::I32) {
    std::memcpy(dst, src, (size_t)n * 4);
  } else {
    for (int64_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, src + 4 * i, 4);
      dst[i] = gf::float_to_half(f);
    }
  }
}

inline int64_t non_finite(const uint16_t* h, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += (h[i] & 0x7c00) == 0x7c00;
  return c;
}

// Reads exactly `bytes` at `offset` of `path` into dst.
inline void read_at(const std::string& path, int64_t offset, size_t bytes, uint8_t* dst) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes) {
    const ssize_t r = ::pread(fd, dst + done, bytes - done, (off_t)(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const std::string why = r < 0 ? std::strerror(errno) : "unexpected end of file (truncated while open?)";
      ::close(fd);
      throw std::runtime_error(path + ": reading " + std::to_string(bytes) + " bytes at offset " +
                               std::to_string(offset) + ": " + why);
    }
    done += (size_t)r;
  }
  ::close(fd);
}

// One tensor's values to place: from `file` at byte `offset`, or from host memory `data`;
// `count` values of `dtype` land at dst (fp16 bits, or int32 for I32).
struct Source {
  std::string file;  // empty: from `data`
  int64_t offset = 0;
  const uint8_t* data = nullptr;
  Dtype dtype = Dtype::F16;
  int64_t count = 0;
  uint8_t* dst = nullptr;
};

// Fills every source on up to 4 threads (one stream rarely fills an NVMe drive), in pieces of
// at most 64 MiB; returns each source's count of non-finite values (0 for I32). The first
// read error is thrown once every thread has stopped.
inline std::vector<int64_t> fill_sources(const std::vector<Source>& src) {
  struct Piece { size_t source; int64_t start, count; };
  std::vector<Piece> pieces;
  for (size_t i = 0; i < src.size(); ++i) {
    const int64_t step = (64 << 20) / (int64_t)dtype_bytes(src[i].dtype);
    for (int64_t s = 0; s < src[i].count; s += step) pieces.push_back({i, s, std::min(step, src[i].count - s)});
  }
  std::vector<std::atomic<int64_t>> bad(src.size());
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::string error;
  auto work = [&]() {
    std::vector<uint8_t> buf;
    for (size_t k; (k = next.fetch_add(1)) < pieces.size();) {
      const Piece& p = pieces[k];
      const Source& e = src[p.source];
      const size_t eb = dtype_bytes(e.dtype), sb = stored_bytes(e.dtype), bytes = (size_t)p.count * eb;
      uint8_t* dst = e.dst + (size_t)p.start * sb;
      try {
        if (e.file.empty()) {
          to_half_or_copy(e.dtype, e.data + (size_t)p.start * eb, p.count, dst);
        } else if (eb == sb && e.dtype != Dtype::BF16) {  // F16 and I32: straight into place
          read_at(e.file, e.offset + p.start * (int64_t)eb, bytes, dst);
        } else {
          buf.resize(bytes);
          read_at(e.file, e.offset + p.start * (int64_t)eb, bytes, buf.data());
          to_half_or_copy(e.dtype, buf.data(), p.count, dst);
        }
        if (e.dtype != Dtype::I32) bad[p.source] += non_finite((const uint16_t*)dst, p.count);
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
  std::vector<int64_t> out(src.size());
  for (size_t i = 0; i < src.size(); ++i) out[i] = bad[i];
  return out;
}

}  // namespace gfb
