#include "gptq.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "linalg.h"
#include "parallel.h"

namespace gf {

namespace {

struct Grid {
  float scale, zero;
};

// The integer code: clamp(round(w / scale) + zero, 0, maxq); round half to even.
inline float code_of(float w, float scale, float zero, float maxq) {
  return std::min(std::max(std::nearbyint(w / scale) + zero, 0.0f), maxq);
}

// find_params of the reference on one row's slice x[0..n).
inline Grid find_grid(const float* x, int64_t n, float maxq, bool sym, bool mse) {
  float xmin = 0, xmax = 0;
  for (int64_t i = 0; i < n; ++i) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  if (sym) {
    xmax = std::max(std::fabs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin == 0 && xmax == 0) {
    xmin = -1;
    xmax = 1;
  }
  Grid g;
  g.scale = (xmax - xmin) / maxq;
  g.zero = sym ? (maxq + 1) / 2 : std::nearbyint(-xmin / g.scale);
  if (!mse) return g;
  // The reference's search: shrink the range by p = 1, 0.99, …, 0.21 and keep the grid with the
  // least Σ|q − x|^2.4 (first one wins ties).
  float best = std::numeric_limits<float>::infinity();
  for (int i = 0; i < 80; ++i) {
    const float p = 1.0f - (float)i / 100.0f;
    const float lo = p * xmin, hi = p * xmax;
    const float scale = (hi - lo) / maxq;
    const float zero = sym ? (maxq + 1) / 2 : std::nearbyint(-lo / scale);
    float err = 0;
    for (int64_t k = 0; k < n; ++k) {
      const float q = scale * (code_of(x[k], scale, zero, maxq) - zero);
      err += std::pow(std::fabs(q - x[k]), 2.4f);
    }
    if (err < best) {
      best = err;
      g.scale = scale;
      g.zero = zero;
    }
  }
  return g;
}

// The integer code of w on grid g.
inline float code_of(float w, const Grid& g, float maxq) { return code_of(w, g.scale, g.zero, maxq); }

void check_options(int64_t K, const GptqOptions& o) {
  if (o.bits != 2 && o.bits != 3 && o.bits != 4 && o.bits != 8)
    throw std::runtime_error("bits must be 2, 3, 4 or 8, got " + std::to_string(o.bits));
  if (o.group_size != -1 && (o.group_size <= 0 || K % o.group_size != 0))
    throw std::runtime_error("group size " + std::to_string(o.group_size) +
                             " does not divide the input width " + std::to_string(K));
  if (o.block_size <= 0) throw std::runtime_error("block size must be positive");
}

}  // namespace

void rtn_quantize(int64_t N, int64_t K, float* W, const GptqOptions& o, uint8_t* codes,
                  float* scales, int32_t* zeros, int32_t* g_idx) {
  check_options(K, o);
  const float maxq = (float)((1 << o.bits) - 1);
  const int64_t g = o.group_size == -1 ? K : o.group_size, G = K / g;
  for (int64_t k = 0; k < K; ++k) g_idx[k] = (int32_t)(k / g);
  parallel_for(N, [&](int64_t r) {
    float* w = W + r * K;
    for (int64_t j = 0; j < G; ++j) {
      const Grid gr = find_grid(w + j * g, g, maxq, o.sym, o.mse);
      scales[j * N + r] = gr.scale;
      zeros[j * N + r] = (int32_t)gr.zero;
      for (int64_t k = j * g; k < (j + 1) * g; ++k) {
        const float c = code_of(w[k], gr, maxq);
        codes[r * K + k] = (uint8_t)c;
        w[k] = gr.scale * (c - gr.zero);
      }
    }
  });
}

GptqResult gptq_quantize(int64_t N, int64_t K, float* W, const float* H, const GptqOptions& o,
                         uint8_t* codes, float* scales, int32_t* zeros, int32_t* g_idx,
                         int32_t* perm) {
  check_options(K, o);
  GptqResult res;
  const float maxq = (float)((1 << o.bits) - 1);
  const bool grouped = o.group_size != -1;
  const int64_t g = grouped ? o.group_size : K, G = K / g;

  for (int64_t i = 0; i < K * K; ++i)
    if (!std::isfinite(H[i])) throw std::runtime_error("the Hessian has NaN or Inf entries");

  // Without groups, the one grid per row comes from the whole original W (before dead columns).
  std::vector<Grid> row_grid(grouped ? 0 : N);
  if (!grouped)
    parallel_for(N, [&](int64_t r) { row_grid[r] = find_grid(W + r * K, K, maxq, o.sym, o.mse); });

  // Dead columns: diag(H) = 0 → H[i, i] = 1, W[:, i] = 0.
  std::vector<double> Hd(H, H + K * K);
  for (int64_t i = 0; i < K; ++i)
    if (Hd[i * K + i] == 0) {
      Hd[i * K + i] = 1;
      for (int64_t r = 0; r < N; ++r) W[r * K + i] = 0;
      ++res.dead_columns;
    }

  // Static groups: grids of the original column groups, after dead columns, before permuting.
  std::vector<Grid> static_grid(o.static_groups && grouped ? G * N : 0);
  if (!static_grid.empty())
    parallel_for(N, [&](int64_t r) {
      for (int64_t j = 0; j < G; ++j) static_grid[j * N + r] = find_grid(W + r * K + j * g, g, maxq, o.sym, o.mse);
    });

  // Act-order: columns by decreasing diag(H) (stable, so ties keep their natural order).
  std::iota(perm, perm + K, 0);
  if (o.act_order)
    std::stable_sort(perm, perm + K, [&](int32_t a, int32_t b) { return Hd[a * K + a] > Hd[b * K + b]; });
  std::vector<double> Hp((size_t)(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) Hp[i * K + j] = Hd[(int64_t)perm[i] * K + perm[j]];
  double mean_diag = 0;
  for (int64_t i = 0; i < K; ++i) mean_diag += Hp[i * K + i];
  mean_diag /= (double)K;

  // Damping; while H + damping is not positive definite, the damping is doubled (from 1 %
  // when none was asked for), at most 10 times, and the result says how often.
  std::vector<double> Ud((size_t)(K * K)), Hdamp((size_t)(K * K));
  float damp = o.damp_percent;
  for (;;) {
    Hdamp = Hp;
    const double add = (double)damp * mean_diag;
    for (int64_t i = 0; i < K; ++i) Hdamp[i * K + i] += add;
    if (upper_cholesky_of_inverse(K, Hdamp.data(), Ud.data())) break;
    if (res.damp_raises == 10)
      throw std::runtime_error("the Hessian is not positive definite even with damp_percent " +
                               std::to_string(damp));
    damp = damp > 0 ? damp * 2 : 0.01f;
    ++res.damp_raises;
  }
  res.damp_percent = damp;
  std::vector<float> U((size_t)(K * K));
  for (int64_t i = 0; i < K * K; ++i) U[i] = (float)Ud[i];

  // g_idx per the spec, in original column order.
  for (int64_t i = 0; i < K; ++i) {
    if (!grouped) g_idx[i] = 0;
    else if (o.act_order && !o.static_groups) g_idx[perm[i]] = (int32_t)(i / g);
    else g_idx[i] = (int32_t)(i / g);
  }

  // The solve. Rows are independent given U, so each thread takes whole rows through all
  // blocks; inside a row every access is contiguous.
  const int64_t B = o.block_size;
  std::vector<double> row_loss(N, 0.0);
  parallel_for(N, [&](int64_t r) {
    std::vector<float> w(K), w1(B), err(B);
    for (int64_t c = 0; c < K; ++c) w[c] = W[r * K + perm[c]];
    Grid gr = grouped ? Grid{0, 0} : row_grid[r];
    double loss = 0;
    for (int64_t i1 = 0; i1 < K; i1 += B) {
      const int64_t i2 = std::min(i1 + B, K), count = i2 - i1;
      std::copy(w.begin() + i1, w.begin() + i2, w1.begin());
      for (int64_t i = 0; i < count; ++i) {
        const int64_t c = i1 + i;
        if (grouped) {
          if (!o.static_groups) {
            if (c % g == 0) {
              // Grid of the group starting here, from W with the updates of earlier blocks only.
              gr = find_grid(w.data() + c, g, maxq, o.sym, o.mse);
              scales[(c / g) * N + r] = gr.scale;
              zeros[(c / g) * N + r] = (int32_t)gr.zero;
            }
          } else {
            gr = static_grid[(o.act_order ? perm[c] : c) / g * N + r];
          }
        }
        const float x = w1[i];
        const float code = code_of(x, gr, maxq);
        const float q = gr.scale * (code - gr.zero);
        const float d = U[c * K + c];
        loss += (double)((x - q) * (x - q)) / ((double)d * d);
        const float e = (x - q) / d;
        err[i] = e;
        codes[r * K + perm[c]] = (uint8_t)code;
        W[r * K + perm[c]] = q;
        const float* u = U.data() + c * K;
        for (int64_t j = i + 1; j < count; ++j) w1[j] -= e * u[i1 + j];
      }
      // Lazy batch update of the columns after the block: w[i2:] −= Err1 · U[i1:i2, i2:].
      for (int64_t b = 0; b < count; ++b) {
        const float e = err[b];
        const float* u = U.data() + (i1 + b) * K;
        for (int64_t j = i2; j < K; ++j) w[j] -= e * u[j];
      }
    }
    row_loss[r] = loss / 2;
  });
  if (!grouped)
    for (int64_t r = 0; r < N; ++r) {
      scales[r] = row_grid[r].scale;
      zeros[r] = (int32_t)row_grid[r].zero;
    }
  if (!static_grid.empty())
    for (int64_t i = 0; i < G * N; ++i) {
      scales[i] = static_grid[i].scale;
      zeros[i] = (int32_t)static_grid[i].zero;
    }
  res.loss = std::accumulate(row_loss.begin(), row_loss.end(), 0.0);
  return res;
}

}  // namespace gf
