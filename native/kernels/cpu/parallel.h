// Minimal fork-join parallel loop for the CPU kernels.
// Threads are spawned per call: every caller hands over at least milliseconds of work,
// so the ~20 us spawn cost is noise, and there is no global pool to shut down.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace gf {

// Number of worker threads: GPTQ_FORGE_THREADS, else the hardware concurrency.
inline int num_threads() {
  static int n = [] {
    const char* env = std::getenv("GPTQ_FORGE_THREADS");
    int v = env ? std::atoi(env) : 0;
    if (v <= 0) v = (int)std::thread::hardware_concurrency();
    return std::max(1, v);
  }();
  return n;
}

// Runs fn(i) for i in [0, n), items handed out dynamically (work per item may vary,
// e.g. causal attention blocks). The first exception thrown by any item is rethrown.
template <class F>
void parallel_for(int64_t n, F fn) {
  if (n <= 0) return;
  int nt = (int)std::min<int64_t>(num_threads(), n);
  if (nt == 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr err;
  std::mutex mu;
  auto worker = [&] {
    try {
      for (int64_t i; (i = next.fetch_add(1)) < n;) fn(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!err) err = std::current_exception();
      next.store(n);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (err) std::rethrow_exception(err);
}

}  // namespace gf
