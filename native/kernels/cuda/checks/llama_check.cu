// Checks of native/kernels/cuda/llama.h: linear_f16, rms_norm (+ rms_norm_ref), rope_inplace,
// swiglu, add_f16 against CPU references in fp64 (simple loops), on random fp16 inputs from a
// fixed seed, several shapes including edge ones; timings of rms_norm vs its reference.
// (causal_attention and causal_attention_ref: attention_check.cu.)
//   build/cuda/checks/llama_check          exit 0 only when every case passes
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../llama.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

// C[M, N] = alpha · A[M, K] · W[N, K]ᵀ + beta · C0 in fp64; absab[i] = |alpha| Σ_k |a·w|.
void linear_ref(int64_t M, int64_t N, int64_t K, const std::vector<__half>& A, int64_t lda, const std::vector<__half>& W,
                int64_t ldw, const std::vector<__half>& C0, int64_t ldc, double alpha, double beta,
                std::vector<double>& ref, std::vector<double>& absab, std::vector<double>& absc) {
  ref.assign(M * N, 0);
  absab.assign(M * N, 0);
  absc.assign(M * N, 0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = (double)h2f(A[m * lda + k]) * h2f(W[n * ldw + k]);
        s += p;
        a += std::fabs(p);
      }
      const double c = beta * h2f(C0[m * ldc + n]);
      ref[m * N + n] = alpha * s + c;
      absab[m * N + n] = std::fabs(alpha) * a;
      absc[m * N + n] = std::fabs(alpha * s) + std::fabs(c);
    }
}

void check_linear(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t M, N, K, pad; float alpha, beta; };
  const Case cases[] = {{1, 1, 1, 0, 1, 0}, {37, 61, 100, 0, 1, 0}, {128, 256, 384, 0, 1, 0},
                        {5, 4104, 64, 8, 0.25f, 0.5f}, {300, 72, 1000, 3, 1, 1}};
  for (const Case& c : cases) {
    const int64_t lda = c.K + c.pad, ldw = c.K + c.pad, ldc = c.N + c.pad;
    const auto A = random_halves(rng, c.M * lda, 1.0f), W = random_halves(rng, c.N * ldw, 0.05f);
    const auto C0 = random_halves(rng, c.M * ldc, 1.0f);
    auto dA = upload(ctx, A), dW = upload(ctx, W), dC = upload(ctx, C0);
    linear_f16(ctx, c.M, c.N, c.K, dA.get(), lda, dW.get(), ldw, dC.get(), ldc, c.alpha, c.beta);
    const auto C = download(ctx, dC.get(), c.M * ldc);
    std::vector<double> ref, absab, absc, got(c.M * c.N);
    linear_ref(c.M, c.N, c.K, A, lda, W, ldw, C0, ldc, c.alpha, c.beta, ref, absab, absc);
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) got[m * c.N + n] = h2f(C[m * ldc + n]);
    // fp16 products are exact in fp32; the fp32 sum of K of them errs by ≤ K·u32·Σ|a·w| (2K·u32:
    // tensor-core adders may truncate); alpha·s + beta·c two more fp32 roundings; then one
    // rounding to fp16: u16·|C| + the subnormal half-spacing.
    validate_result(strf("linear_f16 M=%lld N=%lld K=%lld ld+%lld alpha=%g beta=%g", (long long)c.M, (long long)c.N,
                         (long long)c.K, (long long)c.pad, c.alpha, c.beta),
                    got, ref, [&](size_t i) {
                      return kHalfU * std::fabs(ref[i]) * (1 + kHalfU) + kHalfSub + 2.0 * c.K * kFloatU * absab[i] +
                             4 * kFloatU * absc[i];
                    });
    // The padding columns of C are not written.
    bool pad_ok = true;
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = c.N; n < ldc; ++n) pad_ok &= hbits(C[m * ldc + n]) == hbits(C0[m * ldc + n]);
    if (c.pad) report(pad_ok, strf("linear_f16 M=%lld N=%lld: columns [N, ldc) of C untouched", (long long)c.M, (long long)c.N));
  }
}

