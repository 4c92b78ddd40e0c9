#include "layer_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <chrono>
#include <map>
#include <stdexcept>

#include "hessian.h"
#include "llama.h"
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

// Device time per stage name: event pairs, summed once at the end.
class Timeline {
 public:
  explicit Timeline(Context& c) : ctx_(c) {}
  ~Timeline() { for (auto& r : recs_) { cudaEventDestroy(r.a); cudaEventDestroy(r.b); } }
  void begin(const char* name) {
    Rec r{name, nullptr, nullptr};
    CUDA_CHECK(cudaEventCreate(&r.a));
    CUDA_CHECK(cudaEventCreate(&r.b));
    CUDA_CHECK(cudaEventRecord(r.a, ctx_.stream));
    recs_.push_back(r);
  }
  void end() { CUDA_CHECK(cudaEventRecord(recs_.back().b, ctx_.stream)); }
  std::map<std::string, double> seconds() {
    ctx_.sync();
    std::map<std::string, double> t;
    for (auto& r : recs_) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, r.a, r.b));
      t[r.name] += ms / 1e3;
    }
    return t;
  }

 private:
  struct Rec { std::string name; cudaEvent_t a, b; };
  Context& ctx_;
  std::vector<Rec> recs_;
};

struct Stack {
  std::vector<std::pair<std::string, int64_t>> parts;  // (name, rows) in stack order
  std::vector<std::string> order;                      // the plan's order of the members
  std::vector<gf::Linear> linears;                     // the parts' linears, in stack order
  int64_t N, K;
  __half* W;
};

