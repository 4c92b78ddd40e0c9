#include "layer_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <chrono>
#include <map>
#include <stdexcept>

#include "hessian.h"
#include "layer_stack.h"
#include "llama.h"
#include "qep.h"

namespace gfc {

std::string qep_options_problem(const LayerQuantOptions& o) {
  if (o.gptaq) {
    if (o.qep) return "gptaq: not with qep (both correct toward the fp16 path; one at a time)";
    if (!(std::isfinite(o.gptaq_alpha) && o.gptaq_alpha >= 0)) return "gptaq: alpha must be a finite number >= 0";
  }
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
  const bool fp = o.qep || o.gptaq;  // the fp16 path runs beside the quantized one
  if (fp != (Xf != nullptr))
    throw std::invalid_argument("quantize_layer: Xf (the fp16 path) is needed exactly with qep or gptaq");
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
  // QEP/GPTAQ: the fp16 path's weights (the slot's are replaced by Q as the stacks are solved), its
  // chunk buffers, and the cross term of the groups with a corrected linear (GPTAQ: of every group; memory: the
  // estimate in layer_quant.h). The fp16 path never reads the quantized path, so each step
  // runs it to the same forward point beside the quantized one, per chunk.
  const bool c1 = needs_cross(qkv, o), c2 = needs_cross(ost, o), c3 = needs_cross(gu, o), any_c = c1 || c2 || c3;

  auto fp_copy = [&](const __half* src, int64_t n) {
    DevBuf<__half> b(fp ? n : 0);
    if (fp) CUDA_CHECK(cudaMemcpyAsync(b.get(), src, n * 2, cudaMemcpyDeviceToDevice, ctx.stream));
    return b;
  };
  DevBuf<__half> fqkv = fp_copy(w.qkv, QKV * HID), fo = fp_copy(w.o, HID * QD), fgu = fp_copy(w.gate_up, 2 * FFN * HID),
                 fdown = fp_copy(w.down, HID * FFN);
  DevBuf<__half> nrmf(fp ? TC * HID : 0), ATTf(fp ? TC * QD : 0), Dx(any_c ? TC * std::max(HID, QD) : 0);
  DevBuf<float> Cx(any_c ? std::max(HID, QD) * std::max(HID, QD) : 0);
  const float* gC = o.gptaq ? Cx.get() : nullptr;  // GPTAQ: steps 1-3's solves take the group's C
  // C += (X̃ − X)ᵀ X of one chunk, scaled as H (hscale), the first chunk overwriting (into Cx
  // with scratch Dx unless given).
  auto cross = [&](int64_t t0, int64_t tc, int64_t K, const __half* xf, const __half* x, float* C = nullptr,
                   __half* D = nullptr) {
    tl.begin("hessian");
    cross_accumulate(ctx, tc, K, xf, x, K, D ? D : Dx.get(), C ? C : Cx.get(), hscale, t0 ? 1.0f : 0.0f);
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
    if (c1) {  // X̃ = RMSNorm1(Xf)
      tl.begin("forward");
      rms_norm(ctx, tc, HID, Xf + t0 * HID, w.input_norm, d.eps, nrmf.get());
      tl.end();
      cross(t0, tc, HID, nrmf.get(), nrm.get());
    }
  }
  tl.begin("hessian");
  symmetrize_lower(ctx, HID, Hh.get());
  tl.end();
  if (c1 && o.qep) correct_stack(ctx, qkv, Hh.get(), Cx.get(), o, t);
  solve_stack(ctx, tl, qkv, Hh.get(), o, out, t, gC);

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
    if (!fp) continue;
    // The fp16 path: its attention output ATTf (this chunk only), then h1f = xf + o(ATTf) in
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
  if (c2 && o.qep) correct_stack(ctx, ost, Hh.get(), Cx.get(), o, t);
  solve_stack(ctx, tl, ost, Hh.get(), o, out, t, gC);
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
    if (c3) {  // X̃ = RMSNorm2(h1f), h1f in Xf since step 2
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
  if (c3 && o.qep) correct_stack(ctx, gu, Hh.get(), Cx.get(), o, t);
  if (!o.gptaq) {
    Cx.release();
    Dx.release();
  }
  solve_stack(ctx, tl, gu, Hh.get(), o, out, t, gC);
  Hh.release();
  Cx.release();
  Dx.release();

  // 4. [down]: input = silu(gate(n2)) · up(n2) with the quantized gate/up; add_batch. The activations of
  // as many chunks as the memory budget allows (after what the down_proj solve will need) are
  // kept for step 5 instead of being computed again.
  // GPTAQ: down_proj's cross term C_down beside Hf, from the fp path's activations af of each
  // chunk, its difference D in `big` (free once af is made). Both are counted by device_used_gb
  // below; `need` adds the down solve's P with its two K² temporaries (gptq.cu).
  DevBuf<float> Hf(FFN * FFN), Cdown(o.gptaq ? FFN * FFN : 0);
  DevBuf<__half> af(o.gptaq ? TC * FFN : 0);
  const double need = (double)FFN * FFN * (4.0 + (o.solve.chol_fp32 ? 4.0 : 8.0)) + (double)HID * FFN * 10.0 + 1.0e9 +
                      (o.gptaq ? (double)FFN * FFN * 12.0 : 0.0);
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
    if (!o.gptaq) continue;
    // GPTAQ: af = swiglu(gate_up_f(RMSNorm2(h1f))) with the original weights, C_down += (af − a)ᵀ a.
    tl.begin("forward");
    rms_norm(ctx, tc, HID, Xf + t0 * HID, w.post_norm, d.eps, nrmf.get());
    linear_f16(ctx, tc, 2 * FFN, HID, nrmf.get(), HID, fgu.get(), HID, big.get(), 2 * FFN);
    swiglu(ctx, tc, FFN, big.get(), af.get());
    tl.end();
    t.forward_flops += 2.0 * tc * 2 * FFN * HID;
    cross(t0, tc, FFN, af.get(), a_out, Cdown.get(), big.get());
  }
  af.release();
  tl.begin("hessian");
  symmetrize_lower(ctx, FFN, Hf.get());
  tl.end();
  solve_stack(ctx, tl, dn, Hf.get(), o, out, t, o.gptaq ? Cdown.get() : nullptr);
  Hf.release();
  Cdown.release();

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
  // The fp16 path (QEP, GPTAQ): xf ← h1f + down(silu(gate(n2f)) · up(n2f)) with the original weights.
  for (int64_t t0 = 0; fp && t0 < T; t0 += TC) {
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
