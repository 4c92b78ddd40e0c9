// Checks of native/kernels/cpu/gemm.h against C = A·Bᵀ in fp64 (simple loops): gemm_nt and
// gemm_nt_parallel with row strides and accumulate (test/native/kernels.test.ts covers the plain
// shapes through the addon), the packed-B layout of gemm_pack_b / gemm_pack_bt (bit-exact), and
// gemm_nt_packed with its causal options ndiag (columns beyond row i + ndiag not needed) and
// kdiag (A read only up to k ≤ i + kdiag + 15: NaN beyond that must not reach C).
//   build/cpu-checks/gemm_check          exit 0 only when every case passes
#include "../gemm.h"

#include <cmath>
#include <limits>
#include <vector>

#include "check_util.h"

using namespace gf;
using namespace gf::check;

namespace {

// fp32 sums of K products (fused or not, blocked or not) err by ≤ K·u32·Σ|a·b| (plus one
// product rounding each: (K + 1)·u32); accumulate adds one more rounding of |C|.
double gemm_tol(int64_t K, double absab, double ref) { return (K + 2) * kFloatU * absab + 2 * kFloatU * std::fabs(ref); }

struct Ref { std::vector<double> c, abs; };
// C[i, j] = C0[i, j]·acc + Σ_{k < klim(i)} A[i, k] B[j, k]; tight [M, N] output.
Ref gemm_ref(int64_t M, int64_t N, int64_t K, const std::vector<float>& A, int64_t lda, const std::vector<float>& B, int64_t ldb,
             const std::vector<float>& C0, int64_t ldc, bool acc, int64_t kdiag = -1) {
  Ref r{std::vector<double>(M * N), std::vector<double>(M * N)};
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const int64_t kl = kdiag < 0 ? K : std::min(K, i + kdiag + 1);
      double s = acc ? C0[i * ldc + j] : 0.0, a = acc ? std::fabs(C0[i * ldc + j]) : 0.0;
      for (int64_t k = 0; k < kl; ++k) { s += (double)A[i * lda + k] * B[j * ldb + k]; a += std::fabs((double)A[i * lda + k] * B[j * ldb + k]); }
      r.c[i * N + j] = s;
      r.abs[i * N + j] = a;
    }
  return r;
}

std::vector<float> tight(const std::vector<float>& C, int64_t M, int64_t N, int64_t ldc) {
  std::vector<float> t(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) t[i * N + j] = C[i * ldc + j];
  return t;
}

void check_gemm(std::mt19937& rng) {
  struct Case { int64_t M, N, K, pad; bool acc; };
  for (const Case& c : {Case{3, 5, 7, 2, true}, Case{300, 70, 1000, 5, true}, Case{32, 32000 / 50, 384, 0, false},
                        Case{4, 3, 100, 1, true}, Case{257, 300, 33, 3, false}, Case{64, 64, 4096, 0, true}}) {
    const int64_t lda = c.K + c.pad, ldb = c.K + c.pad, ldc = c.N + c.pad;
    const auto A = random_floats(rng, c.M * lda, 1.0f), B = random_floats(rng, c.N * ldb, 0.1f), C0 = random_floats(rng, c.M * ldc, 1.0f);
    const Ref r = gemm_ref(c.M, c.N, c.K, A, lda, B, ldb, C0, ldc, c.acc);
    for (int v = 0; v < 3; ++v) {
      std::vector<float> C = C0;
      const char* name = v == 0 ? "gemm_nt_ref" : v == 1 ? "gemm_nt" : "gemm_nt_parallel";
      (v == 0 ? gemm_nt_ref : v == 1 ? gemm_nt : gemm_nt_parallel)(c.M, c.N, c.K, A.data(), lda, B.data(), ldb, C.data(), ldc, c.acc);
      validate_result(strf("%s M=%lld N=%lld K=%lld ld+%lld accumulate=%d", name, (long long)c.M, (long long)c.N, (long long)c.K, (long long)c.pad, c.acc),
                      tight(C, c.M, c.N, ldc), r.c, [&](size_t i) { return gemm_tol(c.K, r.abs[i], r.c[i]); });
      bool pad_ok = true;  // columns [N, ldc) of C untouched
      for (int64_t i = 0; i < c.M; ++i)
        for (int64_t j = c.N; j < ldc; ++j) pad_ok &= C[i * ldc + j] == C0[i * ldc + j];
      if (c.pad) report(pad_ok, strf("%s M=%lld N=%lld: padding columns of C untouched", name, (long long)c.M, (long long)c.N));
    }
  }
}

