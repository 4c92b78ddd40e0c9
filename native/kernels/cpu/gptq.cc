#include "gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "linalg.h"
#include "parallel.h"

namespace gf {

// The baseline: find_params + quantize per group in natural order, no Hessian.
void rtn_quantize(int64_t N, int64_t K, float* W, const GptqOptions& o, uint8_t* codes,
                  float* scales, int32_t* zeros, int32_t* g_idx) {
  check_gptq_options(K, o, Engine::cpu);
  const float maxq = (float)((1 << o.bits) - 1);
  const int64_t g = o.group_size == -1 ? K : o.group_size, G = K / g;
  g_idx_of(K, o.group_size, false, false, nullptr, g_idx);
  parallel_for(N, [&](int64_t r) {
    float* w = W + r * K;
    for (int64_t j = 0; j < G; ++j) {
      const Grid gr = find_params(w + j * g, g, maxq, o.sym, o.mse);
      scales[j * N + r] = gr.scale;
      zeros[j * N + r] = (int32_t)gr.zero;
      for (int64_t k = j * g; k < (j + 1) * g; ++k) {
        const float c = quant_code(w[k], gr, maxq);
        codes[r * K + k] = (uint8_t)c;
        w[k] = dequant(c, gr);
      }
    }
  });
}

// gptq.py GPTQ.fasterquant(blocksize, percdamp, groupsize, actorder, static_groups), step by
// step; the "fasterquant:" comments quote the reference line each part computes.
GptqResult gptq_quantize(int64_t N, int64_t K, float* W, const float* H, const GptqOptions& o,
                         uint8_t* codes, float* scales, int32_t* zeros, int32_t* g_idx,
                         int32_t* perm, const GptaqInput* gptaq) {
  check_gptq_options(K, o, Engine::cpu);
  GptqResult res;
  if (gptaq) {
    if (!gptaq->C) throw std::invalid_argument("gptq_quantize: GPTAQ needs its cross term C");
    if (!(std::isfinite(gptaq->alpha) && gptaq->alpha >= 0))
      throw std::invalid_argument("gptq_quantize: GPTAQ's alpha must be a finite number >= 0");
    for (int64_t i = 0; i < K * K; ++i)
      if (!std::isfinite(gptaq->C[i])) throw std::runtime_error("GPTAQ's cross term has NaN or Inf entries");
  }
  const float maxq = (float)((1 << o.bits) - 1);
  const bool grouped = o.group_size != -1;
  const int64_t g = grouped ? o.group_size : K, G = K / g;

  for (int64_t i = 0; i < K * K; ++i)
    if (!std::isfinite(H[i])) throw std::runtime_error("the Hessian has NaN or Inf entries");

  // fasterquant: if not self.quantizer.ready(): self.quantizer.find_params(W, weight=True)
  // Without groups, the one grid per row comes from the whole original W (before dead columns).
  std::vector<Grid> row_grid(grouped ? 0 : N);
  if (!grouped)
    parallel_for(N, [&](int64_t r) { row_grid[r] = find_params(W + r * K, K, maxq, o.sym, o.mse); });

  // fasterquant: dead = torch.diag(H) == 0; H[dead, dead] = 1; W[:, dead] = 0
  std::vector<double> Hd(H, H + K * K);
  std::vector<uint8_t> dead((size_t)K, 0);
  for (int64_t i = 0; i < K; ++i)
    if (Hd[i * K + i] == 0) {
      Hd[i * K + i] = 1;
      dead[i] = 1;
      for (int64_t r = 0; r < N; ++r) W[r * K + i] = 0;
      ++res.dead_columns;
    }

  // fasterquant: if static_groups: groups = [find_params(W[:, i:i+groupsize]) for i in range(0, K, groupsize)]
  // Grids of the original column groups, after dead columns, before permuting.
  std::vector<Grid> static_grid(o.static_groups && grouped ? G * N : 0);
  if (!static_grid.empty())
    parallel_for(N, [&](int64_t r) {
      for (int64_t j = 0; j < G; ++j) static_grid[j * N + r] = find_params(W + r * K + j * g, g, maxq, o.sym, o.mse);
    });

  // fasterquant: if actorder: perm = torch.argsort(torch.diag(H), descending=True);
  //              W = W[:, perm]; H = H[perm][:, perm]   (stable: ties keep their natural order)
  act_order_perm(K, o.act_order, [&](int32_t i) { return Hd[(int64_t)i * K + i]; }, perm);
  std::vector<double> Hp((size_t)(K * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) Hp[i * K + j] = Hd[(int64_t)perm[i] * K + perm[j]];
  // fasterquant: damp = percdamp * torch.mean(torch.diag(H)); H[diag, diag] += damp
  double mean_diag = 0;
  for (int64_t i = 0; i < K; ++i) mean_diag += Hp[i * K + i];
  mean_diag /= (double)K;

  // fasterquant: H = torch.linalg.cholesky(H); H = torch.cholesky_inverse(H);
  //              H = torch.linalg.cholesky(H, upper=True); Hinv = H
  // U = Hinv in fp64 by one factorisation (linalg.cc); where H + damp is not positive definite
  // the damping is raised (gptq_math.h damp_until_pd: not in the reference, which fails).
  std::vector<double> Ud((size_t)(K * K)), Hdamp((size_t)(K * K));
  const DampUsed damp = damp_until_pd(o.damp_percent, [&](float damp_percent) {
    Hdamp = Hp;
    const double add = damping(damp_percent, mean_diag);
    for (int64_t i = 0; i < K; ++i) Hdamp[i * K + i] += add;
    return upper_cholesky_of_inverse(K, Hdamp.data(), Ud.data());
  });
  res.damp_percent = damp.damp_percent;
  res.damp_raises = damp.raises;
  std::vector<float> U((size_t)(K * K));
  for (int64_t i = 0; i < K * K; ++i) U[i] = (float)Ud[i];
  // gptaq_utils.py: P = alpha * ((self.dXXT @ Hinv.T).triu_(diagonal=1)) @ Hinv (permuted, dead
  // columns of dXXT zeroed; gptaq.h). Without GPTAQ there is no P and the loops below are GPTQ's.
  std::vector<float> Pm(gptaq ? (size_t)(K * K) : 0);
  if (gptaq) gptaq_p(K, gptaq->C, perm, dead.data(), Ud.data(), gptaq->alpha, Pm.data());
  const float* P = gptaq ? Pm.data() : nullptr;

  // AutoGPTQ's g_idx, in original column order.
  g_idx_of(K, o.group_size, o.act_order, o.static_groups, perm, g_idx);

  // The solve. Rows are independent given U, so each thread takes whole rows through all
  // blocks; inside a row every access is contiguous (w is this row of the permuted W).
  const int64_t B = o.block_size;
  std::vector<double> row_loss(N, 0.0);
  parallel_for(N, [&](int64_t r) {
    std::vector<float> w(K), w1(B), err(B), q1(P ? B : 0);
    for (int64_t c = 0; c < K; ++c) w[c] = W[r * K + perm[c]];
    Grid gr = grouped ? Grid{0, 0} : row_grid[r];
    double loss = 0;
    // fasterquant: for i1 in range(0, self.columns, blocksize): i2 = min(i1 + blocksize, self.columns)
    for (int64_t i1 = 0; i1 < K; i1 += B) {
      const int64_t i2 = std::min(i1 + B, K), count = i2 - i1;
      // fasterquant: W1 = W[:, i1:i2].clone(); Hinv1 = Hinv[i1:i2, i1:i2]  (Hinv1[i, j] = U[i1 + i, i1 + j])
      std::copy(w.begin() + i1, w.begin() + i2, w1.begin());
      for (int64_t i = 0; i < count; ++i) {
        const int64_t c = i1 + i;
        if (grouped) {
          if (!o.static_groups) {
            // fasterquant: if (i1 + i) % groupsize == 0:
            //                self.quantizer.find_params(W[:, (i1 + i):(i1 + i + groupsize)], weight=True)
            // From W: the updates of earlier blocks only, not this block's (they are in w1).
            if (c % g == 0) {
              gr = find_params(w.data() + c, g, maxq, o.sym, o.mse);
              scales[(c / g) * N + r] = gr.scale;
              zeros[(c / g) * N + r] = (int32_t)gr.zero;
            }
          } else {
            // fasterquant: idx = i1 + i; if actorder: idx = perm[idx]; self.quantizer = groups[idx // groupsize]
            gr = static_grid[static_group_of(c, perm, o.act_order, g) * N + r];
          }
        }
        // fasterquant: w = W1[:, i]; d = Hinv1[i, i]; q = quantize(w, scale, zero, maxq)
        const float x = w1[i];
        const float code = quant_code(x, gr, maxq);
        const float q = dequant(code, gr);
        const float d = U[c * K + c];
        // fasterquant: Losses1[:, i] = (w - q) ** 2 / d ** 2   (halved below: Losses1 / 2)
        loss += (double)((x - q) * (x - q)) / ((double)d * d);
        // fasterquant: err1 = (w - q) / d; Err1[:, i] = err1; Q1[:, i] = q
        const float e = (x - q) / d;
        err[i] = e;
        codes[r * K + perm[c]] = (uint8_t)code;
        W[r * K + perm[c]] = q;  // fasterquant: if actorder: Q = Q[:, invperm]
        // fasterquant: W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
        const float* u = U.data() + c * K;
        for (int64_t j = i + 1; j < count; ++j) w1[j] -= e * u[i1 + j];
        if (P) {
          // gptaq: W1[:, i:] -= ... - w.unsqueeze(1).matmul(P1[i, i:].unsqueeze(0)), w the column
          // before quantization (its own entry P[c, c] is 0). A loop of its own: GPTQ's stays as is.
          const float* p = P + c * K;
          for (int64_t j = i + 1; j < count; ++j) w1[j] += x * p[i1 + j];
          q1[i] = q;
        }
      }
      // fasterquant: W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])   (the lazy batch update)
      for (int64_t b = 0; b < count; ++b) {
        const float e = err[b];
        const float* u = U.data() + (i1 + b) * K;
        for (int64_t j = i2; j < K; ++j) w[j] -= e * u[j];
      }
      // gptaq: W[:, i2:] -= ... - W1.matmul(P[i1:i2, i2:]). The authors' W1 then holds each
      // column's w − err·d, i.e. its q (up to their fp32 rounding): Q1 is used.
      if (P)
        for (int64_t b = 0; b < count; ++b) {
          const float s = q1[b];
          const float* p = P + (i1 + b) * K;
          for (int64_t j = i2; j < K; ++j) w[j] += s * p[j];
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
  // fasterquant: print('error', torch.sum(Losses).item())
  res.loss = std::accumulate(row_loss.begin(), row_loss.end(), 0.0);
  return res;
}

}  // namespace gf
