// Checks of native/kernels/cuda/gptq.h: the GPU GPTQ solve (gptq_quantize, each variant: 1 and
// 4 rows per warp, fp32 Cholesky, tf32 updates; with and without --mse) against the CPU engine (gf::gptq_quantize,
// native/kernels/cpu/gptq.h: the reference here, on the same random W and H) and against the
// GPU reference gptq_quantize_ref; then on the GPTQ golden (the authors' fasterquant outputs,
// ../shared/reference/golden) with the bar of test/golden/gptq-golden.test.ts; the mse grids
// alone, device (warp and serial) against the host (gf::find_params); the refusal of a block
// size other than 128; timings per variant, and --mse against the default on an 8192 × 8192 linear;
// GPTAQ (a cross term C with α): the GPU solve against the CPU engine's GPTAQ solve with the bars
// of the plain cases, GPTAQ really changing the codes, and α = 0 giving the GPU's plain GPTQ.
//   build/cuda/checks/gptq_check [gptq-golden.safetensors gptq-golden.json]
// Exit code 0 only when every case passes (the golden cases only run with both paths given).
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "../../cpu/gptq.h"
#include "../gptq.h"
#include "../gptq_grid.cuh"
#include "check_util.cuh"
#include "gptq_solve_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

struct Variant { const char* name; SolveConfig cfg; bool strict; };
std::vector<Variant> variants() {
  SolveConfig r1, r4, c32, t32;
  r1.rows_per_warp = 1;
  r4.rows_per_warp = 4;
  c32.chol_fp32 = true;
  t32.tf32 = true;
  return {{"1 row/warp", r1, true}, {"4 rows/warp", r4, true}, {"fp32 Cholesky", c32, false}, {"tf32 updates", t32, false}};
}

