// Checks of QEP's kernels against fp64 references: the cross term (hessian.h cross_accumulate,
// blocked fp32, and cross_accumulate_ref, fp64 loops) against the exact sum, with tolerances
// from the fp32 arithmetic; add_batch_cross's H against add_batch's (bit-exact: the same
// kernel); the weight correction (qep.h qep_correct: fp32 W·C, fp64 Cholesky solves) against
// qep_correct_ref (fp64, Gaussian elimination), with a tolerance from the fp32 product's error
// carried through |(H + λI)⁻¹|; dead columns left as they were; alpha 0 leaving W bit-exact;
// damping raised the same way by both.
//   build/cpu-checks/qep_check          exit 0 only when every case passes
#include "../qep.h"

#include <cmath>
#include <stdexcept>
#include <vector>

#include "../hessian.h"
#include "check_util.h"

using namespace gf;
using namespace gf::check;

namespace {

void check_cross(std::mt19937& rng) {
  struct Case { int64_t T, K; };
  for (const Case& c : {Case{7, 5}, Case{100, 70}, Case{1500, 300}, Case{300, 520}}) {
    const auto X = random_floats(rng, c.T * c.K, 1.0f, 0.0f, true);
    auto Xf = random_floats(rng, c.T * c.K, 0.05f, 0.0f, false);
    for (int64_t i = 0; i < c.T * c.K; ++i) Xf[i] = round_half(X[i] + Xf[i]);  // fp16 values, as both paths keep
    std::vector<double> exact(c.K * c.K), abs(c.K * c.K);
    for (int64_t i = 0; i < c.K; ++i)
      for (int64_t j = 0; j < c.K; ++j) {
        double s = 0, a = 0;
        for (int64_t t = 0; t < c.T; ++t) {
          const double d = (double)Xf[t * c.K + i] - X[t * c.K + i], p = d * X[t * c.K + j];
          s += p;
          a += std::fabs(p);
        }
        exact[i * c.K + j] = s;
        abs[i * c.K + j] = a;
      }
    // fp32: the difference rounded once (u32·|d|), T products and sums of them, added into C
    // chunk by chunk: ≤ (T + 3)·u32·Σ|d·x|. The fp64 reference errs by ≤ T·u64·Σ|d·x| and rounds
    // its result to fp32 once; both get 2·u32·|C| for that last rounding.
    for (int v = 0; v < 2; ++v) {
      std::vector<float> C(c.K * c.K, 0.0f);
      (v ? cross_accumulate : cross_accumulate_ref)(c.T, c.K, Xf.data(), X.data(), c.K, C.data());
      validate_result(strf("%s T=%lld K=%lld", v ? "cross_accumulate" : "cross_accumulate_ref", (long long)c.T, (long long)c.K), C, exact,
                      [&](size_t i) { return (c.T + 3) * (v ? kFloatU : kDoubleU) * abs[i] + 2 * kFloatU * std::fabs(exact[i]); });
    }
  }
  // add_batch_cross: H bit-exact as add_batch's (same kernel, same order), C = 2/n Σ cross.
  const int64_t n = 3, T = 64, K = 40;
  std::vector<std::vector<float>> xs, xfs;
  for (int64_t w = 0; w < n; ++w) {
    xs.push_back(random_floats(rng, T * K, 1.0f, 0.0f, true));
    xfs.push_back(random_floats(rng, T * K, 1.0f, 0.0f, true));
  }
  std::vector<float> H(K * K), H2(K * K), C(K * K), C2(K * K, 0.0f);
  add_batch(n, T, K, [&](int64_t w) { return xs[w].data(); }, H.data());
  add_batch_cross(n, T, K, [&](int64_t w) { return xs[w].data(); }, [&](int64_t w) { return xfs[w].data(); }, H2.data(), C.data());
  validate_exact("add_batch_cross: H as add_batch's", H2, H);
  for (int64_t w = 0; w < n; ++w) cross_accumulate(T, K, xfs[w].data(), xs[w].data(), K, C2.data());
  for (auto& v : C2) v *= 2.0f / (float)n;
  validate_exact("add_batch_cross: C = 2/n Σ cross_accumulate", C, C2);
}

// (A)⁻¹ of an SPD A [K, K] in fp64 by Gauss-Jordan (for the tolerance only).
std::vector<double> inverse(int64_t K, std::vector<double> A) {
  std::vector<double> I(K * K, 0.0);
  for (int64_t i = 0; i < K; ++i) I[i * K + i] = 1;
  for (int64_t c = 0; c < K; ++c) {
    const double p = A[c * K + c];
    for (int64_t j = 0; j < K; ++j) { A[c * K + j] /= p; I[c * K + j] /= p; }
    for (int64_t i = 0; i < K; ++i) {
      if (i == c) continue;
      const double f = A[i * K + c];
      for (int64_t j = 0; j < K; ++j) { A[i * K + j] -= f * A[c * K + j]; I[i * K + j] -= f * I[c * K + j]; }
    }
  }
  return I;
}

struct Problem {
  int64_t N, K;
  std::vector<float> W, H, C;
};

// W [N, K] fp16 values; X [T, K] and X̃ = X + noise, fp16 values; H, C by add_batch_cross.
Problem problem(std::mt19937& rng, int64_t N, int64_t K, int64_t T, int64_t dead) {
  Problem p{N, K, random_floats(rng, N * K, 0.1f, 0.0f, true), std::vector<float>(K * K), std::vector<float>(K * K)};
  auto X = random_floats(rng, T * K, 1.0f, 0.0f, true), Xf = random_floats(rng, T * K, 0.1f, 0.0f, false);
  for (int64_t i = 0; i < T * K; ++i) Xf[i] = round_half(X[i] + Xf[i]);
  if (dead >= 0)
    for (int64_t t = 0; t < T; ++t) X[t * K + dead] = 0;  // the quantized path's column dead; X̃'s is not
  add_batch_cross(1, T, K, [&](int64_t) { return X.data(); }, [&](int64_t) { return Xf.data(); }, p.H.data(), p.C.data());
  return p;
}

void check_correct(std::mt19937& rng) {
  struct Case { int64_t N, K, T, dead; float alpha, damp; };
  for (const Case& c : {Case{8, 16, 64, -1, 0.5f, 0.01f}, Case{48, 64, 256, -1, 1.0f, 0.01f}, Case{96, 160, 512, 7, 0.5f, 0.01f},
                        Case{40, 96, 48, -1, 0.5f, 0.01f}}) {
    const Problem p = problem(rng, c.N, c.K, c.T, c.dead);
    std::vector<float> fast = p.W, ref = p.W;
    const QepResult rf = qep_correct(c.N, c.K, fast.data(), p.H.data(), p.C.data(), c.alpha, c.damp);
    const QepResult rr = qep_correct_ref(c.N, c.K, ref.data(), p.H.data(), p.C.data(), c.alpha, c.damp);
    const std::string at = strf("N=%lld K=%lld T=%lld alpha=%.2f%s", (long long)c.N, (long long)c.K, (long long)c.T, c.alpha,
                                c.dead >= 0 ? strf(" dead column %lld", (long long)c.dead).c_str() : "");
    report(rf.damp_percent == rr.damp_percent && rf.damp_raises == 0 && rr.damp_raises == 0, "qep_correct: damping as asked, " + at);
    // The tolerance: R = W·C in fp32 errs by δR[r, j] ≤ (K + 2)·u32·Σ_p |W[r, p] C[p, j]|, which the
    // solve carries as α·Σ_j δR[r, j]·|A⁻¹[j, i]| (A = H + λI); the fp64 solves add ≤ 1e3·K·u64
    // of the same sum over |R|; each side rounds W* to fp32 once (u32·|W*| each).
    std::vector<double> A(p.H.begin(), p.H.end());
    double mean = 0;
    for (int64_t i = 0; i < c.K; ++i) { if (A[i * c.K + i] == 0) A[i * c.K + i] = 1; mean += A[i * c.K + i]; }
    for (int64_t i = 0; i < c.K; ++i) A[i * c.K + i] += (double)c.damp * (mean / c.K);
    const std::vector<double> Ai = inverse(c.K, A);
    std::vector<double> refd(ref.begin(), ref.end());
    std::vector<double> tol(c.N * c.K);
    for (int64_t r = 0; r < c.N; ++r) {
      std::vector<double> dR(c.K), aR(c.K);
      for (int64_t j = 0; j < c.K; ++j) {
        double a = 0, s = 0;
        for (int64_t q = 0; q < c.K; ++q) {
          const double w = q == c.dead ? 0.0 : p.W[r * c.K + q];
          a += std::fabs(w * p.C[q * c.K + j]);
          s += w * p.C[q * c.K + j];
        }
        dR[j] = (c.K + 2) * kFloatU * a;
        aR[j] = std::fabs(s);
      }
      for (int64_t i = 0; i < c.K; ++i) {
        double e = 0, f = 0;
        for (int64_t j = 0; j < c.K; ++j) { e += dR[j] * std::fabs(Ai[j * c.K + i]); f += aR[j] * std::fabs(Ai[j * c.K + i]); }
        tol[r * c.K + i] = c.alpha * (e + 1e3 * c.K * kDoubleU * f) + 2 * kFloatU * std::fabs(refd[r * c.K + i]);
      }
    }
    validate_result("qep_correct vs qep_correct_ref, " + at, fast, refd, [&](size_t i) { return tol[i]; });
    double moved = 0;
    for (int64_t i = 0; i < c.N * c.K; ++i) moved = std::max(moved, (double)std::fabs(fast[i] - p.W[i]));
    report(moved > 1e-4, strf("qep_correct moves W (max |W* − W| %.3e), ", moved) + at);
    if (c.dead >= 0) {
      bool same = true;
      for (int64_t r = 0; r < c.N; ++r) same &= fast[r * c.K + c.dead] == p.W[r * c.K + c.dead] && ref[r * c.K + c.dead] == p.W[r * c.K + c.dead];
      report(same, "qep_correct: the dead column is left as it was, " + at);
    }
    std::vector<float> zero = p.W;
    qep_correct(c.N, c.K, zero.data(), p.H.data(), p.C.data(), 0.0f, c.damp);
    validate_exact("qep_correct alpha 0 leaves W, " + at, zero, p.W);
  }
  // An indefinite H (diag 1, 1, 1, −0.1) with no damping: both raise it the same way, until
  // λ = dp · mean(diag) = dp · 0.725 exceeds 0.1 (0 → 0.01 → … → 0.16: five raises).
  const int64_t K4 = 4;
  std::vector<float> H4(K4 * K4, 0.0f), C4 = random_floats(rng, K4 * K4, 0.1f), W4 = random_floats(rng, 3 * K4, 0.1f);
  for (int64_t i = 0; i < K4; ++i) H4[i * K4 + i] = i == 3 ? -0.1f : 1.0f;
  std::vector<float> a = W4, b = W4;
  const QepResult ra = qep_correct(3, K4, a.data(), H4.data(), C4.data(), 0.5f, 0.0f);
  const QepResult rb = qep_correct_ref(3, K4, b.data(), H4.data(), C4.data(), 0.5f, 0.0f);
  report(ra.damp_raises == 5 && rb.damp_raises == 5 && ra.damp_percent == rb.damp_percent,
         strf("qep_correct: an indefinite H with damp 0 is damped (raised %d×, to %.3g) as by qep_correct_ref", ra.damp_raises, ra.damp_percent));
  const Problem p = problem(rng, 16, 64, 128, -1);
  std::vector<float> nan = p.H;
  nan[3] = NAN;
  bool threw = false;
  try {
    qep_correct(16, 64, a.data(), nan.data(), p.C.data(), 0.5f, 0.01f);
  } catch (const std::runtime_error&) {
    threw = true;
  }
  report(threw, "qep_correct: a NaN in H is an error");
}

}  // namespace

int main() {
  return run_check("qep_check", [] {
    std::mt19937 rng(14);
    check_cross(rng);
    check_correct(rng);
  });
}
