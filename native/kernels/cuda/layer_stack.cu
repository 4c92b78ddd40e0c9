#include "layer_stack.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "pack.h"
#include "qep.h"

namespace gfc {

namespace {

__global__ void f16_to_f32_kernel(int64_t n, const __half* a, float* b) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    b[i] = __half2float(a[i]);
}
__global__ void f32_to_f16_kernel(int64_t n, const float* a, __half* b) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    b[i] = __float2half_rn(a[i]);
}

// Device → host through a pinned staging buffer (pageable copies ran at a few GB/s: 0.3 s of
// a 70B layer's packed tensors on an H100).
void copy_to_host(Context& ctx, void* dst, const void* src, size_t bytes) {
  static void* pinned = nullptr;
  const size_t piece = 64u << 20;
  if (!pinned) CUDA_CHECK(cudaMallocHost(&pinned, piece));
  for (size_t off = 0; off < bytes; off += piece) {
    const size_t n = std::min(piece, bytes - off);
    CUDA_CHECK(cudaMemcpyAsync(pinned, (const char*)src + off, n, cudaMemcpyDeviceToHost, ctx.stream));
    ctx.sync();
    std::memcpy((char*)dst + off, pinned, n);
  }
}

}  // namespace

void solve_stack(Context& ctx, Timeline& tl, const Stack& s, const float* H, const LayerQuantOptions& o,
                 std::vector<LinearOut>& out, LayerTimes& t, const float* C) {
  const int64_t N = s.N, K = s.K, g = o.gptq.group_size == -1 ? K : o.gptq.group_size, G = K / g;
  const int bits = o.gptq.bits;
  DevBuf<float> W32(N * K);
  f16_to_f32_kernel<<<4096, 256, 0, ctx.stream>>>(N * K, s.W, W32.get());
  CUDA_LAUNCH_CHECK();
  DevBuf<uint8_t> codes(N * K);
  DevBuf<float> scales(G * N);
  DevBuf<int32_t> zeros(G * N);
  std::vector<int32_t> g_idx(K), perm(K);
  SolveTimes st;
  ctx.sync();  // the solve's host clock must not absorb the forward work still queued
  std::vector<double> row_loss;
  const GptaqDevice ga{C, o.gptaq_alpha};
  const gf::GptqResult r = gptq_quantize(ctx, N, K, W32.get(), H, o.gptq, codes.get(), scales.get(), zeros.get(),
                                         g_idx.data(), perm.data(), o.solve, &st, &row_loss, C ? &ga : nullptr);
  t.chol_s += st.prepare_ms / 1e3;
  t.solve_s += st.solve_ms / 1e3;
  t.chol.build_ms += st.chol.build_ms;
  t.chol.potrf_ms += st.chol.potrf_ms;
  t.chol.trtri_ms += st.chol.trtri_ms;
  t.chol_flops += 2.0 * (double)K * K * K / 3.0;
  t.solve_flops += (double)N * K * K;
  tl.begin("solve");
  f32_to_f16_kernel<<<4096, 256, 0, ctx.stream>>>(N * K, W32.get(), s.W);
  CUDA_LAUNCH_CHECK();
  tl.end();
  ctx.sync();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> hs;
  std::vector<int32_t> hz;
  if (o.want_codes) {
    hs.resize(G * N);
    hz.resize(G * N);
    copy_to_host(ctx, hs.data(), scales.get(), G * N * 4);
    copy_to_host(ctx, hz.data(), zeros.get(), G * N * 4);
  }
  std::map<std::string, LinearOut> made;
  int64_t r0 = 0;
  for (auto& p : s.parts) {
    const int64_t n = p.second;
    LinearOut& L = made[p.first];
    L.name = p.first;
    L.n = n;
    L.k = K;
    L.res = r;
    L.res.loss = 0;  // this member's rows only
    for (int64_t i = r0; i < r0 + n; ++i) L.res.loss += row_loss[i];
    L.seconds = (st.prepare_ms + st.solve_ms) / 1e3;
    L.g_idx = g_idx;
    L.perm = perm;
    if (o.want_codes) {
      L.codes.resize(n * K);
      copy_to_host(ctx, L.codes.data(), codes.get() + r0 * K, n * K);
    }
    if (o.want_packed) {
      if (K * bits % 32 || n * bits % 32) throw std::runtime_error("packing needs K and N multiples of 32");
      DevBuf<int32_t> qw(K * bits / 32 * n), qz(G * (n * bits / 32));
      DevBuf<__half> sc(G * n);
      pack_qweight(ctx, codes.get() + r0 * K, K, n, K, bits, qw.get());
      pack_qzeros(ctx, zeros.get() + r0, N, G, n, bits, qz.get());
      scales_to_f16(ctx, scales.get() + r0, N, G, n, sc.get());
      L.qweight.resize(qw.size());
      L.qzeros.resize(qz.size());
      L.scales16.resize(sc.size());
      copy_to_host(ctx, L.qweight.data(), qw.get(), qw.size() * 4);
      copy_to_host(ctx, L.qzeros.data(), qz.get(), qz.size() * 4);
      copy_to_host(ctx, L.scales16.data(), sc.get(), sc.size() * 2);
    }
    r0 += n;
  }
  ctx.sync();
  r0 = 0;
  for (auto& p : s.parts) {
    const int64_t n = p.second;
    LinearOut& L = made[p.first];
    if (o.want_codes) {
      L.scales.resize(G * n);
      L.zeros.resize(G * n);
      for (int64_t j = 0; j < G; ++j)
        for (int64_t c = 0; c < n; ++c) {
          L.scales[j * n + c] = hs[j * N + r0 + c];
          L.zeros[j * n + c] = hz[j * N + r0 + c];
        }
    }
    r0 += n;
  }
  t.pack_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& name : s.order) out.push_back(std::move(made[name]));
}

bool needs_cross(const Stack& s, const LayerQuantOptions& o) {
  if (o.gptaq) return true;  // α = 0 included: the same solve with P = 0, as the CPU engine
  if (!o.qep || !(o.qep_alpha > 0)) return false;
  for (gf::Linear l : s.linears)
    if (o.qep_correct[(int)l]) return true;
  return false;
}

// QEP: the rows of the stack's corrected members become W* = W + α W C (H + λI)⁻¹ rounded
// to fp16, in place in the slot (one factor of H + λI for the stack; rows are
// independent, so this is the CPU engine's correction of each member on its own).
void correct_stack(Context& ctx, const Stack& s, const float* H, const float* C, const LayerQuantOptions& o,
                   LayerTimes& t) {
  RowRanges rows;
  int64_t r0 = 0;
  for (size_t i = 0; i < s.parts.size(); ++i) {
    const int64_t n = s.parts[i].second;
    if (o.qep_correct[(int)s.linears[i]]) {
      if (!rows.empty() && rows.back().second == r0) rows.back().second = r0 + n;
      else rows.emplace_back(r0, r0 + n);
    }
    r0 += n;
  }
  if (rows.empty()) return;
  ctx.sync();  // the host clock must not absorb the forward work still queued
  const auto t0 = std::chrono::steady_clock::now();
  qep_correct_f16(ctx, s.N, s.K, s.W, H, C, o.qep_alpha, o.gptq.damp_percent, rows);
  t.qep_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (auto& r : rows) t.qep_flops += qep_flops(r.second - r.first, s.K);
}


}  // namespace gfc