void check_solves(Context& ctx) {
  std::mt19937 rng(1234);
  struct Case { int64_t N, K; gf::GptqOptions o; int dead; };
  const std::vector<Case> cases = {
      {96, 512, {4, 128, true, false, true, false, 0.01f, 128}, 3},
      {64, 384, {4, 32, true, false, true, false, 0.01f, 128}, 0},
      {64, 512, {3, 256, false, false, false, false, 0.01f, 128}, 2},
      {64, 256, {4, -1, true, false, true, false, 0.01f, 128}, 1},
      {64, 512, {4, 64, true, true, true, false, 0.01f, 128}, 2},
      {48, 320, {8, 64, false, false, true, false, 0.0f, 128}, 0},
      // K > 512: the solve's superblocks of 512 columns and their deferred updates.
      {72, 1536, {4, 128, true, false, true, false, 0.01f, 128}, 2},
      {40, 1024, {4, -1, true, false, true, false, 0.01f, 128}, 0},
      {40, 1024, {4, 256, true, false, false, false, 0.01f, 128}, 1},
      {48, 1152, {3, 384, false, false, false, false, 0.01f, 128}, 1},  // groups don't tile 512
      {33, 224, {2, 32, true, false, true, false, 0.01f, 128}, 0},      // 2-bit, odd N, K not a multiple of the 128 block
      // --mse (the grids by warp_grid_mse: per row, static groups, groups found in the solve).
      {64, 512, {4, 128, true, false, true, true, 0.01f, 128}, 2},
      {64, 512, {3, 128, false, false, false, true, 0.01f, 128}, 1},
      {64, 512, {2, 128, true, false, true, true, 0.01f, 128}, 0},
      {64, 512, {4, -1, true, false, true, true, 0.01f, 128}, 1},
      {48, 384, {3, -1, false, false, false, true, 0.01f, 128}, 0},
      {40, 256, {2, -1, true, false, true, true, 0.01f, 128}, 0},
      {64, 512, {4, 128, true, true, true, true, 0.01f, 128}, 2},
      {48, 512, {3, 64, true, true, false, true, 0.01f, 128}, 0},
      {40, 1024, {4, 256, true, false, true, true, 0.01f, 128}, 1},   // groups spanning blocks, superblocks
      {33, 224, {2, 32, true, false, false, true, 0.01f, 128}, 0},    // odd N, K not a multiple of 128
      {32, 256, {8, -1, false, false, true, true, 0.01f, 128}, 0},
  };
  for (const auto& c : cases) {
    const auto H = random_hessian(rng, c.K, c.K <= 512 ? 2 * c.K : c.K + 64, c.dead);
    std::normal_distribution<float> nd(0, 0.02f);
    std::vector<float> W(c.N * c.K);
    for (auto& w : W) w = nd(rng);
    const SolveOut cpu = solve_cpu(c.N, c.K, W, H, c.o);
    const SolveOut ref = solve_gpu(ctx, c.N, c.K, W, H, c.o, true);
    for (const Variant& v : variants()) {
      const SolveOut gpu = solve_gpu(ctx, c.N, c.K, W, H, c.o, false, v.cfg);
      // fp64 factor, fp32 updates: the solves differ from the CPU engine only in summation order
      // (~1e-7 relative); a code flips where a value sits within that of a grid midpoint, and
      // the error feedback then moves later columns a little: ≥ 99 % identical codes, losses
      // within 0.5 %. The fp32 factor and tf32 updates change the arithmetic itself (~1e-4
      // relative): the golden's bar, ≥ 95 % and 1 %. Per-row losses add up to the loss
      // (N doubles: N·u64 relative).
      const double f_cpu = same_codes(gpu, cpu), f_ref = same_codes(gpu, ref);
      const double l_cpu = gpu.res.loss / cpu.res.loss - 1, l_ref = gpu.res.loss / ref.res.loss - 1;
      const double rows = std::accumulate(gpu.row_loss.begin(), gpu.row_loss.end(), 0.0);
      const bool rows_ok = (int64_t)gpu.row_loss.size() == c.N && std::fabs(rows - gpu.res.loss) <= 4 * c.N * kDoubleU * gpu.res.loss;
      const bool gidx = gpu.g_idx == cpu.g_idx;
      const double fmin = v.strict ? 0.99 : 0.95, lmax = v.strict ? 5e-3 : 1e-2;
      bool grids_ok = true;
      std::string grids;
      if (c.o.mse) {
        // The grids with the mse search. Per row (g = −1) and static groups: computed from the
        // same W on every side before the solve, by one rule summed in one order: identical to
        // the GPU reference's (device, same operations) and to the CPU engine's but where the
        // fp64 pows round differently to fp32 (~1e-8 of the terms, gptq_math.h): ≥ 99.9 %.
        // Groups found during the solve start from W updated by sums in another order (~1e-7
        // relative): the same candidate wins unless two lie that close, a shift of ≥ 1 % of the
        // scale otherwise: ≥ 98 % with the same zero and scales within 1e-4 (fp64 factor, fp32
        // updates; shown only for the fp32 factor and tf32 updates, ~1e-4 of their own).
        const GridMatch m_cpu = same_grids(gpu, cpu, 1e-4), m_ref = same_grids(gpu, ref, 1e-4);
        const bool fixed = c.o.group_size == -1 || c.o.static_groups;
        grids_ok = fixed ? m_cpu.identical >= 0.999 && m_ref.identical == 1.0 : !v.strict || (m_cpu.close >= 0.98 && m_ref.close >= 0.98);
        grids = strf("; mse grids (%s) identical to CPU %.4f, to ref %.4f, close %.4f/%.4f (bar: %s)", fixed ? "before the solve" : "in the solve",
                     m_cpu.identical, m_ref.identical, m_cpu.close, m_ref.close,
                     fixed ? "identical ≥ 0.999 / = 1" : v.strict ? "close ≥ 0.98" : "none");
      }
      report(f_cpu >= fmin && f_ref >= fmin && std::fabs(l_cpu) < lmax && std::fabs(l_ref) < lmax && gidx && rows_ok && grids_ok &&
                 gpu.res.dead_columns == cpu.res.dead_columns && gpu.res.damp_raises == cpu.res.damp_raises,
             strf("solve [%s] N=%lld K=%lld bits=%d g=%lld act=%d static=%d sym=%d mse=%d dead=%d: codes = CPU %.4f, = GPU-ref %.4f (bar %.2f); "
                  "loss vs CPU %+.2e, vs ref %+.2e (bar %.0e); damp %g/%g; g_idx %s; row losses %s; Q rel err vs CPU %.2e%s",
                  v.name, (long long)c.N, (long long)c.K, c.o.bits, (long long)c.o.group_size, c.o.act_order, c.o.static_groups, c.o.sym,
                  c.o.mse, c.dead, f_cpu, f_ref, fmin, l_cpu, l_ref, lmax, gpu.res.damp_percent, cpu.res.damp_percent, gidx ? "equal" : "DIFFER",
                  rows_ok ? "add up" : "DO NOT ADD UP", rel_err(gpu.q, cpu.q), grids.c_str()));
    }
  }
}

