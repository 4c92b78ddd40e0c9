// Checks of native/kernels/cuda/eval_ops.h: embed_rows, count_nonfinite, token_nll (+ its GPU
// reference token_nll_ref) against CPU references (fp64 for the NLL), random inputs from a fixed
// seed, edge shapes (one row, V not a multiple of the block, row strides > V, bad ids, NaN/Inf
// logits, no-target rows); timings of token_nll vs token_nll_ref.
//   build/cuda/checks/eval_ops_check          exit 0 only when every case passes
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../eval_ops.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

void check_embed(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t T, H, V; };
  for (const Case& c : {Case{37, 256, 100}, Case{1, 8, 1}, Case{300, 8192, 1000}}) {
    const auto table = random_halves(rng, c.V * c.H, 1.0f);
    std::vector<int32_t> ids(c.T);
    std::uniform_int_distribution<int32_t> id(0, (int32_t)c.V - 1);
    for (auto& x : ids) x = id(rng);
    int bad_expected = 0;
    if (c.T >= 3) { ids[1] = -1; ids[2] = (int32_t)c.V; bad_expected = 2; }
    auto dt = upload(ctx, table);
    auto di = upload(ctx, ids);
    DevBuf<__half> x(c.T * c.H);
    DevBuf<int> bad(1);
    poison(ctx, x.get(), c.T * c.H);
    CUDA_CHECK(cudaMemsetAsync(bad.get(), 0, sizeof(int), ctx.stream));
    embed_rows(ctx, c.T, c.H, c.V, di.get(), dt.get(), x.get(), bad.get());
    // A gather: bit-exact; an id outside [0, V) gives a row of zeros and counts once.
    std::vector<uint16_t> ref(c.T * c.H);
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t i = 0; i < c.H; ++i) {
        const bool ok = ids[t] >= 0 && ids[t] < c.V;
        ref[t * c.H + i] = ok ? hbits(table[ids[t] * c.H + i]) : 0;
      }
    const std::string what = strf("embed_rows T=%lld H=%lld V=%lld (%d ids outside [0, V))", (long long)c.T, (long long)c.H, (long long)c.V, bad_expected);
    validate_exact(what, bits_of(download(ctx, x.get(), c.T * c.H)), ref);
    const int got = download(ctx, bad.get(), 1)[0];
    report(got == bad_expected, strf("%s: bad-id count %d, expected %d", what.c_str(), got, bad_expected));
  }
}

void check_nonfinite(Context& ctx, std::mt19937& rng) {
  for (int64_t n : {int64_t(0), int64_t(1), int64_t(255), int64_t(257), int64_t(1000003), int64_t(4096 * 256 * 3 + 5)}) {
    auto x = random_halves(rng, n, 1000.0f);
    const uint16_t specials[] = {0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfe00, 0x7bff, 0xfbff};  // inf, −inf, NaNs, ±65504
    std::uniform_int_distribution<int64_t> at(0, std::max<int64_t>(0, n - 1));
    for (int j = 0; n > 0 && j < 20; ++j) x[at(rng)] = __ushort_as_half(specials[j % 7]);
    int64_t expected = 7;  // the count is added to what is there
    for (const auto& h : x) expected += (hbits(h) & 0x7c00) == 0x7c00;
    auto dx = upload(ctx, x);
    auto dc = upload(ctx, std::vector<int>{7});
    count_nonfinite(ctx, n, dx.get(), dc.get());
    const int got = download(ctx, dc.get(), 1)[0];
    report(got == expected, strf("count_nonfinite n=%lld: 7 + %lld NaN/Inf counted as %d (±65504 are finite)", (long long)n,
                                 (long long)(expected - 7), got));
  }
}

