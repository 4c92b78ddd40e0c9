// Checks of native/kernels/cuda/linalg.h: analyse_hessian (dead columns, act-order permutation,
// mean diagonal, refusal of NaN/Inf) and U = upper Cholesky factor of (P H Pᵀ + dead fix +
// damp·mean·I)⁻¹ from upper_cholesky_of_inverse (fp64; triangular inverse in one trtri and
// recursive with bases 128 and 2048), upper_cholesky_of_inverse_f32 and the host-side
// upper_cholesky_of_inverse_ref, against a CPU reference written here in fp64 by the GPTQ
// reference route (L = chol(H), H⁻¹ = L⁻ᵀL⁻¹, U = chol(H⁻¹)ᵀ); the damping raise rule on a
// matrix that is not positive definite, and the refusal when raising does not help; timings.
//   build/cuda/checks/linalg_check          exit 0 only when every case passes
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "../linalg.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

// H = (2/4)·XᵀX from T correlated activations with log-normal column scales; `dead` columns 0.
std::vector<float> random_hessian(std::mt19937& rng, int64_t K, int64_t T, int dead) {
  std::normal_distribution<double> nd(0, 1);
  std::vector<double> X(T * K), colscale(K);
  for (auto& c : colscale) c = std::exp(0.7 * nd(rng));
  for (int64_t t = 0; t < T; ++t) {
    const double common = nd(rng);
    for (int64_t k = 0; k < K; ++k) X[t * K + k] = colscale[k] * (nd(rng) + 0.3 * common);
  }
  for (int d = 0; d < dead; ++d) {
    const int64_t k = (int64_t)(rng() % K);
    for (int64_t t = 0; t < T; ++t) X[t * K + k] = 0;
  }
  std::vector<float> H(K * K);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) s += X[t * K + i] * X[t * K + j];
      H[i * K + j] = H[j * K + i] = (float)(s / 2);
    }
  return H;
}

bool chol_lower(int64_t K, std::vector<double>& A) {  // in place, A = L Lᵀ; false when not PD
  for (int64_t j = 0; j < K; ++j) {
    double d = A[j * K + j];
    for (int64_t p = 0; p < j; ++p) d -= A[j * K + p] * A[j * K + p];
    if (!(d > 0) || !std::isfinite(d)) return false;
    A[j * K + j] = std::sqrt(d);
    for (int64_t i = j + 1; i < K; ++i) {
      double s = A[i * K + j];
      for (int64_t p = 0; p < j; ++p) s -= A[i * K + p] * A[j * K + p];
      A[i * K + j] = s / A[j * K + j];
    }
    for (int64_t i = 0; i < j; ++i) A[i * K + j] = 0;
  }
  return true;
}

struct Prepared {
  std::vector<int32_t> perm;
  std::vector<uint8_t> dead;
  int64_t dead_columns = 0;
  double mean = 0;
  float damp = 0;
  int raises = 0;
  bool pd = false;
  std::vector<double> Hd, U;  // the damped permuted matrix, U (row-major, upper)
  double kappa = 0;           // κ₂(Hd) estimate: λmax(Hd)·λmax(Hd⁻¹) by power iteration
};

double lambda_max(int64_t K, const std::vector<double>& A) {
  std::vector<double> x(K, 1.0), y(K);
  double lam = 0;
  for (int it = 0; it < 60; ++it) {
    double nrm = 0;
    for (int64_t i = 0; i < K; ++i) {
      double s = 0;
      for (int64_t j = 0; j < K; ++j) s += A[i * K + j] * x[j];
      y[i] = s;
      nrm += s * s;
    }
    nrm = std::sqrt(nrm);
    for (int64_t i = 0; i < K; ++i) x[i] = y[i] / nrm;
    lam = nrm;
  }
  return lam;
}