// GPTAQ's H and C from X [T, K] and X̃ = X (I + E) + noise: H = 2/T·XᵀX, C = 2/T·(X̃ − X)ᵀX (fp64
// sums, rounded to fp32; the scale cancels in P). `dead`: that many columns of X set to 0.
void gptaq_stats(std::mt19937& rng, int64_t K, int64_t T, int dead, std::vector<float>& H, std::vector<float>& C) {
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> X(T * K), D(T * K), colscale(K), E(K * K);
  for (auto& c : colscale) c = std::exp(0.5f * nd(rng));
  for (auto& e : E) e = 0.2f / std::sqrt((float)K) * nd(rng);
  for (int64_t t = 0; t < T; ++t) {
    const float common = nd(rng);
    for (int64_t k = 0; k < K; ++k) X[t * K + k] = colscale[k] * (nd(rng) + 0.3f * common);
  }
  for (int d = 0; d < dead; ++d) {
    const int64_t k = (int64_t)(rng() % K);
    for (int64_t t = 0; t < T; ++t) X[t * K + k] = 0;
  }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0.05 * nd(rng);
      for (int64_t m = 0; m < K; ++m) s += (double)X[t * K + m] * E[m * K + j];
      D[t * K + j] = (float)s;  // X̃ − X
    }
  H.assign(K * K, 0.0f);
  C.assign(K * K, 0.0f);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double h = 0, c = 0;
      for (int64_t t = 0; t < T; ++t) { h += (double)X[t * K + i] * X[t * K + j]; c += (double)D[t * K + i] * X[t * K + j]; }
      H[i * K + j] = (float)(2.0 * h / T);
      C[i * K + j] = (float)(2.0 * c / T);
    }
}