void check_nll(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t M, V, pad; float std; };
  for (const Case& c : {Case{64, 32000, 0, 3.0f}, Case{1, 37, 0, 1.0f}, Case{300, 1000, 8, 30.0f}, Case{17, 257, 3, 3.0f}}) {
    const int64_t ldl = c.V + c.pad;
    auto logits = random_halves(rng, c.M * ldl, c.std);
    std::vector<int32_t> tg(c.M);
    std::uniform_int_distribution<int32_t> id(0, (int32_t)c.V - 1);
    for (int64_t i = 0; i < c.M; ++i) tg[i] = i % 17 == 16 ? -1 : id(rng);
    std::vector<bool> nonfinite(c.M, false);
    if (c.M > 5) {  // row 3: an Inf logit, row 5: a NaN logit (in the row, not the padding)
      logits[3 * ldl + c.V / 2] = __ushort_as_half(0x7c00);
      logits[5 * ldl + c.V - 1] = __ushort_as_half(0x7e00);
      nonfinite[3] = nonfinite[5] = true;
    }
    auto dl = upload(ctx, logits);
    auto dt = upload(ctx, tg);
    // Reference in fp64: log Σ exp(l_j − max) + max − l_target; 0 without a target.
    std::vector<double> ref(c.M), tol(c.M), tol_ref(c.M);
    for (int64_t r = 0; r < c.M; ++r) {
      const __half* row = logits.data() + r * ldl;
      double mx = -INFINITY, mn = INFINITY, s = 0;
      for (int64_t j = 0; j < c.V; ++j) { mx = std::max(mx, (double)h2f(row[j])); mn = std::min(mn, (double)h2f(row[j])); }
      for (int64_t j = 0; j < c.V; ++j) s += std::exp((double)h2f(row[j]) - mx);
      ref[r] = tg[r] < 0 ? 0.0 : nonfinite[r] ? NAN : std::log(s) + mx - h2f(row[tg[r]]);
      // token_nll: each term expf(l − max) in fp32: l − max rounded (u32·|l − max|), expf ≤ 2 ulp
      // (2^-22 relative); the fp64 sum and log add ~(V + 4)·u64: the log moves by the relative error.
      const double spread = mx - mn, big = std::fabs(mx) + std::fabs(ref[r]) + spread;
      tol[r] = 2.0 / 4194304 + kFloatU * spread + (c.V + 4) * kDoubleU * (1 + big);
      tol_ref[r] = (c.V + 4) * kDoubleU * (1 + big);  // token_nll_ref: exp and sum in fp64
    }
    DevBuf<double> a(c.M), b(c.M);
    token_nll(ctx, c.M, c.V, dl.get(), ldl, dt.get(), a.get());
    token_nll_ref(ctx, c.M, c.V, dl.get(), ldl, dt.get(), b.get());
    const auto x = download(ctx, a.get(), c.M), y = download(ctx, b.get(), c.M);
    const std::string shape = strf("M=%lld V=%lld ldl=V+%lld logits std %.0f, every 17th row without target%s", (long long)c.M, (long long)c.V,
                                   (long long)c.pad, c.std, c.M > 5 ? ", rows 3/5 with Inf/NaN → NaN" : "");
    validate_result("token_nll vs fp64 " + shape, x, ref, [&](size_t i) { return tol[i]; });
    // The GPU reference does not look for non-finite logits: compare it on the finite rows.
    std::vector<double> yf, rf, tf;
    for (int64_t r = 0; r < c.M; ++r)
      if (!nonfinite[r]) { yf.push_back(y[r]); rf.push_back(ref[r]); tf.push_back(tol_ref[r]); }
    validate_result("token_nll_ref vs fp64 (finite rows) " + shape, yf, rf, [&](size_t i) { return tf[i]; });
  }
  if (!timing_enabled()) return;
  const int64_t M = 4096, V = 32000;
  DevBuf<__half> l(M * V);
  fill_device_halves(ctx, l.get(), M * V, 3.0f, rng());
  auto t = upload(ctx, std::vector<int32_t>(M, 11));
  DevBuf<double> o(M);
  const double gb = 2.0 * M * V / 1e9;
  const double a = time_ms(ctx, 10, [&] { token_nll(ctx, M, V, l.get(), V, t.get(), o.get()); });
  timing_line(strf("token_nll M=%lld V=%lld (block of 256 per row)", (long long)M, (long long)V), a, strf("%.0f GB/s", gb / a * 1e3));
  const double b = time_ms(ctx, 3, [&] { token_nll_ref(ctx, M, V, l.get(), V, t.get(), o.get()); });
  timing_line(strf("token_nll_ref M=%lld V=%lld (thread per row)", (long long)M, (long long)V), b, strf("%.0f GB/s", gb / b * 1e3));
}

}  // namespace

int main() {
  return run_check("eval_ops_check", [](Context& ctx) {
    std::mt19937 rng(1303);
    check_embed(ctx, rng);
    check_nonfinite(ctx, rng);
    check_nll(ctx, rng);
  });
}
