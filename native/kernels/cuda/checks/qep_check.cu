// Checks of native/kernels/cuda/qep.h: cross_accumulate (two calls, beta 0 then 1; a row stride
// > K; values near the fp16 limit of opposite signs) and its GPU reference against
// C = α·Σ (Xf − X)ᵀ X in fp64 on the host; qep_correct against gf::qep_correct_ref (the CPU
// engine's fp64 reference) on a plain case, dead columns (bit-exact: no correction there), a
// Hessian that needs damping raises (same damping used, same raises), row ranges (other rows
// untouched bit for bit), small row pieces; qep_correct_f16 = qep_correct rounded to fp16, bit
// for bit; refusals (non-finite H or C, bad ranges); timings at Llama-2-70B's K = 8192.
//   build/cuda/checks/qep_check          exit 0 only when every case passes
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../common/gptq_math.h"
#include "../../cpu/qep.h"
#include "../qep.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

// ref = α·Σ_t (xf − x)_ti x_tj and abs = |α|·Σ_t |(xf − x)_ti · x_tj|, absx = |α|·Σ_t |x_tj| (fp64).
void cross_ref(int64_t T, int64_t K, const std::vector<__half>& Xf, const std::vector<__half>& X, int64_t ldx, double alpha,
               std::vector<double>& ref, std::vector<double>& abs, std::vector<double>& absx) {
  ref.assign(K * K, 0);
  abs.assign(K * K, 0);
  absx.assign(K, 0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < K; ++i) {
      const double d = (double)h2f(Xf[t * ldx + i]) - (double)h2f(X[t * ldx + i]);
      absx[i] += std::fabs(alpha) * std::fabs(h2f(X[t * ldx + i]));
      for (int64_t j = 0; j < K; ++j) {
        const double x = h2f(X[t * ldx + j]);
        ref[i * K + j] += alpha * d * x;
        abs[i * K + j] += std::fabs(alpha * d * x);
      }
    }
}

// cross_accumulate's error: D = (xf − x)/2 is exact before its one rounding to fp16 (≤ u16 = 2^-11
// relative, or 2^-25 absolute below 2^-14: kHalfSub, which the factor 2 of 2α doubles), the
// products D·x are exact in fp32, their sum over T errs by ≤ T·u32·Σ|D·x| (2T·u32: tensor-core
// adds may truncate), and α·s + β·c adds 3 fp32 roundings of the result's size.
double cross_tol(int64_t T, double abs, double absx_j, double ref) {
  return (kHalfU + 2.0 * T * kFloatU) * abs + 2.0 * kHalfSub * absx_j + 4 * kFloatU * std::fabs(ref);
}