// out = fp16(fp16(x · inv) · w), inv = 1/sqrt(Σx²/H + eps): reference without any rounding.
void check_rms_norm(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t T, H; float std; };
  const Case cases[] = {{64, 1024, 1.0f}, {1, 8, 1.0f}, {3, 4104, 3.0f}, {17, 8192, 0.5f}, {5, 256, 30.0f}};
  const float eps = 1e-5f;
  for (const Case& c : cases) {
    auto x = random_halves(rng, c.T * c.H, c.std);
    if (c.T > 1)
      for (int64_t i = 0; i < c.H; ++i) x[i] = f2h(0.0f);  // row 0 all zeros: out = 0
    const auto w = random_halves(rng, c.H, 0.1f, 1.0f);
    auto dx = upload(ctx, x), dw = upload(ctx, w);
    std::vector<double> ref(c.T * c.H);
    for (int64_t t = 0; t < c.T; ++t) {
      double ss = 0;
      for (int64_t i = 0; i < c.H; ++i) ss += (double)h2f(x[t * c.H + i]) * h2f(x[t * c.H + i]);
      const double inv = 1.0 / std::sqrt(ss / c.H + eps);
      for (int64_t i = 0; i < c.H; ++i) ref[t * c.H + i] = h2f(x[t * c.H + i]) * inv * h2f(w[i]);
    }
    // inv in fp32: Σx² of positive terms errs by ≤ H·u32 relative, halved by the square root,
    // plus the /H, +eps, sqrt and 1/· roundings (4·u32); then fp32 x·inv (u32), two fp16 roundings
    // (2·u16) and their subnormal half-spacings (before and after ·w).
    const double d_inv = (c.H / 2.0 + 4) * kFloatU;
    auto tol = [&](size_t i) {
      return std::fabs(ref[i]) * (2 * kHalfU + d_inv + 2 * kFloatU) * (1 + 2 * kHalfU) + kHalfSub * (1 + std::fabs(h2f(w[i % c.H])));
    };
    DevBuf<__half> out(c.T * c.H);
    for (int variant = 0; variant < 2; ++variant) {
      poison(ctx, out.get(), c.T * c.H);
      if (variant == 0) rms_norm(ctx, c.T, c.H, dx.get(), dw.get(), eps, out.get());
      else rms_norm_ref(ctx, c.T, c.H, dx.get(), dw.get(), eps, out.get());
      validate_result(strf("%s T=%lld H=%lld x std %g (row 0 zeros)", variant ? "rms_norm_ref" : "rms_norm", (long long)c.T,
                           (long long)c.H, c.std),
                      to_double(download(ctx, out.get(), c.T * c.H)), ref, tol);
    }
  }
  if (!timing_enabled()) return;
  const int64_t T = 4096, H = 8192;
  DevBuf<__half> x(T * H), out(T * H);
  fill_device_halves(ctx, x.get(), T * H, 1.0f, rng());
  auto w = upload(ctx, random_halves(rng, H, 0.1f, 1.0f));
  const double gb = 2.0 * T * H * 2 / 1e9;
  const double a = time_ms(ctx, 10, [&] { rms_norm(ctx, T, H, x.get(), w.get(), eps, out.get()); });
  timing_line(strf("rms_norm T=%lld H=%lld (block of 256 per row)", (long long)T, (long long)H), a, strf("%.0f GB/s", gb / a * 1e3));
  const double b = time_ms(ctx, 3, [&] { rms_norm_ref(ctx, T, H, x.get(), w.get(), eps, out.get()); });
  timing_line(strf("rms_norm_ref T=%lld H=%lld (thread per row)", (long long)T, (long long)H), b, strf("%.0f GB/s", gb / b * 1e3));
}

// rotate-half RoPE on the q part (heads) and the k part (kv heads, at column QD) of a stacked
// [T, (heads + 2·kv)·D] buffer; the v part must stay bit-identical.
void check_rope(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t windows, S, heads, kv, D; float theta; };
  const Case cases[] = {{2, 37, 4, 2, 64, 10000.0f}, {1, 4096, 2, 1, 128, 500000.0f}, {3, 5, 1, 1, 80, 10000.0f},
                        {2, 300, 8, 8, 128, 10000.0f}};
  for (const Case& c : cases) {
    const int64_t T = c.windows * c.S, QD = c.heads * c.D, KVD = c.kv * c.D, ld = QD + 2 * KVD, half = c.D / 2;
    const auto x0 = random_halves(rng, T * ld, 2.0f);
    auto dx = upload(ctx, x0);
    rope_inplace(ctx, T, c.S, c.heads, c.D, c.theta, dx.get(), ld);
    rope_inplace(ctx, T, c.S, c.kv, c.D, c.theta, dx.get() + QD, ld);
    const auto x = download(ctx, dx.get(), T * ld);
    std::vector<double> got, ref, tol;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t col0 : {int64_t(0), QD})
        for (int64_t h = 0; h < (col0 ? c.kv : c.heads); ++h)
          for (int64_t i = 0; i < half; ++i) {
            // The angle as transformers (and the kernel) computes it, in fp32; cos/sin in fp64.
            const float inv_freq = 1.0f / std::pow(c.theta, (float)(2 * i) / (float)c.D);
            const float ang = (float)(t % c.S) * inv_freq;
            const double co = std::cos((double)ang), si = std::sin((double)ang);
            const int64_t at = t * ld + col0 + h * c.D + i;
            const double a = h2f(x0[at]), b = h2f(x0[at + half]);
            // Device powf (≤ 4 ulp) and the host's (≤ 1 ulp), each then 1/· and pos·(rounded):
            // the two angles differ by ≤ 14·u32·ang (16 here); cosf/sinf ≤ 2 ulp (2·u32 absolute);
            // cos/sin rounded to fp16; each of the 4 products and the 2 sums rounded to fp16.
            const double e_ang = 16 * kFloatU * std::fabs((double)ang) + 2 * kFloatU;
            const double ec = e_ang + kHalfU * std::fabs(co) + kHalfSub, es = e_ang + kHalfU * std::fabs(si) + kHalfSub;
            for (int part = 0; part < 2; ++part) {
              const double r = part ? b * co + a * si : a * co - b * si;
              const double ein = std::fabs(a) * (part ? es : ec) + std::fabs(b) * (part ? ec : es);
              const double eprod = kHalfU * (std::fabs(a) * (std::fabs(part ? si : co) + ec) + std::fabs(b) * (std::fabs(part ? co : si) + es)) + 2 * kHalfSub;
              ref.push_back(r);
              tol.push_back(ein + eprod + kHalfU * (std::fabs(r) + ein + eprod) + kHalfSub);
              got.push_back(h2f(x[at + part * half]));
            }
          }
    validate_result(strf("rope_inplace windows=%lld S=%lld heads=%lld/%lld D=%lld theta=%g (q and k parts)", (long long)c.windows,
                         (long long)c.S, (long long)c.heads, (long long)c.kv, (long long)c.D, c.theta),
                    got, ref, [&](size_t i) { return tol[i]; });
    std::vector<uint16_t> v0, v1;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = QD + KVD; j < ld; ++j) { v0.push_back(hbits(x0[t * ld + j])); v1.push_back(hbits(x[t * ld + j])); }
    validate_exact(strf("rope_inplace S=%lld D=%lld: the v columns beyond both parts untouched", (long long)c.S, (long long)c.D), v1, v0);
  }
}