// The GPU's GPTAQ (P by cuBLAS in fp32, in-block x·P1, a second GEMM per trailing update) against
// the CPU engine's (P in fp64): the same rule summed in another order, P's fp32 products adding
// ~K·u32 relative to its entries: the bars of the plain solves (strict variants ≥ 99 % codes and
// 0.5 % loss; fp32 Cholesky / tf32 ≥ 95 % and 1 %). GPTAQ must change ≥ 1 % of the codes (else
// these cases would test plain GPTQ), and α = 0 must give the GPU's plain solve's codes and loss
// (P = 0: every added term is an exact zero).
void check_gptaq(Context& ctx) {
  std::mt19937 rng(2025);
  struct Case { int64_t N, K; gf::GptqOptions o; int dead; };
  const std::vector<Case> cases = {
      {96, 512, {4, 128, true, false, true, false, 0.01f, 128}, 2},
      {64, 384, {4, 32, true, false, true, false, 0.01f, 128}, 0},
      {64, 256, {3, -1, true, false, true, false, 0.01f, 128}, 1},
      {64, 512, {4, 64, true, true, true, false, 0.01f, 128}, 0},
      {72, 1536, {4, 128, true, false, true, false, 0.01f, 128}, 2},  // superblocks and their deferred P updates
      {48, 1152, {3, 384, false, false, false, false, 0.01f, 128}, 1}, // groups don't tile 512
      {33, 224, {2, 32, true, false, true, true, 0.01f, 128}, 0},      // mse grids, odd N, K not a multiple of 128
  };
  for (const auto& c : cases) {
    std::vector<float> H, C;
    gptaq_stats(rng, c.K, c.K + 256, c.dead, H, C);
    std::normal_distribution<float> nd(0, 0.02f);
    std::vector<float> W(c.N * c.K);
    for (auto& w : W) w = nd(rng);
    const SolveOut cpu = solve_cpu(c.N, c.K, W, H, c.o, C, 0.25f);
    const SolveOut cpu_plain = solve_cpu(c.N, c.K, W, H, c.o);
    const double changed = 1 - same_codes(cpu, cpu_plain);
    for (const Variant& v : variants()) {
      const SolveOut gpu = solve_gpu(ctx, c.N, c.K, W, H, c.o, false, v.cfg, C, 0.25f);
      const SolveOut plain = solve_gpu(ctx, c.N, c.K, W, H, c.o, false, v.cfg);
      const SolveOut zero = solve_gpu(ctx, c.N, c.K, W, H, c.o, false, v.cfg, C, 0.0f);
      const double f_cpu = same_codes(gpu, cpu), l_cpu = gpu.res.loss / cpu.res.loss - 1;
      const double fmin = v.strict ? 0.99 : 0.95, lmax = v.strict ? 5e-3 : 1e-2;
      const bool alpha0 = zero.codes == plain.codes && zero.res.loss == plain.res.loss;
      report(f_cpu >= fmin && std::fabs(l_cpu) < lmax && changed >= 0.01 && alpha0 && gpu.g_idx == cpu.g_idx,
             strf("gptaq [%s] N=%lld K=%lld bits=%d g=%lld act=%d static=%d mse=%d dead=%d: codes = CPU GPTAQ %.4f (bar %.2f); loss vs CPU %+.2e "
                  "(bar %.0e); GPTAQ changes %.4f of the codes (bar ≥ 0.01); alpha 0 %s the GPU's plain GPTQ; Q rel err vs CPU %.2e",
                  v.name, (long long)c.N, (long long)c.K, c.o.bits, (long long)c.o.group_size, c.o.act_order, c.o.static_groups, c.o.mse,
                  c.dead, f_cpu, fmin, l_cpu, lmax, changed, alpha0 ? "=" : "DIFFERS FROM", rel_err(gpu.q, cpu.q)));
    }
  }
}

// The mse grid alone, rows X [R, n]: warp_grid_mse (the solve's) by warp r, and gf::find_params's
// serial search by thread r, each writing out [R, 3] = (scale, zero, winning error sum).
__global__ void mse_grid_warp_kernel(int64_t R, int64_t n, const float* X, float maxq, bool sym, float* out) {
  const int64_t r = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= R) return;
  float e;
  const Grid g = warp_grid_mse(X + r * n, n, maxq, sym, &e);
  if (threadIdx.x % 32 == 0) { out[3 * r] = g.scale; out[3 * r + 1] = g.zero; out[3 * r + 2] = e; }
}
__global__ void mse_grid_serial_kernel(int64_t R, int64_t n, const float* X, float maxq, bool sym, float* out) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= R) return;
  float e;
  const Grid g = gf::find_params(X + r * n, n, maxq, sym, true, &e);
  out[3 * r] = g.scale; out[3 * r + 1] = g.zero; out[3 * r + 2] = e;
}

