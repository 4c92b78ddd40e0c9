// Helpers of the 70B layer benchmark: random fills, stage timers (CUDA events), memory and
// disk measurements. Benchmark-only code; the kernels live in native/kernels/cuda.
#pragma once
#include <cuda_fp16.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "../../native/kernels/cuda/context.h"

namespace bench {

using gfc::Context;

__device__ __forceinline__ uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
__device__ __forceinline__ float normal_at(uint64_t seed, uint64_t i) {
  const uint64_t a = splitmix(seed * 0x100000001B3ull + 2 * i), b = splitmix(seed * 0x100000001B3ull + 2 * i + 1);
  const float u1 = ((a >> 40) + 1) * (1.0f / 16777217.0f), u2 = (b >> 40) * (1.0f / 16777216.0f);
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

// out[i] = mean + std · N(0, 1) · (col_scale ? col_scale[i % cols] : 1)
__global__ void fill_normal_kernel(int64_t n, uint64_t seed, float mean, float std, const float* col_scale,
                                   int64_t cols, __half* out) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = std * normal_at(seed, i);
    if (col_scale) v *= col_scale[i % cols];
    out[i] = __float2half_rn(mean + v);
  }
}
inline void fill_normal(Context& ctx, int64_t n, uint64_t seed, float mean, float std, __half* out,
                        const float* col_scale = nullptr, int64_t cols = 1) {
  fill_normal_kernel<<<4096, 256, 0, ctx.stream>>>(n, seed, mean, std, col_scale, cols, out);
  CUDA_LAUNCH_CHECK();
}
// Per-channel magnitudes of hidden states: lognormal(0, 0.6), a few channels ×20 (the outlier
// features of large Llamas).
__global__ void channel_scale_kernel(int64_t n, uint64_t seed, float* s) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v = expf(0.6f * normal_at(seed, i));
  if (splitmix(seed ^ (uint64_t)i) % 1024 == 0) v *= 20.0f;
  s[i] = v;
}

inline double host_peak_rss_gb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1e6;  // kB → GB
  return -1;
}

// Sequential write (O_DIRECT, then fsync) and read (O_DIRECT) of `bytes` in 64 MiB pieces.
struct DiskRate { double write_gbs = 0, read_gbs = 0; std::string path; double bytes = 0; std::string note; };
inline DiskRate measure_disk(const std::string& dir, size_t bytes) {
  DiskRate r;
  r.path = dir + "/gptq-forge-disk-probe.bin";
  r.bytes = (double)bytes;
  const size_t piece = 64u << 20;
  void* buf = nullptr;
  if (posix_memalign(&buf, 4096, piece)) { r.note = "no aligned buffer"; return r; }
  std::memset(buf, 0x5a, piece);
  for (size_t i = 0; i < piece; i += 8) reinterpret_cast<uint64_t*>(buf)[i / 8] = i * 0x9E3779B97F4A7C15ull;
  int fd = open(r.path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_DIRECT, 0644);
  bool direct = fd >= 0;
  if (!direct) fd = open(r.path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) { r.note = "cannot open " + r.path; free(buf); return r; }
  auto t0 = std::chrono::steady_clock::now();
  for (size_t done = 0; done < bytes; done += piece)
    if (write(fd, buf, piece) != (ssize_t)piece) { r.note = "short write"; break; }
  fsync(fd);
  close(fd);
  r.write_gbs = bytes / 1e9 / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fd = open(r.path.c_str(), O_RDONLY | (direct ? O_DIRECT : 0));
  t0 = std::chrono::steady_clock::now();
  for (size_t done = 0; done < bytes; done += piece)
    if (read(fd, buf, piece) != (ssize_t)piece) { r.note = "short read"; break; }
  close(fd);
  r.read_gbs = bytes / 1e9 / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!direct) r.note = "O_DIRECT unavailable: page cache may inflate the read rate";
  unlink(r.path.c_str());
  free(buf);
  return r;
}

}  // namespace bench