// The stack of `stacked` (the plan's row order: gf::check_plan fixed it to LayerDev's) solved at
// `group`'s forward point, its members reported in the group's order; rows(l): l's output rows.
template <class Rows>
Stack plan_stack(const std::vector<gf::Linear>& stacked, const gf::PlanGroup& group, int64_t K, __half* W, Rows rows) {
  Stack s{{}, {}, {}, 0, K, W};
  for (gf::Linear l : stacked) {
    s.parts.emplace_back(gf::linear_name(l), rows(l));
    s.linears.push_back(l);
    s.N += rows(l);
  }
  for (gf::Linear l : group.linears) s.order.emplace_back(gf::linear_name(l));
  return s;
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

void solve_stack(Context& ctx, Timeline& tl, const Stack& s, const float* H, const LayerQuantOptions& o,
                 std::vector<LinearOut>& out, LayerTimes& t) {
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
  const gf::GptqResult r = gptq_quantize(ctx, N, K, W32.get(), H, o.gptq, codes.get(), scales.get(), zeros.get(),
                                         g_idx.data(), perm.data(), o.solve, &st, &row_loss);
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

// Whether QEP corrects any member of stack s (and so needs its group's cross term).
bool corrects(const Stack& s, const LayerQuantOptions& o) {
  if (!o.qep || !(o.qep_alpha > 0)) return false;
  for (gf::Linear l : s.linears)
    if (o.qep_correct[(int)l]) return true;
  return false;
}

// QEP before a stack's solve: the rows of its corrected members become W* = W + α W C (H + λI)⁻¹
// rounded to fp16, in place in the slot (one factor of H + λI for the stack; rows are
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

}  // namespace

std::string qep_options_problem(const LayerQuantOptions& o) {
  if (!o.qep) {
    for (bool c : o.qep_correct)
      if (c) return "qep: corrected linears are given without qep";
    return "";
  }
  if (!(std::isfinite(o.qep_alpha) && o.qep_alpha >= 0)) return "qep: alpha must be a finite number >= 0";
  if (o.qep_correct[(int)gf::Linear::down])
    return "qep: the CUDA engine does not correct mlp.down_proj (its cross term would be ffn × ffn beside its "
           "Hessian); leave it out of the corrected linears (the default) or use --device cpu";
  return "";
}

void quantize_layer(Context& ctx, const LayerDims& d, int64_t S, int64_t T, __half* X, __half* Xf,
                    const LayerDev& w, const LayerQuantOptions& o, std::vector<LinearOut>& out,
                    LayerTimes* times) {
  const int64_t HID = d.hidden, FFN = d.ffn, HD = d.head_dim, QD = d.heads * HD, KVD = d.kv_heads * HD;
  const int64_t QKV = QD + 2 * KVD;
  gf::check_plan(o.plan);
  if (const std::string p = qep_options_problem(o); !p.empty()) throw std::invalid_argument(p);
  if (o.qep != (Xf != nullptr)) throw std::invalid_argument("quantize_layer: Xf (QEP's fp16 path) is needed exactly with qep");
  if (T % S) throw std::runtime_error("tokens must be a whole number of windows");
  if (HID % 8 || d.heads % d.kv_heads) throw std::runtime_error("unsupported layer dims");
  const int64_t TC = std::min(std::max<int64_t>(o.chunk_windows, 1) * S, T);
  const int64_t nchunks = (T + TC - 1) / TC;
  // add_batch (the reference's GPTQ.add_batch): each step's xtx_accumulate calls below sum
  // H = (2/n) Σ XᵀX over the chunks of windows, n = windows; symmetrize_lower completes it.
  const float hscale = 2.0f / (float)(T / S);
  LayerTimes t;
  Timeline tl(ctx);
  const size_t tally0 = Tally::peak();
  Tally::peak() = Tally::live();
  const double base_gb = device_used_gb() - Tally::live() / 1e9;  // context + libraries

  DevBuf<__half> ATT(T * QD), nrm(TC * HID), big(TC * std::max(QKV, 2 * FFN)), act(TC * FFN);
  DevBuf<__half> scores(d.heads * std::min(o.attention_qc, S) * S);
  DevBuf<float> Hh(std::max(HID, QD) * std::max(HID, QD));
  // The plan's groups, one per forward point in forward order (check_plan): steps 1-4 below.
  auto rows = [&](gf::Linear l) {
    switch (l) {
      case gf::Linear::q: return QD;
      case gf::Linear::k: case gf::Linear::v: return KVD;
      case gf::Linear::gate: case gf::Linear::up: return FFN;
      default: return HID;  // o, down
    }
  };
  auto group = [&](gf::ForwardPoint p) -> const gf::PlanGroup& { return o.plan.groups[(int)p]; };
  const Stack qkv = plan_stack(o.plan.qkv, group(gf::ForwardPoint::input_layernorm), HID, w.qkv, rows);
  const Stack ost = plan_stack({gf::Linear::o}, group(gf::ForwardPoint::attention), QD, w.o, rows);
  const Stack gu = plan_stack(o.plan.gate_up, group(gf::ForwardPoint::post_attention_layernorm), HID, w.gate_up, rows);
  const Stack dn = plan_stack({gf::Linear::down}, group(gf::ForwardPoint::mlp_act), FFN, w.down, rows);
  auto chunk_len = [&](int64_t t0) { return std::min(TC, T - t0); };
  // QEP: the fp16 path's weights (the slot's are replaced by Q as the stacks are solved), its
  // chunk buffers, and the cross term of the groups with a corrected linear (memory: the
  // estimate in layer_quant.h). The fp16 path never reads the quantized path, so each step
  // runs it to the same forward point beside the quantized one, per chunk.
  const bool c1 = corrects(qkv, o), c2 = corrects(ost, o), c3 = corrects(gu, o), any_c = c1 || c2 || c3;
  auto fp_copy = [&](const __half* src, int64_t n) {
    DevBuf<__half> b(o.qep ? n : 0);
    if (o.qep) CUDA_CHECK(cudaMemcpyAsync(b.get(), src, n * 2, cudaMemcpyDeviceToDevice, ctx.stream));
    return b;
  };
  DevBuf<__half> fqkv = fp_copy(w.qkv, QKV * HID), fo = fp_copy(w.o, HID * QD), fgu = fp_copy(w.gate_up, 2 * FFN * HID),
                 fdown = fp_copy(w.down, HID * FFN);
  DevBuf<__half> nrmf(o.qep ? TC * HID : 0), ATTf(o.qep ? TC * QD : 0), Dx(any_c ? TC * std::max(HID, QD) : 0);
  DevBuf<float> Cx(any_c ? std::max(HID, QD) * std::max(HID, QD) : 0);
  // C += (X̃ − X)ᵀ X of one chunk, scaled as H (hscale), the first chunk overwriting.
  auto cross = [&](int64_t t0, int64_t tc, int64_t K, const __half* xf, const __half* x) {
    tl.begin("hessian");
    cross_accumulate(ctx, tc, K, xf, x, K, Dx.get(), Cx.get(), hscale, t0 ? 1.0f : 0.0f);
    tl.end();
    t.hessian_flops += cross_flops(tc, K);
  };

  // 1. [k, v, q]: input = RMSNorm1(x). add_batch of its Hessian.
  for (int64_t t0 = 0; t0 < T; t0 += TC) {
    const int64_t tc = chunk_len(t0);
    tl.begin("forward");
    rms_norm(ctx, tc, HID, X + t0 * HID, w.input_norm, d.eps, nrm.get());
    tl.end();
    tl.begin("hessian");
    xtx_accumulate(ctx, tc, HID, nrm.get(), HID, Hh.get(), hscale, t0 ? 1.0f : 0.0f);
    tl.end();
    t.hessian_flops += xtx_flops(tc, HID);
    if (c1) {  // QEP: X̃ = RMSNorm1(Xf)
      tl.begin("forward");
      rms_norm(ctx, tc, HID, Xf + t0 * HID, w.input_norm, d.eps, nrmf.get());
      tl.end();
      cross(t0, tc, HID, nrmf.get(), nrm.get());
    }
  }
  tl.begin("hessian");
  symmetrize_lower(ctx, HID, Hh.get());
  tl.end();
  if (c1) correct_stack(ctx, qkv, Hh.get(), Cx.get(), o, t);
  solve_stack(ctx, tl, qkv, Hh.get(), o, out, t);

  // 2. [o]: input = attention(q, k, v quantized) → ATT (kept for step 3); add_batch.
  for (int64_t t0 = 0; t0 < T; t0 += TC) {
    const int64_t tc = chunk_len(t0);
    tl.begin("forward");
    rms_norm(ctx, tc, HID, X + t0 * HID, w.input_norm, d.eps, nrm.get());
    linear_f16(ctx, tc, QKV, HID, nrm.get(), HID, w.qkv, HID, big.get(), QKV);
    rope_inplace(ctx, tc, S, d.heads, HD, d.rope_theta, big.get(), QKV);
    rope_inplace(ctx, tc, S, d.kv_heads, HD, d.rope_theta, big.get() + QD, QKV);
    tl.end();
    tl.begin("attention");
    causal_attention(ctx, tc, S, d.heads, d.kv_heads, HD, big.get(), QKV, big.get() + QD, QKV, big.get() + QD + KVD,
                     QKV, ATT.get() + t0 * QD, QD, o.attention_qc, scores.get());
    tl.end();
    t.forward_flops += 2.0 * tc * QKV * HID + attention_flops(tc, S, d.heads, HD, o.attention_qc);
    tl.begin("hessian");
    xtx_accumulate(ctx, tc, QD, ATT.get() + t0 * QD, QD, Hh.get(), hscale, t0 ? 1.0f : 0.0f);
    tl.end();
    t.hessian_flops += xtx_flops(tc, QD);
    if (!o.qep) continue;
    // QEP's fp16 path: its attention output ATTf (this chunk only), then h1f = xf + o(ATTf) in
    // place in Xf (nothing reads the chunk's xf again).
    tl.begin("forward");
    rms_norm(ctx, tc, HID, Xf + t0 * HID, w.input_norm, d.eps, nrmf.get());
    linear_f16(ctx, tc, QKV, HID, nrmf.get(), HID, fqkv.get(), HID, big.get(), QKV);
    rope_inplace(ctx, tc, S, d.heads, HD, d.rope_theta, big.get(), QKV);
    rope_inplace(ctx, tc, S, d.kv_heads, HD, d.rope_theta, big.get() + QD, QKV);
    tl.end();
    tl.begin("attention");
    causal_attention(ctx, tc, S, d.heads, d.kv_heads, HD, big.get(), QKV, big.get() + QD, QKV, big.get() + QD + KVD,
                     QKV, ATTf.get(), QD, o.attention_qc, scores.get());
    tl.end();
    t.forward_flops += 2.0 * tc * QKV * HID + attention_flops(tc, S, d.heads, HD, o.attention_qc) + 2.0 * tc * HID * QD;
    if (c2) cross(t0, tc, QD, ATTf.get(), ATT.get() + t0 * QD);
    tl.begin("forward");
    linear_f16(ctx, tc, HID, QD, ATTf.get(), QD, fo.get(), QD, nrmf.get(), HID);
    add_f16(ctx, tc * HID, Xf + t0 * HID, nrmf.get(), Xf + t0 * HID);
    tl.end();
  }
  tl.begin("hessian");
  symmetrize_lower(ctx, QD, Hh.get());
  tl.end();
  if (c2) correct_stack(ctx, ost, Hh.get(), Cx.get(), o, t);
  solve_stack(ctx, tl, ost, Hh.get(), o, out, t);
  fqkv.release();  // the fp16 path's attention is done
  fo.release();
  ATTf.release();

  // 3. [up, gate]: h1 = x + o(att) (in place in X), input = RMSNorm2(h1); add_batch.
  for (int64_t t0 = 0; t0 < T; t0 += TC) {
    const int64_t tc = chunk_len(t0);
    tl.begin("forward");
    linear_f16(ctx, tc, HID, QD, ATT.get() + t0 * QD, QD, w.o, QD, nrm.get(), HID);
    add_f16(ctx, tc * HID, X + t0 * HID, nrm.get(), X + t0 * HID);
    rms_norm(ctx, tc, HID, X + t0 * HID, w.post_norm, d.eps, nrm.get());
    tl.end();
    t.forward_flops += 2.0 * tc * HID * QD;
    tl.begin("hessian");
    xtx_accumulate(ctx, tc, HID, nrm.get(), HID, Hh.get(), hscale, t0 ? 1.0f : 0.0f);
    tl.end();
    t.hessian_flops += xtx_flops(tc, HID);
    if (c3) {  // QEP: X̃ = RMSNorm2(h1f), h1f in Xf since step 2
      tl.begin("forward");
      rms_norm(ctx, tc, HID, Xf + t0 * HID, w.post_norm, d.eps, nrmf.get());
      tl.end();
      cross(t0, tc, HID, nrmf.get(), nrm.get());
    }
  }
  tl.begin("hessian");
  symmetrize_lower(ctx, HID, Hh.get());
  tl.end();
  ATT.release();
  if (c3) correct_stack(ctx, gu, Hh.get(), Cx.get(), o, t);
  Cx.release();
  Dx.release();
  solve_stack(ctx, tl, gu, Hh.get(), o, out, t);
  Hh.release();

  // 4. [down]: input = silu(gate(n2)) · up(n2) with the quantized gate/up; add_batch. The activations of
  // as many chunks as the memory budget allows (after what the down_proj solve will need) are
  // kept for step 5 instead of being computed again.
  DevBuf<float> Hf(FFN * FFN);
  const double need = (double)FFN * FFN * (4.0 + (o.solve.chol_fp32 ? 4.0 : 8.0)) + (double)HID * FFN * 10.0 + 1.0e9;
  const double room = o.mem_budget_gb * 1e9 - (device_used_gb() - base_gb) * 1e9 - need;
  const int64_t cache_chunks = room > 0 ? std::min<int64_t>(nchunks, (int64_t)(room / ((double)TC * FFN * 2))) : 0;
  const int64_t cached = std::min(T, cache_chunks * TC);
  DevBuf<__half> cache(cached * FFN);
  const int FFN_NB = 16;  // Hessian block rows for wide K (17/32 of the full GEMM)
  for (int64_t t0 = 0; t0 < T; t0 += TC) {
    const int64_t tc = chunk_len(t0);
    __half* a_out = t0 < cached ? cache.get() + t0 * FFN : act.get();
    tl.begin("forward");
    rms_norm(ctx, tc, HID, X + t0 * HID, w.post_norm, d.eps, nrm.get());
    linear_f16(ctx, tc, 2 * FFN, HID, nrm.get(), HID, w.gate_up, HID, big.get(), 2 * FFN);
    swiglu(ctx, tc, FFN, big.get(), a_out);
    tl.end();
    t.forward_flops += 2.0 * tc * 2 * FFN * HID;
    tl.begin("hessian");
    xtx_accumulate(ctx, tc, FFN, a_out, FFN, Hf.get(), hscale, t0 ? 1.0f : 0.0f, FFN_NB);
    tl.end();
    t.hessian_flops += xtx_flops(tc, FFN, FFN_NB);
  }
  tl.begin("hessian");
  symmetrize_lower(ctx, FFN, Hf.get());
  tl.end();
  solve_stack(ctx, tl, dn, Hf.get(), o, out, t);
  Hf.release();

  // 5. The layer's outputs with every weight quantized: the next layer's inputs (in X).
  for (int64_t t0 = 0; t0 < T; t0 += TC) {
    const int64_t tc = chunk_len(t0);
    tl.begin("forward");
    const __half* a_in = act.get();
    if (t0 < cached) {
      a_in = cache.get() + t0 * FFN;
    } else {
      rms_norm(ctx, tc, HID, X + t0 * HID, w.post_norm, d.eps, nrm.get());
      linear_f16(ctx, tc, 2 * FFN, HID, nrm.get(), HID, w.gate_up, HID, big.get(), 2 * FFN);
      swiglu(ctx, tc, FFN, big.get(), act.get());
      t.forward_flops += 2.0 * tc * 2 * FFN * HID;
    }
    // x + down(act) as transformers computes it: down's output stored in fp16, then the sum.
    linear_f16(ctx, tc, HID, FFN, a_in, FFN, w.down, FFN, nrm.get(), HID);
    add_f16(ctx, tc * HID, X + t0 * HID, nrm.get(), X + t0 * HID);
    tl.end();
    t.forward_flops += 2.0 * tc * HID * FFN;
  }
  // QEP's fp16 path: xf ← h1f + down(silu(gate(n2f)) · up(n2f)) with the original weights.
  for (int64_t t0 = 0; o.qep && t0 < T; t0 += TC) {
    const int64_t tc = chunk_len(t0);
    tl.begin("forward");
    rms_norm(ctx, tc, HID, Xf + t0 * HID, w.post_norm, d.eps, nrmf.get());
    linear_f16(ctx, tc, 2 * FFN, HID, nrmf.get(), HID, fgu.get(), HID, big.get(), 2 * FFN);
    swiglu(ctx, tc, FFN, big.get(), act.get());
    linear_f16(ctx, tc, HID, FFN, act.get(), FFN, fdown.get(), FFN, nrmf.get(), HID);
    add_f16(ctx, tc * HID, Xf + t0 * HID, nrmf.get(), Xf + t0 * HID);
    tl.end();
    t.forward_flops += 2.0 * tc * 3 * FFN * HID;
  }
  auto s = tl.seconds();
  t.forward_s = s["forward"] + s["attention"];
  t.attention_s = s["attention"];
  t.hessian_s = s["hessian"];
  t.solve_s += s["solve"];
  t.cached_fraction = (double)cached / T;
  t.peak_buffers_gb = Tally::peak() / 1e9;
  Tally::peak() = std::max(tally0, Tally::peak());
  if (times) *times = t;
}

}  // namespace gfc