// Device vs host: the mse grid of random rows (outliers, and rows made for ties and the edge
// cases: all zero, constant, on a grid, one value, n not a multiple of 32) for every bits/sym.
// The warp and the serial device search do the same operations in the same order: identical
// grids and bit-identical error sums. The host differs only in the fp64 pow (~1e-8 of the terms
// round differently to fp32, gptq_math.h), each such term moving its sum by ≤ 2^-24 of itself:
// ≥ 99.9 % identical (scale, zero) and error sums within 1e-6 relative.
void check_mse_grids(Context& ctx) {
  std::mt19937 rng(4242);
  std::normal_distribution<float> nd(0, 0.02f);
  for (const int64_t n : {1, 7, 32, 37, 100, 128, 1000, 8192}) {
    const int64_t R = n <= 128 ? 1024 : n <= 1000 ? 128 : 24;
    std::vector<float> X(R * n);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t k = 0; k < n; ++k) {
        float& x = X[r * n + k];
        switch (r % 8) {
          case 0: x = 0; break;                                          // all zero: the range [−1, 1]
          case 1: x = 0.01f; break;                                      // constant: candidates tie
          case 2: x = (float)((int)(k % 7) - 3) * 0.01f; break;          // on a grid: exact errors
          case 3: x = k == n / 2 ? 0.3f : 0.0f; break;                   // one value
          case 4: x = -std::fabs(nd(rng)); break;                        // all negative
          default: x = nd(rng) * (rng() % 50 == 0 ? 8.0f : 1.0f);        // outliers
        }
      }
    auto dX = upload(ctx, X);
    size_t same_host = 0, same_dev = 0, bits_dev = 0, shrunk = 0, total = 0;
    double max_rel = 0;
    for (const int bits : {2, 3, 4, 8})
      for (const bool sym : {true, false}) {
        const float maxq = (float)((1 << bits) - 1);
        DevBuf<float> ow(R * 3), os(R * 3);
        mse_grid_warp_kernel<<<blocks_for(R, 8), 256, 0, ctx.stream>>>(R, n, dX.get(), maxq, sym, ow.get());
        CUDA_LAUNCH_CHECK();
        mse_grid_serial_kernel<<<blocks_for(R, 64), 64, 0, ctx.stream>>>(R, n, dX.get(), maxq, sym, os.get());
        CUDA_LAUNCH_CHECK();
        const auto w = download(ctx, ow.get(), R * 3), sr = download(ctx, os.get(), R * 3);
        for (int64_t r = 0; r < R; ++r) {
          float e;
          const gf::Grid h = gf::find_params(X.data() + r * n, n, maxq, sym, true, &e);
          const gf::Grid h0 = gf::find_params(X.data() + r * n, n, maxq, sym, false);
          same_host += w[3 * r] == h.scale && w[3 * r + 1] == h.zero;
          same_dev += w[3 * r] == sr[3 * r] && w[3 * r + 1] == sr[3 * r + 1];
          bits_dev += std::memcmp(&w[3 * r + 2], &sr[3 * r + 2], 4) == 0;
          shrunk += h.scale != h0.scale || h.zero != h0.zero;
          if (w[3 * r + 2] != e) max_rel = std::max(max_rel, std::fabs((double)w[3 * r + 2] - e) / std::fabs((double)e));
          ++total;
        }
      }
    const double f_host = (double)same_host / total;
    report(same_dev == total && bits_dev == total && f_host >= 0.999 && max_rel <= 1e-6,
           strf("mse grid n=%lld (%lld rows × bits 2/3/4/8 × sym/asym): warp = serial device search %zu/%zu grids, %zu/%zu error sums "
                "bit-identical (bar: all); = host %zu/%zu grids (%.4f, bar 0.999), error sums max rel err %.2e (bar 1e-6); "
                "shrunk grids %.1f %%", (long long)n, (long long)R, same_dev, total, bits_dev, total, same_host, total, f_host, max_rel,
                100.0 * shrunk / total));
  }
}

void check_refusals(Context& ctx) {
  std::mt19937 rng(7);
  const int64_t N = 32, K = 256;
  const auto H = random_hessian(rng, K, 2 * K, 0);
  const std::vector<float> W(N * K, 0.01f);
  gf::GptqOptions block{4, 128, false, false, true, false, 0.01f, 64};
  report(throws([&] { solve_gpu(ctx, N, K, W, H, block, false); }), "gptq_quantize refuses block_size 64 (128 only)");
}