void check_cross(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t T1, T2, K, pad; float scale, noise; };
  const Case cases[] = {{300, 200, 96, 0, 1.0f, 0.05f}, {64, 64, 256, 8, 0.3f, 0.3f}, {1, 0, 5, 3, 1.0f, 1.0f}, {128, 100, 40, 0, 1.5e4f, 1.5e4f}};
  for (const Case& c : cases) {
    const int64_t T = c.T1 + c.T2, ldx = c.K + c.pad;
    std::vector<__half> Xm = random_halves(rng, T * ldx, c.scale), Xf(Xm.size());
    std::normal_distribution<float> nd(0, c.noise);
    auto clamp16 = [](float v) { return f2h(std::fmax(-60000.0f, std::fmin(60000.0f, v))); };
    for (size_t i = 0; i < Xm.size(); ++i) {
      Xm[i] = clamp16(h2f(Xm[i]));  // finite fp16 inputs
      Xf[i] = clamp16(h2f(Xm[i]) + nd(rng));
    }
    if (c.scale > 1e4f)  // opposite signs near the fp16 limit: xf − x itself would overflow fp16
      for (int64_t t = 0; t < T; t += 3) { Xf[t * ldx] = f2h(60000.0f); Xm[t * ldx] = f2h(-60000.0f); }
    const double alpha = 2.0 / 3;  // hscale of 3 windows
    std::vector<double> ref, abs, absx;
    cross_ref(T, c.K, Xf, Xm, ldx, alpha, ref, abs, absx);
    auto dX = upload(ctx, Xm), dXf = upload(ctx, Xf);
    DevBuf<__half> D(std::max<int64_t>(c.T1, c.T2) * c.K);
    DevBuf<float> C(c.K * c.K);
    const std::string shape = strf("T=%lld+%lld K=%lld ldx=K+%lld x~%g noise %g", (long long)c.T1, (long long)c.T2, (long long)c.K,
                                   (long long)c.pad, c.scale, c.noise);
    poison(ctx, C.get(), c.K * c.K);  // beta = 0 on the first call: C is not read
    cross_accumulate(ctx, c.T1, c.K, dXf.get(), dX.get(), ldx, D.get(), C.get(), (float)alpha, 0.0f);
    if (c.T2) cross_accumulate(ctx, c.T2, c.K, dXf.get() + c.T1 * ldx, dX.get() + c.T1 * ldx, ldx, D.get(), C.get(), (float)alpha, 1.0f);
    auto tol = [&](size_t i) { return cross_tol(T, abs[i], absx[i % c.K], ref[i]); };
    validate_result("cross_accumulate " + shape, to_double(download(ctx, C.get(), c.K * c.K)), ref, tol);
    CUDA_CHECK(cudaMemsetAsync(C.get(), 0, c.K * c.K * sizeof(float), ctx.stream));
    cross_accumulate_ref(ctx, T, c.K, dXf.get(), dX.get(), ldx, C.get(), (float)alpha, 0.0f);
    // fp64 sums of exact products, rounded once to fp32 (and α rounded to fp32: u32 more).
    validate_result("cross_accumulate_ref " + shape, to_double(download(ctx, C.get(), c.K * c.K)), ref,
                    [&](size_t i) { return 2 * kFloatU * std::fabs(ref[i]) + 1e-12 * abs[i]; });
  }
}

// A QEP problem of K columns: H = 2/n XᵀX and C = 2/n (Xf − X)ᵀ X of T random tokens (dead:
// columns of X that are 0; Xf is not 0 there), W [N, K], all fp32 as the layer hands them over.
struct Problem {
  int64_t N, K;
  std::vector<float> W, H, C;
};
Problem make_problem(std::mt19937& rng, int64_t N, int64_t K, int64_t T, const std::vector<int64_t>& dead, double shift) {
  Problem p{N, K, random_floats(rng, N * K, 0.02f), std::vector<float>(K * K), std::vector<float>(K * K)};
  std::vector<double> X(T * K), Xf(T * K);
  std::normal_distribution<double> nd(0, 1);
  for (int64_t i = 0; i < T * K; ++i) { X[i] = nd(rng); Xf[i] = X[i] + 0.2 * nd(rng); }
  for (int64_t c : dead) for (int64_t t = 0; t < T; ++t) X[t * K + c] = 0;
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double h = 0, cc = 0;
      for (int64_t t = 0; t < T; ++t) { h += X[t * K + i] * X[t * K + j]; cc += (Xf[t * K + i] - X[t * K + i]) * X[t * K + j]; }
      p.H[i * K + j] = (float)(2.0 * h / T);
      p.C[i * K + j] = (float)(2.0 * cc / T);
    }
  // shift < 0: H − |shift|·mean(diag)·I on the live columns, not PD until the damping passes it.
  if (shift != 0) {
    double mean = 0;
    for (int64_t i = 0; i < K; ++i) mean += p.H[i * K + i] == 0 ? 1.0 : p.H[i * K + i];
    mean /= K;
    for (int64_t i = 0; i < K; ++i) if (p.H[i * K + i] != 0) p.H[i * K + i] = (float)(p.H[i * K + i] + shift * mean);
  }
  return p;
}

