// One stream with its cuBLAS and cuSOLVER handles, and an owning device buffer. Every kernel
// function takes a Context and enqueues on its stream; none synchronises unless it says so.
#pragma once
#include <cstddef>
#include <cstdint>

#include "check.h"

namespace gfc {

struct Context {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;

  Context() {
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&blas));
    CUBLAS_CHECK(cublasSetStream(blas, stream));
    CUSOLVER_CHECK(cusolverDnCreate(&solver));
    CUSOLVER_CHECK(cusolverDnSetStream(solver, stream));
  }
  ~Context() {
    if (solver) cusolverDnDestroy(solver);
    if (blas) cublasDestroy(blas);
    if (stream) cudaStreamDestroy(stream);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  void sync() const { CUDA_CHECK(cudaStreamSynchronize(stream)); }
};

// n elements of T in device memory, freed with the object. Counts live bytes process-wide so
// callers can report what they hold (the peak is also visible through cudaMemGetInfo).
struct Tally {
  static size_t& live() { static size_t v = 0; return v; }
  static size_t& peak() { static size_t v = 0; return v; }
};

template <class T>
class DevBuf {
 public:
  DevBuf() = default;
  explicit DevBuf(size_t n) { alloc(n); }
  ~DevBuf() { release(); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  DevBuf& operator=(DevBuf&& o) noexcept {
    if (this != &o) { release(); p_ = o.p_; n_ = o.n_; o.p_ = nullptr; o.n_ = 0; }
    return *this;
  }
  void alloc(size_t n) {
    release();
    if (n == 0) return;
    CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T)));
    n_ = n;
    Tally::live() += n * sizeof(T);
    if (Tally::live() > Tally::peak()) Tally::peak() = Tally::live();
  }
  void release() {
    if (p_) { cudaFree(p_); Tally::live() -= n_ * sizeof(T); }
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Device memory in use by the whole process (allocations, context, library workspaces), GB.
inline double device_used_gb() {
  size_t free = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free, &total));
  return (double)(total - free) / 1e9;
}

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

}  // namespace gfc