Prepared prepare_ref(int64_t K, const std::vector<float>& H, bool act, float damp0, bool want_u) {
  Prepared p;
  std::vector<double> d(K);
  p.dead.assign(K, 0);
  for (int64_t i = 0; i < K; ++i) {
    d[i] = H[i * K + i];
    if (d[i] == 0) { d[i] = 1; p.dead[i] = 1; ++p.dead_columns; }
  }
  p.perm.resize(K);
  std::iota(p.perm.begin(), p.perm.end(), 0);
  if (act) std::stable_sort(p.perm.begin(), p.perm.end(), [&](int32_t a, int32_t b) { return d[a] > d[b]; });
  for (int64_t i = 0; i < K; ++i) p.mean += d[p.perm[i]];
  p.mean /= (double)K;
  std::vector<double> Hp(K * K);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double v = H[(int64_t)p.perm[i] * K + p.perm[j]];
      Hp[i * K + j] = i == j && v == 0 ? 1.0 : v;
    }
  // Damping: doubled while not positive definite (from 1 % when 0 was asked), ≤ 10 raises.
  float damp = damp0;
  std::vector<double> L;
  for (;;) {
    p.Hd = Hp;
    for (int64_t i = 0; i < K; ++i) p.Hd[i * K + i] += (double)damp * p.mean;
    L = p.Hd;
    if (chol_lower(K, L)) { p.pd = true; break; }
    if (p.raises == 10) return p;
    damp = damp > 0 ? damp * 2 : 0.01f;
    ++p.raises;
  }
  p.damp = damp;
  if (!want_u) return p;
  std::vector<double> Li(K * K, 0.0), Hi(K * K);  // L⁻¹ by forward substitution, column by column
  for (int64_t c = 0; c < K; ++c)
    for (int64_t i = c; i < K; ++i) {
      double s = i == c ? 1.0 : 0.0;
      for (int64_t q = c; q < i; ++q) s -= L[i * K + q] * Li[q * K + c];
      Li[i * K + c] = s / L[i * K + i];
    }
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t q = std::max(i, j); q < K; ++q) s += Li[q * K + i] * Li[q * K + j];
      Hi[i * K + j] = s;
    }
  const double lmax_inv = lambda_max(K, Hi);
  if (!chol_lower(K, Hi)) { p.pd = false; return p; }
  p.U.assign(K * K, 0.0);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = i; j < K; ++j) p.U[i * K + j] = Hi[j * K + i];  // U = Cᵀ, H⁻¹ = C Cᵀ = Uᵀ U
  p.kappa = lambda_max(K, p.Hd) * lmax_inv;
  return p;
}

void check_analyse(Context& ctx, int64_t K, const std::vector<float>& H, bool act, const Prepared& r, const std::string& shape) {
  auto dH = upload(ctx, H);
  const PreparedHessian p = analyse_hessian(ctx, K, dH.get(), act);
  // The mean of K doubles, summed in the same order: equal within K·u64 relative.
  const bool mean_ok = std::fabs(p.mean_diag - r.mean) <= K * kDoubleU * std::fabs(r.mean);
  report(p.perm == r.perm && p.dead == r.dead && p.dead_columns == r.dead_columns && mean_ok,
         strf("analyse_hessian %s: perm %s, dead columns %lld (expected %lld), mean diag %.9g vs %.9g", shape.c_str(),
              p.perm == r.perm ? "equal" : "DIFFERS", (long long)p.dead_columns, (long long)r.dead_columns, p.mean_diag, r.mean));
}