// |A⁻¹| (fp64, elementwise absolute) of A = H (dead → 1) + λI by Gauss-Jordan, and ‖A‖∞‖A⁻¹‖∞.
std::vector<double> abs_inverse(const Problem& p, double lambda, double& kappa) {
  const int64_t K = p.K;
  std::vector<double> A(K * K), I(K * K, 0);
  for (int64_t i = 0; i < K * K; ++i) A[i] = p.H[i];
  for (int64_t i = 0; i < K; ++i) { if (A[i * K + i] == 0) A[i * K + i] = 1; A[i * K + i] += lambda; I[i * K + i] = 1; }
  double na = 0;
  for (int64_t i = 0; i < K; ++i) { double s = 0; for (int64_t j = 0; j < K; ++j) s += std::fabs(A[i * K + j]); na = std::max(na, s); }
  for (int64_t c = 0; c < K; ++c) {
    int64_t piv = c;
    for (int64_t i = c + 1; i < K; ++i) if (std::fabs(A[i * K + c]) > std::fabs(A[piv * K + c])) piv = i;
    for (int64_t j = 0; j < K; ++j) { std::swap(A[c * K + j], A[piv * K + j]); std::swap(I[c * K + j], I[piv * K + j]); }
    const double d = A[c * K + c];
    for (int64_t j = 0; j < K; ++j) { A[c * K + j] /= d; I[c * K + j] /= d; }
    for (int64_t i = 0; i < K; ++i) {
      if (i == c || A[i * K + c] == 0) continue;
      const double f = A[i * K + c];
      for (int64_t j = 0; j < K; ++j) { A[i * K + j] -= f * A[c * K + j]; I[i * K + j] -= f * I[c * K + j]; }
    }
  }
  double ni = 0;
  for (int64_t i = 0; i < K; ++i) { double s = 0; for (int64_t j = 0; j < K; ++j) { I[i * K + j] = std::fabs(I[i * K + j]); s += I[i * K + j]; } ni = std::max(ni, s); }
  kappa = na * ni;
  return I;
}

// The tolerance of W* per entry, GPU vs the fp64 reference:
//  - R = W_live C in fp32 (cuBLAS, RN fmas in any order): |δR[r, j]| ≤ K·u32·Σ_p |W_rp C_pj| (γ_K);
//  - δy = A⁻¹ δR exactly (A the same on both sides: fp64 of the same fp32 H): |δy| ≤ |A⁻¹| |δR|;
//  - both solves in fp64 (Cholesky vs Gaussian elimination): ≤ 8·K·u64·κ∞(A)·max|y| each;
//  - the result α·y + w rounded to fp32 on both sides: 1 ulp where the doubles straddle a boundary.
std::vector<double> correction_tol(const Problem& p, const std::vector<double>& ref, double lambda, float alpha) {
  const int64_t N = p.N, K = p.K;
  double kappa = 0;
  const std::vector<double> Ainv = abs_inverse(p, lambda, kappa);
  std::vector<char> dead(K, 0);
  for (int64_t i = 0; i < K; ++i) dead[i] = p.H[i * K + i] == 0;
  std::vector<double> tol(N * K);
  std::vector<double> bR(K);
  for (int64_t r = 0; r < N; ++r) {
    double ymax = 0;
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t q = 0; q < K; ++q) if (!dead[q]) s += std::fabs((double)p.W[r * K + q] * p.C[q * K + j]);
      bR[j] = 1.01 * K * kFloatU * s;
      ymax = std::max(ymax, std::fabs(ref[r * K + j] - p.W[r * K + j]) / std::max(alpha, 1e-30f));
    }
    for (int64_t i = 0; i < K; ++i) {
      double e = 0;
      for (int64_t j = 0; j < K; ++j) e += Ainv[i * K + j] * bR[j];
      const double w = std::fabs(ref[r * K + i]);
      tol[r * K + i] = alpha * (e + 16.0 * K * kDoubleU * kappa * ymax) + std::ldexp(1.0, std::ilogb(std::max(w, 1e-38)) - 23);
    }
  }
  return tol;
}