void check_swiglu(Context& ctx, std::mt19937& rng) {
  struct Case { int64_t T, F; };
  const Case cases[] = {{37, 1024}, {3, 13}, {1, 1}, {64, 28672}};
  for (const Case& c : cases) {
    auto gu = random_halves(rng, c.T * 2 * c.F, 2.0f);
    const float extremes[] = {-30.0f, -90.0f, 12.0f, 0.0f, 1e-6f, -65504.0f, 65504.0f};
    for (int j = 0; j < 7 && j < c.F; ++j) {  // gate values of row 0, their up values 0.5 (finite s·u)
      gu[j] = f2h(extremes[j]);
      gu[c.F + j] = f2h(0.5f);
    }
    auto dgu = upload(ctx, gu);
    DevBuf<__half> out(c.T * c.F);
    poison(ctx, out.get(), c.T * c.F);
    swiglu(ctx, c.T, c.F, dgu.get(), out.get());
    std::vector<double> ref(c.T * c.F), absu(c.T * c.F);
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t f = 0; f < c.F; ++f) {
        const double g = h2f(gu[t * 2 * c.F + f]), u = h2f(gu[t * 2 * c.F + c.F + f]);
        ref[t * c.F + f] = g / (1.0 + std::exp(-g)) * u;
        absu[t * c.F + f] = std::fabs(u);
      }
    // silu in fp32: expf ≤ 2 ulp, 1+e and g/(·) one rounding each: ≤ 4·u32 relative; rounded to
    // fp16 (u16, subnormal half-spacing); s·u in fp32 (u32) rounded to fp16 (u16, half-spacing).
    validate_result(strf("swiglu T=%lld F=%lld (row 0: gate −30, −90, 12, 0, 1e-6, ±65504)", (long long)c.T, (long long)c.F),
                    to_double(download(ctx, out.get(), c.T * c.F)), ref, [&](size_t i) {
                      return std::fabs(ref[i]) * (2 * kHalfU + 5 * kFloatU) * (1 + kHalfU) + kHalfSub * (1 + absu[i]);
                    });
  }
}

void check_add(Context& ctx, std::mt19937& rng) {
  for (int64_t n : {int64_t(1), int64_t(1000003)}) {
    auto a = random_halves(rng, n, 100.0f), b = random_halves(rng, n, 0.01f);
    if (n > 4) { a[0] = f2h(65504.0f); b[0] = f2h(64.0f); a[1] = f2h(6e-8f); b[1] = f2h(-6e-8f); }
    auto da = upload(ctx, a), db = upload(ctx, b);
    DevBuf<__half> out(n);
    add_f16(ctx, n, da.get(), db.get(), out.get());
    // fp16 + fp16 in fp32 then rounded to fp16 equals the correctly rounded sum (24 ≥ 2·11 + 2
    // bits: no double-rounding error): the reference is exact, the comparison bit-exact.
    std::vector<uint16_t> ref(n);
    for (int64_t i = 0; i < n; ++i) ref[i] = hbits(f2h((float)((double)h2f(a[i]) + (double)h2f(b[i]))));
    validate_exact(strf("add_f16 n=%lld (65504+64 → inf, subnormals)", (long long)n), bits_of(download(ctx, out.get(), n)), ref);
    add_f16(ctx, n, da.get(), db.get(), da.get());  // out aliases a
    validate_exact(strf("add_f16 n=%lld in place (out = a)", (long long)n), bits_of(download(ctx, da.get(), n)), ref);
  }
}

}  // namespace

int main() {
  return run_check("llama_check", [](Context& ctx) {
    std::mt19937 rng(1301);
    check_linear(ctx, rng);
    check_rms_norm(ctx, rng);
    check_rope(ctx, rng);
    check_swiglu(ctx, rng);
    check_add(ctx, rng);
  });
}