void check_u(Context& ctx, std::mt19937& rng, int64_t K, bool act, int dead, float damp) {
  const auto H = random_hessian(rng, K, 2 * K + 8, dead);
  const Prepared r = prepare_ref(K, H, act, damp, true);
  const std::string shape = strf("K=%lld act-order=%d dead=%d damp=%g", (long long)K, act, dead, damp);
  check_analyse(ctx, K, H, act, r, shape);
  if (!r.pd) { report(false, "reference: H not positive definite for " + shape); return; }
  auto dH = upload(ctx, H);
  const PreparedHessian p0 = analyse_hessian(ctx, K, dH.get(), act);
  DevBuf<double> work(K * K);
  DevBuf<float> work32(K * K), U(K * K);
  double maxu = 0;
  for (double u : r.U) maxu = std::max(maxu, std::fabs(u));
  // fp64 on the device, rounded to fp32 at the end: u32·|U| plus the fp64 factorisation and
  // inverse error, ≲ 4K·u64·κ₂·max|U| for each of the two sides (8K·u64·κ₂·max|U|).
  auto tol64 = [&](size_t i) { return kFloatU * std::fabs(r.U[i]) + 8 * K * kDoubleU * r.kappa * maxu; };
  auto run = [&](const char* name, auto&& f, bool fp32) {
    PreparedHessian p = p0;
    poison(ctx, U.get(), K * K);
    f(p);
    const auto u = to_double(download(ctx, U.get(), K * K));
    const bool damp_ok = p.damp_percent == r.damp && p.damp_raises == r.raises;
    if (!fp32) {
      validate_result(strf("%s %s (κ₂ ≈ %.2e)", name, shape.c_str(), r.kappa), u, r.U, tol64);
    } else {
      // fp32 factor and inverse: normwise ‖ΔU‖_F/‖U‖_F ≤ 4·√K·u32·κ₂ (the probabilistic
      // rounding-error bound of Cholesky and triangular inversion, √K instead of K).
      double num = 0, den = 0;
      bool finite = true;
      for (size_t i = 0; i < u.size(); ++i) { finite &= std::isfinite(u[i]); num += (u[i] - r.U[i]) * (u[i] - r.U[i]); den += r.U[i] * r.U[i]; }
      const double e = finite ? std::sqrt(num / den) : INFINITY, tol = 4 * std::sqrt((double)K) * kFloatU * r.kappa;
      report(e <= tol, strf("%s %s: ‖ΔU‖/‖U‖ %.3e (tol %.3e = 4·√K·u32·κ₂, κ₂ ≈ %.2e)", name, shape.c_str(), e, tol, r.kappa));
    }
    report(damp_ok, strf("%s %s: damping %g after %d raise(s) (reference %g after %d)", name, shape.c_str(), p.damp_percent, p.damp_raises, r.damp, r.raises));
  };
  for (int64_t base : {int64_t(0), int64_t(128), int64_t(2048)})
    run(strf("upper_cholesky_of_inverse (fp64, trtri base %lld)", (long long)base).c_str(),
        [&](PreparedHessian& p) { upper_cholesky_of_inverse(ctx, K, dH.get(), damp, p, work.get(), U.get(), nullptr, base); }, false);
  run("upper_cholesky_of_inverse_ref (CPU engine route)", [&](PreparedHessian& p) { upper_cholesky_of_inverse_ref(ctx, K, dH.get(), damp, p, U.get()); }, false);
  for (int64_t base : {int64_t(0), int64_t(128)})
    run(strf("upper_cholesky_of_inverse_f32 (trtri base %lld)", (long long)base).c_str(),
        [&](PreparedHessian& p) { upper_cholesky_of_inverse_f32(ctx, K, dH.get(), damp, p, work32.get(), U.get(), nullptr, base); }, true);
}