void check_pack(std::mt19937& rng) {
  const int64_t NR = gemm_panel_width();
  for (int64_t N : {int64_t(1), NR, NR + 5, 3 * NR - 1}) {
    const int64_t K = 37, ldb = K + 3, panels = (N + NR - 1) / NR, bps = K * NR + 16;
    const auto B = random_floats(rng, N * ldb, 1.0f);
    std::vector<float> Bt(K * (N + 2));
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k) Bt[k * (N + 2) + j] = B[j * ldb + k];
    std::vector<float> ref(panels * bps, -1.0f), p1(panels * bps, -1.0f), p2(panels * bps, -1.0f);
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t c = 0; c < NR; ++c) ref[p * bps + k * NR + c] = p * NR + c < N ? B[(p * NR + c) * ldb + k] : 0.0f;
    gemm_pack_b(N, K, B.data(), ldb, p1.data(), bps);
    gemm_pack_bt(N, K, Bt.data(), N + 2, p2.data(), bps);
    validate_exact(strf("gemm_pack_b N=%lld K=%lld (panels of %lld, zero padded, panel stride > K·NR)", (long long)N, (long long)K, (long long)NR), p1, ref);
    validate_exact(strf("gemm_pack_bt N=%lld K=%lld", (long long)N, (long long)K), p2, ref);
  }
}

void check_packed(std::mt19937& rng) {
  const int64_t NR = gemm_panel_width();
  struct Case { int64_t M, N, K, ndiag, kdiag; bool acc; };
  for (const Case& c : {Case{70, 100, 64, -1, -1, false}, Case{300, 500, 900, -1, -1, true}, Case{100, 100, 64, 0, -1, false},
                        Case{130, 197, 64, 3, -1, false}, Case{100, 64, 100, -1, 0, false}, Case{77, 50, 200, -1, 5, true}}) {
    const int64_t lda = c.K + 1, ldc = c.N + 1, bps = c.K * NR;
    auto A = random_floats(rng, c.M * lda, 1.0f);
    const auto B = random_floats(rng, c.N * c.K, 0.1f), C0 = random_floats(rng, c.M * ldc, 1.0f);
    if (c.kdiag >= 0)  // the caller's part of the contract: zeros for the 16 after, then NaN (never read)
      for (int64_t i = 0; i < c.M; ++i)
        for (int64_t k = i + c.kdiag + 1; k < c.K; ++k) A[i * lda + k] = k < i + c.kdiag + 16 ? 0.0f : std::numeric_limits<float>::quiet_NaN();
    std::vector<float> Bp(((c.N + NR - 1) / NR) * bps), C = C0;
    gemm_pack_b(c.N, c.K, B.data(), c.K, Bp.data(), bps);
    gemm_nt_packed(c.M, c.N, c.K, A.data(), lda, Bp.data(), bps, C.data(), ldc, c.acc, c.ndiag, c.kdiag);
    const Ref r = gemm_ref(c.M, c.N, c.K, A, lda, B, c.K, C0, ldc, c.acc, c.kdiag);
    // ndiag: only the entries j ≤ i + ndiag are defined; compare those.
    std::vector<float> got;
    std::vector<double> ref, ab;
    std::vector<int64_t> kept;
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j)
        if (c.ndiag < 0 || j <= i + c.ndiag) { got.push_back(C[i * ldc + j]); ref.push_back(r.c[i * c.N + j]); ab.push_back(r.abs[i * c.N + j]); }
    validate_result(strf("gemm_nt_packed M=%lld N=%lld K=%lld ndiag=%lld kdiag=%lld accumulate=%d%s", (long long)c.M, (long long)c.N, (long long)c.K,
                         (long long)c.ndiag, (long long)c.kdiag, c.acc, c.kdiag >= 0 ? " (NaN in A past the zeroed 16)" : ""),
                    got, ref, [&](size_t i) { return gemm_tol(c.K, ab[i], ref[i]); });
  }
}

}  // namespace

int main() {
  return run_check("gemm_check", [] {
    std::mt19937 rng(1401);
    check_gemm(rng);
    check_pack(rng);
    check_packed(rng);
  });
}