void timings(Context& ctx) {
  std::mt19937 rng(99);
  const int64_t N = 4096, K = 4096;
  const auto H = random_hessian(rng, K, 256, 0);  // rank 256 + damping: PD, and a quick host build
  const auto W = random_floats(rng, N * K, 0.02f);
  const gf::GptqOptions o{4, 128, true, false, true, false, 0.01f, 128};
  for (const Variant& v : variants()) {
    solve_gpu(ctx, N, K, W, H, o, false, v.cfg);  // warm-up
    const SolveOut s = solve_gpu(ctx, N, K, W, H, o, false, v.cfg);
    timing_line(strf("gptq_quantize [%s] N=%lld K=%lld 4-bit g128 act-order", v.name, (long long)N, (long long)K), s.times.prepare_ms + s.times.solve_ms,
                strf("(prepare %.1f ms: potrf %.1f, trtri %.1f; solve %.1f ms)", s.times.prepare_ms, s.times.chol.potrf_ms, s.times.chol.trtri_ms, s.times.solve_ms));
  }
  // --mse against the default on a 70B-shaped linear (o_proj: 8192 × 8192), the solve's own
  // timer; g128 act-order (the grids found in the solve), g128 static groups, and g = −1.
  const int64_t N7 = 8192, K7 = 8192;
  const auto H7 = random_hessian(rng, K7, 128, 0);
  const auto W7 = random_floats(rng, N7 * K7, 0.02f);
  for (const auto& [what, g, st] : {std::tuple<const char*, int64_t, bool>{"g128 act-order", 128, false}, {"g128 act-order static groups", 128, true},
                                    {"g-1 act-order", -1, false}}) {
    double ms[2];
    for (const bool mse : {false, true}) {
      const gf::GptqOptions o7{4, g, true, st, true, mse, 0.01f, 128};
      if (!mse) solve_gpu(ctx, N7, K7, W7, H7, o7, false);  // warm-up
      const SolveOut s = solve_gpu(ctx, N7, K7, W7, H7, o7, false);
      ms[mse] = s.times.prepare_ms + s.times.solve_ms;
      timing_line(strf("gptq_quantize N=%lld K=%lld 4-bit %s%s", (long long)N7, (long long)K7, what, mse ? " --mse" : ""), ms[mse],
                  strf("(prepare %.1f ms, solve %.1f ms)", s.times.prepare_ms, s.times.solve_ms));
    }
    std::printf("TIME --mse / default, N=%lld K=%lld 4-bit %s: %.2f×\n", (long long)N7, (long long)K7, what, ms[1] / ms[0]);
  }
}

// Minimal safetensors reader: the header's entries by name (F32 and F16 only).
struct St {
  std::string header;
  std::vector<char> data;
  std::vector<float> get(const std::string& name, std::vector<int64_t>* shape = nullptr) {
    const size_t at = header.find("\"" + name + "\"");
    if (at == std::string::npos) throw std::runtime_error("golden: no tensor " + name);
    const size_t dt = header.find("\"dtype\"", at), sh = header.find("\"shape\"", at), of = header.find("\"data_offsets\"", at);
    const bool f16 = header.compare(header.find('"', header.find(':', dt) + 1) + 1, 3, "F16") == 0;
    if (shape) {
      shape->clear();
      std::stringstream ss(header.substr(header.find('[', sh) + 1, header.find(']', sh) - header.find('[', sh) - 1));
      std::string tok;
      while (std::getline(ss, tok, ',')) shape->push_back(std::stoll(tok));
    }
    std::stringstream os(header.substr(header.find('[', of) + 1, header.find(']', of) - header.find('[', of) - 1));
    std::string a, b;
    std::getline(os, a, ',');
    std::getline(os, b, ',');
    const size_t o0 = std::stoull(a), o1 = std::stoull(b);
    std::vector<float> out;
    if (f16) {
      const __half* p = reinterpret_cast<const __half*>(data.data() + o0);
      for (size_t i = 0; i < (o1 - o0) / 2; ++i) out.push_back(__half2float(p[i]));
    } else {
      out.resize((o1 - o0) / 4);
      std::memcpy(out.data(), data.data() + o0, o1 - o0);
    }
    return out;
  }
};

