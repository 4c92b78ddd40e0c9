// The GPTQ rules both engines share, in the reference's terms (IST-DASLab gptq: quant.py's
// find_params / quantize, gptq.py's fasterquant): the options and their checks, the grid of a
// slice (find_params, with and without the mse search), the integer code of a value, the damping
// (percdamp) and its retry policy, the static group of a column and g_idx. Included by the CPU
// engine (native/kernels/cpu/gptq.cc, g++) and the CUDA engine (native/kernels/cuda/gptq.cu,
// gptq_grid.cuh, linalg.cu, nvcc); docs/gptq.md says what is computed.
//
// Bit-identity across engines: GF_HD functions use the host's operations on the host (/,
// std::nearbyint, std::min/max, std::fma, std::pow) and the device's on the device (__fdiv_rn,
// rintf, fminf/fmaxf, fmaf, pow), exactly what each engine used before this header existed.
// Host and device give the same results for finite inputs, except the fp64 pow of the mse search
// (mse_term: glibc's and CUDA's pow are both within ~2 fp64 ulps, so their results rounded to
// fp32 differ only where the value lies that close to an fp32 rounding boundary, ~1e-8 of the
// terms; native/kernels/cuda/checks/gptq_check.cu counts the grids that come out different).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>

#ifdef __CUDACC__
#define GF_HD __host__ __device__
#define GF_INLINE __forceinline__
#else
#define GF_HD
#define GF_INLINE inline
#endif