// H − shift·I with shift = λmin + 1.5 % of the mean diagonal: damping 1 % leaves it indefinite
// (λmin − 0.5 % mean), 2 % makes it PD with a margin fp32 also resolves: one raise. Then a
// strongly indefinite matrix: refused after 10 raises.
void check_damping(Context& ctx, std::mt19937& rng) {
  const int64_t K = 200;
  auto H = random_hessian(rng, K, 3 * K, 0);
  const Prepared base = prepare_ref(K, H, false, 0.0f, true);
  std::vector<double> Hi(K * K);  // λmin(H) = 1 / λmax(H⁻¹) = 1 / λmax(UᵀU)
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t q = 0; q <= std::min(i, j); ++q) s += base.U[q * K + i] * base.U[q * K + j];
      Hi[i * K + j] = s;
    }
  const double lmin = 1.0 / lambda_max(K, Hi);
  for (int64_t i = 0; i < K; ++i) H[i * K + i] -= (float)(lmin + 0.015 * base.mean);
  for (float damp : {0.01f, 0.0f}) {
    const Prepared r = prepare_ref(K, H, false, damp, true);
    auto dH = upload(ctx, H);
    DevBuf<double> work(K * K);
    DevBuf<float> work32(K * K), U(K * K);
    for (int variant = 0; variant < 3; ++variant) {
      PreparedHessian p = analyse_hessian(ctx, K, dH.get(), false);
      if (variant == 0) upper_cholesky_of_inverse(ctx, K, dH.get(), damp, p, work.get(), U.get());
      if (variant == 1) upper_cholesky_of_inverse_f32(ctx, K, dH.get(), damp, p, work32.get(), U.get());
      if (variant == 2) upper_cholesky_of_inverse_ref(ctx, K, dH.get(), damp, p, U.get());
      const char* name = variant == 0 ? "fp64" : variant == 1 ? "fp32" : "ref";
      report(r.pd && p.damp_percent == r.damp && p.damp_raises == r.raises && r.raises >= 1,
             strf("damping raise (%s), H shifted below PD, asked %g: used %g after %d raise(s), reference %g after %d", name, damp,
                  p.damp_percent, p.damp_raises, r.damp, r.raises));
    }
  }
  std::vector<float> bad(K * K, 0.0f);
  for (int64_t i = 0; i < K; ++i) bad[i * K + i] = i % 2 ? 1.0f : -1e6f;
  auto dB = upload(ctx, bad);
  DevBuf<double> work(K * K);
  DevBuf<float> work32(K * K), U(K * K);
  PreparedHessian p = analyse_hessian(ctx, K, dB.get(), false);
  PreparedHessian p2 = p, p3 = p;
  const bool ref_refuses = !prepare_ref(K, bad, false, 0.01f, false).pd;
  report(ref_refuses && throws([&] { upper_cholesky_of_inverse(ctx, K, dB.get(), 0.01f, p, work.get(), U.get()); }) &&
             throws([&] { upper_cholesky_of_inverse_f32(ctx, K, dB.get(), 0.01f, p2, work32.get(), U.get()); }) &&
             throws([&] { upper_cholesky_of_inverse_ref(ctx, K, dB.get(), 0.01f, p3, U.get()); }),
         "a strongly indefinite H is refused after 10 raises (fp64, fp32, ref; the reference too)");
  bad[7] = NAN;
  auto dN = upload(ctx, bad);
  report(throws([&] { analyse_hessian(ctx, K, dN.get(), true); }), "analyse_hessian refuses a Hessian with a NaN entry");
}

void timings(Context& ctx, std::mt19937& rng) {
  const int64_t K = 8192;
  // A well-conditioned SPD matrix without an O(K³) host build: I·K + small symmetric noise.
  std::vector<float> H = random_floats(rng, K * K, 0.01f);
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < i; ++j) H[j * K + i] = H[i * K + j];
    H[i * K + i] = (float)K * 0.01f + 1.0f;
  }
  auto dH = upload(ctx, H);
  PreparedHessian p0 = analyse_hessian(ctx, K, dH.get(), true);
  DevBuf<double> work(K * K);
  DevBuf<float> work32(K * K), U(K * K);
  for (int64_t base : {int64_t(0), int64_t(512), int64_t(2048)}) {
    CholTimes t;
    PreparedHessian p = p0;
    const double ms = time_ms(ctx, 3, [&] { upper_cholesky_of_inverse(ctx, K, dH.get(), 0.01f, p, work.get(), U.get(), &t, base); });
    timing_line(strf("upper_cholesky_of_inverse fp64 K=%lld trtri base %lld", (long long)K, (long long)base), ms,
                strf("(summed over the 4 runs: build %.1f, potrf %.1f, trtri %.1f ms)", t.build_ms, t.potrf_ms, t.trtri_ms));
  }
  for (int64_t base : {int64_t(512), int64_t(2048)}) {
    PreparedHessian p = p0;
    const double ms = time_ms(ctx, 3, [&] { upper_cholesky_of_inverse_f32(ctx, K, dH.get(), 0.01f, p, work32.get(), U.get(), nullptr, base); });
    timing_line(strf("upper_cholesky_of_inverse_f32 K=%lld trtri base %lld", (long long)K, (long long)base), ms);
  }
}

}  // namespace

int main() {
  return run_check("linalg_check", [](Context& ctx) {
    std::mt19937 rng(1307);
    check_u(ctx, rng, 1, false, 0, 0.01f);
    check_u(ctx, rng, 100, true, 3, 0.01f);
    check_u(ctx, rng, 640, true, 2, 0.01f);
    check_u(ctx, rng, 1000, false, 1, 0.01f);
    check_u(ctx, rng, 300, true, 0, 0.1f);
    check_damping(ctx, rng);
    if (timing_enabled()) timings(ctx, rng);
  });
}