// variant 0: the default (fp64 factor, fp32 updates); 1: tf32 updates; 2: fp32 factor.
// The bar of test/golden/gptq-golden.test.ts: loss within 1 %, ≥ 95 % identical fp16 entries.
void check_golden(Context& ctx, const std::string& st_path, const std::string& json_path, int variant) {
  std::ifstream f(st_path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + st_path);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  St st;
  st.header.resize(n);
  f.read(&st.header[0], n);
  st.data.assign(std::istreambuf_iterator<char>(f), {});
  std::ifstream jf(json_path);
  if (!jf) throw std::runtime_error("cannot open " + json_path);
  std::string js((std::istreambuf_iterator<char>(jf)), {});
  // Each run: {"linear": "...", "bits": b, "group_size": g, "desc_act": bool, "tensor": "...", "loss": x}
  size_t pos = 0;
  int runs = 0;
  while ((pos = js.find("\"linear\"", pos)) != std::string::npos) {
    auto str_after = [&](const char* key) {
      size_t k = js.find(key, pos), q1 = js.find('"', js.find(':', k) + 1), q2 = js.find('"', q1 + 1);
      return js.substr(q1 + 1, q2 - q1 - 1);
    };
    auto num_after = [&](const char* key) {
      size_t k = js.find(key, pos), c = js.find(':', k);
      return std::stod(js.substr(c + 1, js.find_first_of(",}", c) - c - 1));
    };
    const std::string lin = str_after("\"linear\""), tensor = str_after("\"tensor\"");
    const int bits = (int)num_after("\"bits\"");
    const int64_t g = (int64_t)num_after("\"group_size\"");
    const size_t k = js.find("\"desc_act\"", pos);
    const bool act = js.compare(js.find_first_not_of(" :", js.find(':', k)), 4, "true") == 0;
    const double loss = num_after("\"loss\"");
    pos = js.find('}', pos);
    std::vector<int64_t> shape;
    const auto W = st.get(lin + ".W", &shape);
    const auto H = st.get(lin + ".H");
    const auto ref = st.get(tensor);
    const int64_t N = shape[0], K = shape[1];
    const gf::GptqOptions o{bits, g, act, false, true, false, 0.01f, 128};
    SolveConfig cfg;
    cfg.tf32 = variant == 1;
    cfg.chol_fp32 = variant == 2;
    const SolveOut s = solve_gpu(ctx, N, K, W, H, o, false, cfg);
    size_t same = 0;
    for (size_t i = 0; i < ref.size(); ++i) same += __half_as_ushort(__float2half_rn(s.q[i])) == __half_as_ushort(__float2half_rn(ref[i]));
    const double frac = (double)same / ref.size(), rel = s.res.loss / loss - 1;
    report(std::fabs(rel) < 0.01 && frac >= 0.95 && s.res.damp_raises == 0,
           strf("golden%s %-28s loss %.4f vs %.4f (%+.3f %%, bar 1 %%), identical %.2f %% (bar 95 %%)",
                variant == 1 ? " [tf32 updates]" : variant == 2 ? " [fp32 Cholesky]" : "", tensor.c_str(), s.res.loss, loss, 100 * rel, 100 * frac));
    ++runs;
  }
  report(runs >= 14, strf("golden%s: %d runs read from %s (the golden of ../shared has 14)", variant == 1 ? " [tf32 updates]" : variant == 2 ? " [fp32 Cholesky]" : "", runs, json_path.c_str()));
}

}  // namespace

int main(int argc, char** argv) {
  return run_check("gptq_check", [&](Context& ctx) {
    check_solves(ctx);
    check_gptaq(ctx);
    check_mse_grids(ctx);
    check_refusals(ctx);
    if (argc >= 3)
      for (int variant = 0; variant < 3; ++variant) check_golden(ctx, argv[1], argv[2], variant);
    else
      std::printf("SKIP golden: no paths given (gptq_check GOLDEN.safetensors GOLDEN.json)\n");
    if (timing_enabled()) timings(ctx);
  });
}