void check_correct(Context& ctx, std::mt19937& rng) {
  struct Case { const char* what; int64_t N, K, T; std::vector<int64_t> dead; double shift; float alpha, damp; int64_t chunk; int raises; };
  const Case cases[] = {
      {"plain", 96, 128, 400, {}, 0, 0.5f, 0.01f, 4096, 0},
      {"dead columns 0, 7, 127", 64, 128, 300, {0, 7, 127}, 0, 1.0f, 0.01f, 4096, 0},
      // live diagonal − 3 % of the mean: not PD at 1 % or 2 %, PD at 4 %: two raises
      {"damping raised (H − 3 % mean·I)", 48, 64, 32, {}, -0.03, 0.5f, 0.01f, 4096, 2},
      {"row pieces of 7", 50, 40, 200, {3}, 0, 0.25f, 0.0f, 7, 0},
  };
  for (const Case& c : cases) {
    const Problem p = make_problem(rng, c.N, c.K, c.T, c.dead, c.shift);
    std::vector<float> wref = p.W;
    const gf::QepResult rr = gf::qep_correct_ref(c.N, c.K, wref.data(), p.H.data(), p.C.data(), c.alpha, c.damp);
    auto W = upload(ctx, p.W), H = upload(ctx, p.H), C = upload(ctx, p.C);
    const gf::QepResult rg = qep_correct(ctx, c.N, c.K, W.get(), H.get(), C.get(), c.alpha, c.damp, {{0, c.N}}, c.chunk);
    const std::vector<float> wg = download(ctx, W.get(), c.N * c.K);
    const std::string shape = strf("%s N=%lld K=%lld alpha=%g damp=%g", c.what, (long long)c.N, (long long)c.K, c.alpha, c.damp);
    report(rg.damp_percent == rr.damp_percent && rg.damp_raises == rr.damp_raises && rr.damp_raises == c.raises,
           strf("qep_correct %s: damping %g after %d raise(s) (reference %g after %d; expected %d)", shape.c_str(), rg.damp_percent,
                rg.damp_raises, rr.damp_percent, rr.damp_raises, c.raises));
    double mean = 0;
    for (int64_t i = 0; i < c.K; ++i) mean += p.H[i * c.K + i] == 0 ? 1.0 : p.H[i * c.K + i];
    mean /= c.K;
    const std::vector<double> ref = to_double(wref), tol = correction_tol(p, ref, gf::damping(rr.damp_percent, mean), c.alpha);
    validate_result("qep_correct vs gf::qep_correct_ref " + shape, to_double(wg), ref, [&](size_t i) { return tol[i]; });
    if (!c.dead.empty()) {  // no correction on a dead column, on either side
      std::vector<float> gd, rd, w0;
      for (int64_t r = 0; r < c.N; ++r)
        for (int64_t d : c.dead) { gd.push_back(wg[r * c.K + d]); rd.push_back(wref[r * c.K + d]); w0.push_back(p.W[r * c.K + d]); }
      validate_exact("qep_correct dead columns keep W " + shape, gd, w0);
      validate_exact("gf::qep_correct_ref dead columns keep W " + shape, rd, w0);
    }
    // fp16 W in and out: the fp32 route's W* rounded to fp16 (same kernels, same inputs).
    std::vector<__half> w16(c.N * c.K), want16(c.N * c.K);
    for (int64_t i = 0; i < c.N * c.K; ++i) w16[i] = f2h(p.W[i]);
    std::vector<float> w16f(c.N * c.K);
    for (int64_t i = 0; i < c.N * c.K; ++i) w16f[i] = h2f(w16[i]);
    auto Wf = upload(ctx, w16f);
    qep_correct(ctx, c.N, c.K, Wf.get(), H.get(), C.get(), c.alpha, c.damp, {{0, c.N}}, c.chunk);
    const std::vector<float> wf = download(ctx, Wf.get(), c.N * c.K);
    for (int64_t i = 0; i < c.N * c.K; ++i) want16[i] = f2h(wf[i]);
    auto Wh = upload(ctx, w16);
    qep_correct_f16(ctx, c.N, c.K, Wh.get(), H.get(), C.get(), c.alpha, c.damp, {{0, c.N}}, c.chunk);
    validate_exact("qep_correct_f16 = qep_correct rounded to fp16 " + shape, bits_of(download(ctx, Wh.get(), c.N * c.K)), bits_of(want16));
  }
  // Row ranges: rows outside them untouched bit for bit, rows inside as the reference.
  {
    const int64_t N = 60, K = 64;
    const Problem p = make_problem(rng, N, K, 200, {}, 0);
    std::vector<float> wref = p.W;
    const gf::QepResult rr = gf::qep_correct_ref(N, K, wref.data(), p.H.data(), p.C.data(), 0.5f, 0.01f);
    auto W = upload(ctx, p.W), H = upload(ctx, p.H), C = upload(ctx, p.C);
    qep_correct(ctx, N, K, W.get(), H.get(), C.get(), 0.5f, 0.01f, {{0, 10}, {35, 60}}, 16);
    const std::vector<float> wg = download(ctx, W.get(), N * K);
    std::vector<float> kept(wg.begin() + 10 * K, wg.begin() + 35 * K), orig(p.W.begin() + 10 * K, p.W.begin() + 35 * K);
    validate_exact("qep_correct rows [10, 35) outside the ranges [0, 10) + [35, 60) untouched", kept, orig);
    double mean = 0;
    for (int64_t i = 0; i < K; ++i) mean += p.H[i * K + i];
    const std::vector<double> ref = to_double(wref), tol = correction_tol(p, ref, gf::damping(rr.damp_percent, mean / K), 0.5f);
    std::vector<double> got = to_double(wg), want = ref;
    for (int64_t i = 10 * K; i < 35 * K; ++i) got[i] = want[i] = 0;
    validate_result("qep_correct rows in the ranges vs gf::qep_correct_ref", got, want, [&](size_t i) { return tol[i]; });
  }
  // Refusals.
  {
    const int64_t N = 8, K = 16;
    Problem p = make_problem(rng, N, K, 40, {}, 0);
    auto W = upload(ctx, p.W), H = upload(ctx, p.H), C = upload(ctx, p.C);
    p.C[5] = NAN;
    auto Cbad = upload(ctx, p.C);
    p.H[3] = INFINITY;
    auto Hbad = upload(ctx, p.H);
    report(throws([&] { qep_correct(ctx, N, K, W.get(), H.get(), Cbad.get(), 0.5f, 0.01f, {{0, N}}); }), "qep_correct refuses a NaN in C");
    report(throws([&] { qep_correct(ctx, N, K, W.get(), Hbad.get(), C.get(), 0.5f, 0.01f, {{0, N}}); }), "qep_correct refuses an Inf in H");
    report(throws([&] { qep_correct(ctx, N, K, W.get(), H.get(), C.get(), 0.5f, 0.01f, {{4, N + 1}}); }), "qep_correct refuses a row range past N");
    std::vector<float> negH(K * K, 0);
    for (int64_t i = 0; i < K; ++i) negH[i * K + i] = -1;  // −I: mean(diag) < 0, so every damping only lowers it
    auto Hn = upload(ctx, negH);
    report(throws([&] { qep_correct(ctx, N, K, W.get(), Hn.get(), C.get(), 0.5f, 0.01f, {{0, N}}); }),
           "qep_correct refuses an H that stays non-PD after the damping raises");
  }
}

void timings(Context& ctx, std::mt19937& rng) {
  const int64_t T = 16384, K = 8192;  // 4 windows of 4096 tokens, Llama-2-70B hidden
  DevBuf<__half> X(T * K), Xf(T * K), D(T * K);
  fill_device_halves(ctx, X.get(), T * K, 1.0f, rng());
  fill_device_halves(ctx, Xf.get(), T * K, 1.0f, rng());
  DevBuf<float> C(K * K);
  const double ms = time_ms(ctx, 5, [&] { cross_accumulate(ctx, T, K, Xf.get(), X.get(), K, D.get(), C.get(), 1.0f, 1.0f); });
  timing_line(strf("cross_accumulate T=%lld K=%lld", (long long)T, (long long)K), ms, strf("%.1f TFLOP/s", cross_flops(T, K) / ms / 1e9));
}

}  // namespace

int main() {
  return run_check("qep_check", [](Context& ctx) {
    std::mt19937 rng(20250514);
    check_cross(ctx, rng);
    check_correct(ctx, rng);
    if (timing_enabled()) timings(ctx, rng);
  });
}