namespace gf {

// ---- options ------------------------------------------------------------------------------

struct GptqOptions {
  int bits;               // 2, 3, 4 or 8 (maxq = 2^bits − 1)
  int64_t group_size;     // groupsize; −1: one group of all K columns
  bool act_order;         // actorder / desc_act: columns in order of decreasing diag(H)
  bool static_groups;     // static_groups: grids fixed up front on the original column groups
  bool sym;               // symmetric grid (zero = (maxq + 1) / 2)
  bool mse;               // Quantizer(mse=True): shrink each grid to minimise Σ|q − w|^2.4
                          // (grid 100, maxshrink 0.8); off in AutoGPTQ
  float damp_percent;     // percdamp: damping = damp_percent · mean(diag H)
  int64_t block_size;     // blocksize: the lazy-batch block, 128
};

enum class Engine { cpu, cuda };

constexpr int64_t kCudaBlockSize = 128;  // the CUDA solve's fused block kernel is built for it

// What is wrong with options `o` for a layer of K input columns on `engine`, or nullopt. The
// TS side states the same rules (src/native/index.ts checkGptqOptions; the user-facing
// src/gptq/settings.ts is stricter: damp in (0, 1)); test/native/gptq-math.test.ts compares them.
inline std::optional<std::string> gptq_options_problem(int64_t K, const GptqOptions& o, Engine engine) {
  if (o.bits != 2 && o.bits != 3 && o.bits != 4 && o.bits != 8)
    return "bits must be 2, 3, 4 or 8, got " + std::to_string(o.bits);
  if (o.group_size != -1 && (o.group_size <= 0 || K % o.group_size != 0))
    return "group size " + std::to_string(o.group_size) + " does not divide the input width " +
           std::to_string(K);
  if (!(std::isfinite(o.damp_percent) && o.damp_percent >= 0))
    return "damp_percent must be a finite number ≥ 0, got " + std::to_string(o.damp_percent);
  if (o.block_size <= 0) return std::string("block size must be positive");
  if (engine == Engine::cuda) {
    if (o.block_size != kCudaBlockSize) return std::string("the CUDA solve needs block size 128");
  }
  return std::nullopt;
}

inline void check_gptq_options(int64_t K, const GptqOptions& o, Engine engine) {
  if (auto problem = gptq_options_problem(K, o, engine)) throw std::runtime_error(*problem);
}

// ---- the primitives each side used --------------------------------------------------------

GF_HD GF_INLINE float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
GF_HD GF_INLINE float round_even(float x) {  // torch.round: half to even
#ifdef __CUDA_ARCH__
  return rintf(x);
#else
  return std::nearbyint(x);
#endif
}
GF_HD GF_INLINE float min_f(float a, float b) {
#ifdef __CUDA_ARCH__
  return fminf(a, b);
#else
  return std::min(a, b);
#endif
}
GF_HD GF_INLINE float max_f(float a, float b) {
#ifdef __CUDA_ARCH__
  return fmaxf(a, b);
#else
  return std::max(a, b);
#endif
}
GF_HD GF_INLINE float abs_f(float a) {
#ifdef __CUDA_ARCH__
  return fabsf(a);
#else
  return std::fabs(a);
#endif
}
// The mse search's operations, written so that no compiler choice can change them: a product
// rounded on its own (nvcc would otherwise contract p·xmin into a later subtraction), one fused
// multiply-add (GCC with an FMA-capable -march contracts p·xmax − p·xmin, nvcc too: fixed here
// as the fused form on both sides), and the fp64 power.
GF_HD GF_INLINE float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;  // only ever an operand of fma_f's addend or of a division: nothing to contract
#endif
}
GF_HD GF_INLINE float fma_f(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
GF_HD GF_INLINE double pow_d(double a, double b) {
#ifdef __CUDA_ARCH__
  return pow(a, b);
#else
  return std::pow(a, b);
#endif
}

// ---- the grid (quant.py: Quantizer.find_params, quantize) -----------------------------------

struct Grid {
  float scale, zero;  // zero: an integer value (the code of 0)
};

// find_params after the min/max, xmin = min(0, min x), xmax = max(0, max x) of the slice:
// sym: xmax = max(|xmin|, xmax), and xmin = −xmax where xmin < 0; then xmin = xmax = 0 → [−1, 1].
struct Range {
  float xmin, xmax;
};
GF_HD GF_INLINE Range adjust_range(float xmin, float xmax, bool sym) {
  if (sym) {
    xmax = max_f(abs_f(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  return Range{xmin, xmax};
}

// The grid of an adjusted range: scale = (xmax − xmin) / maxq; zero = (maxq + 1) / 2 (sym) or
// round(−xmin / scale).
GF_HD GF_INLINE Grid grid_of(float xmin, float xmax, float maxq, bool sym) {
  Grid g;
  g.scale = div_rn(xmax - xmin, maxq);
  g.zero = sym ? (maxq + 1) / 2 : round_even(div_rn(-xmin, g.scale));
  return g;
}

GF_HD GF_INLINE Grid grid_from_range(float xmin, float xmax, float maxq, bool sym) {
  const Range r = adjust_range(xmin, xmax, sym);
  return grid_of(r.xmin, r.xmax, maxq, sym);
}

// quantize's integer code: clamp(round(w / scale) + zero, 0, maxq), round half to even.
GF_HD GF_INLINE float quant_code(float w, Grid g, float maxq) {
  return min_f(max_f(round_even(div_rn(w, g.scale)) + g.zero, 0.0f), maxq);
}

// quantize's value: scale · (code − zero).
GF_HD GF_INLINE float dequant(float code, Grid g) { return g.scale * (code - g.zero); }

// ---- the mse search (quant.py Quantizer(mse=True): grid 100, maxshrink 0.8, norm 2.4) -------
// find_params then tries the adjusted range shrunk by p = 1 − i/100, i = 0 … 79, and keeps the
// grid with the least Σ|quantize(x) − x|^2.4 over the slice, the first one on ties. One rule for
// both engines: the candidates (mse_candidate), the term of one value (mse_term) and the sum of
// each candidate's terms in the slice's order, in fp32 (mse_search here; the CUDA solve's warp
// version is native/kernels/cuda/gptq_grid.cuh warp_grid_mse, which sums in the same order).

constexpr int kMseSteps = 80;  // maxshrink · grid

// Candidate i of an adjusted range: grid_of(p·xmin, p·xmax) (not adjusted again), with the
// scale's numerator p·xmax − p·xmin as one fma (lo = p·xmin rounded). i = 0 is grid_of itself.
GF_HD GF_INLINE Grid mse_candidate(int i, float xmin, float xmax, float maxq, bool sym) {
  const float p = 1.0f - div_rn((float)i, 100.0f);
  const float lo = mul_rn(p, xmin);
  Grid g;
  g.scale = div_rn(fma_f(p, xmax, -lo), maxq);
  g.zero = sym ? (maxq + 1) / 2 : round_even(div_rn(-lo, g.scale));
  return g;
}

// |quantize(x) − x|^2.4 of one value: q − x in fp64 (scale · (code − zero) is exact there, so a
// contraction cannot change it), the power in fp64 rounded to fp32. The reference computes it in
// fp32 (q rounded, torch's pow); this form is at least as accurate and the same on both engines
// but for the pow note at the top.
GF_HD GF_INLINE float mse_term(float x, Grid g, float maxq) {
  const float code = quant_code(x, g, maxq);
  const double d = (double)g.scale * (double)(code - g.zero) - (double)x;
  return (float)pow_d(d < 0 ? -d : d, 2.4);
}

// Whether candidate i with error err replaces the best so far (best_i < 0: none yet): a smaller
// error, or an equal one at a lower i; never an error that is not < +inf (NaN, inf). Applied in
// any order it picks what the serial loop's `err < best` from best = +inf picks.
GF_HD GF_INLINE bool mse_better(float err, int i, float best_err, int best_i) {
  if (!(err < INFINITY)) return false;
  return best_i < 0 || err < best_err || (err == best_err && i < best_i);
}

// The search on an adjusted range of x[0..n): serial, the rule as written (`first` if no
// candidate's error is < +inf). *best_err (if given): the winning error sum (+inf if none).
GF_HD GF_INLINE Grid mse_search(const float* x, int64_t n, float xmin, float xmax, float maxq, bool sym,
                                Grid first, float* best_err = nullptr) {
  Grid best_grid = first;
  float best = INFINITY;
  for (int i = 0; i < kMseSteps; ++i) {
    const Grid g = mse_candidate(i, xmin, xmax, maxq, sym);
    float err = 0;
    for (int64_t k = 0; k < n; ++k) err += mse_term(x[k], g, maxq);
    if (err < best) {
      best = err;
      best_grid = g;
    }
  }
  if (best_err) *best_err = best;
  return best_grid;
}

// find_params of one row's slice x[0..n) (serial; the CUDA solve's warp versions are
// native/kernels/cuda/gptq_grid.cuh warp_grid and warp_grid_mse). *mse_err: as mse_search's.
GF_HD GF_INLINE Grid find_params(const float* x, int64_t n, float maxq, bool sym, bool mse,
                                 float* mse_err = nullptr) {
  float xmin = 0, xmax = 0;
  for (int64_t i = 0; i < n; ++i) {
    xmin = min_f(xmin, x[i]);
    xmax = max_f(xmax, x[i]);
  }
  const Range r = adjust_range(xmin, xmax, sym);
  const Grid g = grid_of(r.xmin, r.xmax, maxq, sym);
  return mse ? mse_search(x, n, r.xmin, r.xmax, maxq, sym, g, mse_err) : g;
}

// ---- damping (fasterquant: damp = percdamp * torch.mean(torch.diag(H)); H[diag, diag] += damp)

// The reference stops when torch.linalg.cholesky fails; both engines instead raise the damping
// while H + damping is not positive definite: doubled (from 1 % when 0 was asked for), at most
// kDampMaxRaises times, then an error. The result reports the damping used and the raises.
constexpr int kDampMaxRaises = 10;
constexpr float kDampRestart = 0.01f;

GF_HD GF_INLINE double damping(float damp_percent, double mean_diag) { return (double)damp_percent * mean_diag; }
GF_HD GF_INLINE float raised_damp(float damp_percent) { return damp_percent > 0 ? damp_percent * 2 : kDampRestart; }

struct DampUsed {
  float damp_percent;
  int raises;
};

// Calls factor(damp_percent) (true: H + damping(damp_percent, mean) · I was positive definite
// and is factored) with the asked damping, then with raised ones; throws std::runtime_error
// when the last allowed raise still fails.
template <class Factor>
DampUsed damp_until_pd(float damp_percent, Factor&& factor) {
  DampUsed d{damp_percent, 0};
  while (!factor(d.damp_percent)) {
    if (d.raises == kDampMaxRaises)
      throw std::runtime_error("the Hessian is not positive definite even with damp_percent " +
                               std::to_string(d.damp_percent));
    d.damp_percent = raised_damp(d.damp_percent);
    ++d.raises;
  }
  return d;
}

// ---- column order and groups ------------------------------------------------------------

// actorder: perm = argsort(diag(H), descending), stable (ties keep their natural order);
// the identity without act-order. diag(i) is H[i, i] after the dead-column fix.
template <class Diag>
void act_order_perm(int64_t K, bool act_order, Diag diag, int32_t* perm) {
  std::iota(perm, perm + K, 0);
  if (act_order) std::stable_sort(perm, perm + K, [&](int32_t a, int32_t b) { return diag(a) > diag(b); });
}

// static_groups: the group whose up-front grid column c (permuted position) uses: perm[c] // g
// with act-order, c // g without.
GF_HD GF_INLINE int64_t static_group_of(int64_t c, const int32_t* perm, bool act_order, int64_t g) {
  return (act_order ? perm[c] : c) / g;
}

// g_idx [K] in original column order (g = K without groups, so all 0): act-order without static
// groups: the column quantized i-th (perm[i]) is in group i // g; otherwise g_idx[k] = k // g
// (AutoGPTQ's perm[i] // g, un-permuted, for act-order with static groups). perm may be null
// without act-order.
inline void g_idx_of(int64_t K, int64_t group_size, bool act_order, bool static_groups, const int32_t* perm,
                     int32_t* g_idx) {
  const int64_t g = group_size == -1 ? K : group_size;
  for (int64_t i = 0; i < K; ++i) {
    if (act_order && !static_groups) g_idx[perm[i]] = (int32_t)(i / g);
    else g_idx[i] = (int32_t)(i / g);
  }
}

}  // namespace gf
