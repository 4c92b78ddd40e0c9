// One synthetic Llama-2-70B-shaped decoder layer (hidden 8192, ffn 28672, 64 heads / 8 kv heads,
// head_dim 128; random weights and inputs of realistic scale), quantized with full
// true-sequential GPTQ (4-bit, group 128, act-order, sym, damp 1 %) on the GPU from calibration
// activations resident in GPU memory (fp16, windows × seqlen tokens). Prints the time per stage,
// FLOPs and achieved rates against measured ceilings, peak GPU memory and host RSS, disk rates,
// and the projected end-to-end time of eight Llama-2-70B branches. Writes a JSON result.
//   layer70b [--windows 128] [--seqlen 4096] [--chunk-windows 4] [--qc 1024] [--tf32] [--mse]
//            [--qep [alpha] | --gptaq [alpha]] [--disk-gb 8] [--disk-dir .] [--out bench/results]
// --qep: QEP (alpha 0.5 without a value; q, k, v, o, gate, up corrected as the branch builder's
// default): the fp16 path's activations Xf beside X and its forward, the cross terms and the
// corrections (the "qep" stage); its JSON is layer70b-<card>-qep.json.
// --gptaq: GPTAQ (alpha 0.25 without a value): the same fp16 path, every group's cross term
// (down_proj's ffn × ffn one included; in the "hessian" stage) and each solve's P (in "solve");
// its JSON is layer70b-<card>-gptaq.json. Not with --qep.
// --mse: the same layer with the reference Quantizer's mse grid search (gptq --mse); its JSON
// (layer70b-<card>-mse.json) beside the default's gives the recipe's build time relative to it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "../../native/kernels/cuda/layer_quant.h"
#include "../../native/kernels/cuda/llama.h"
#include "layer70b_util.cuh"

using namespace gfc;


namespace {

constexpr int64_t HID = 8192, FFN = 28672, HEADS = 64, KVH = 8, HD = 128;
constexpr int64_t QKV = (HEADS + 2 * KVH) * HD;  // 10240 rows: q, k, v stacked
constexpr float EPS = 1e-5f, THETA = 10000.0f;

struct Args {
  int64_t windows = 128, seqlen = 4096, chunk_windows = 4, qc = 1024;
  bool tf32 = false, chol_fp32 = false, mse = false;
  float qep = -1;  // QEP's alpha; < 0: no QEP
  float gptaq = -1;  // GPTAQ's alpha; < 0: no GPTAQ
  double disk_gb = 8, mem_budget_gb = 40, disk_w = 0, disk_r = 0;
  std::string disk_dir = ".", out = "bench/results";
};

std::string bench_qep_text(float alpha) { return ", QEP alpha " + std::to_string(alpha); }

double measure_gemm_tflops(Context& ctx) {
  const int64_t n = 8192;
  DevBuf<__half> a(n * n), b(n * n), c(n * n);
  bench::fill_normal(ctx, n * n, 1, 0, 1, a.get());
  bench::fill_normal(ctx, n * n, 2, 0, 1, b.get());
  for (int i = 0; i < 3; ++i) linear_f16(ctx, n, n, n, a.get(), n, b.get(), n, c.get(), n);
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  CUDA_CHECK(cudaEventRecord(e0, ctx.stream));
  const int reps = 20;
  for (int i = 0; i < reps; ++i) linear_f16(ctx, n, n, n, a.get(), n, b.get(), n, c.get(), n);
  CUDA_CHECK(cudaEventRecord(e1, ctx.stream));
  CUDA_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  return 2.0 * n * n * n * reps / (ms / 1e3) / 1e12;
}

double measure_copy_gbs(Context& ctx) {
  const size_t bytes = 2ull << 30;
  DevBuf<char> a(bytes), b(bytes);
  CUDA_CHECK(cudaMemsetAsync(a.get(), 1, bytes, ctx.stream));
  CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, ctx.stream));
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  CUDA_CHECK(cudaEventRecord(e0, ctx.stream));
  for (int i = 0; i < 10; ++i) CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, ctx.stream));
  CUDA_CHECK(cudaEventRecord(e1, ctx.stream));
  CUDA_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  return 2.0 * bytes * 10 / (ms / 1e3) / 1e9;  // read + write
}

std::string card_slug(const std::string& name) {
  std::string s;
  for (char c : name) s += (char)std::tolower((unsigned char)c);
  for (const char* k : {"h200", "h100", "a100", "l40s", "b200"})
    if (s.find(k) != std::string::npos) return k;
  std::string o;
  for (char c : s) o += std::isalnum((unsigned char)c) ? c : '-';
  return o;
}

}  // namespace


int main(int argc, char** argv) try {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string { if (i + 1 >= argc) throw std::runtime_error("missing value for " + k); return argv[++i]; };
    if (k == "--windows") a.windows = std::stoll(next());
    else if (k == "--seqlen") a.seqlen = std::stoll(next());
    else if (k == "--chunk-windows") a.chunk_windows = std::stoll(next());
    else if (k == "--qc") a.qc = std::stoll(next());
    else if (k == "--tf32") a.tf32 = true;
    else if (k == "--chol-fp32") a.chol_fp32 = true;
    else if (k == "--mse") a.mse = true;
    else if (k == "--qep") a.qep = i + 1 < argc && argv[i + 1][0] != '-' ? std::stof(next()) : 0.5f;
    else if (k == "--gptaq") a.gptaq = i + 1 < argc && argv[i + 1][0] != '-' ? std::stof(next()) : 0.25f;
    else if (k == "--mem-budget-gb") a.mem_budget_gb = std::stod(next());
    else if (k == "--disk-rates") { const std::string v = next(); a.disk_w = std::stod(v); a.disk_r = std::stod(v.substr(v.find(',') + 1)); }
    else if (k == "--disk-gb") a.disk_gb = std::stod(next());
    else if (k == "--disk-dir") a.disk_dir = next();
    else if (k == "--out") a.out = next();
    else throw std::runtime_error("unknown option " + k);
  }
  if (a.qep >= 0 && a.gptaq >= 0) throw std::runtime_error("--qep and --gptaq: one at a time");
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  Context ctx;
  const double base_gb = device_used_gb();
  std::printf("device: %s, %d SMs, %.1f GB; GPTQ 4-bit g128 act-order%s%s%s\n", prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1e9,
              a.mse ? ", --mse grid search" : "", a.qep >= 0 ? bench_qep_text(a.qep).c_str() : "",
              a.gptaq >= 0 ? (", GPTAQ alpha " + std::to_string(a.gptaq)).c_str() : "");
  const double peak_tflops = measure_gemm_tflops(ctx), copy_gbs = measure_copy_gbs(ctx);
  std::printf("measured ceilings: fp16 GEMM 8192³ %.0f TFLOP/s, device copy %.0f GB/s (read+write)\n", peak_tflops, copy_gbs);

  const int64_t S = a.seqlen, T = a.windows * S, TC = std::min(a.chunk_windows, a.windows) * S;
  // Calibration activations (the layer's input), resident: X [T, HID] fp16.
  DevBuf<float> chs(HID);
  bench::channel_scale_kernel<<<blocks_for(HID, 256), 256, 0, ctx.stream>>>(HID, 7, chs.get());
  DevBuf<__half> X(T * HID), Xf(a.qep >= 0 || a.gptaq >= 0 ? T * HID : 0);  // Xf: the fp16 path (QEP, GPTAQ)
  DevBuf<__half> Wqkv(QKV * HID), Wo(HID * HEADS * HD), Wgu(2 * FFN * HID), Wd(HID * FFN), n1w(HID), n2w(HID);
  // Random inputs N(0, 0.5²) per channel scaled (outlier channels), weights N(0, 0.02²) (Llama-2
  // scale), norm weights around 1. Drawn again before the timed pass (the warm-up pass replaces
  // the weights by their quantized values and X by the layer's outputs).
  auto fill = [&] {
    bench::fill_normal(ctx, T * HID, 11, 0, 0.5f, X.get(), chs.get(), HID);
    if (Xf.get()) bench::fill_normal(ctx, T * HID, 12, 0, 0.5f, Xf.get(), chs.get(), HID);
    bench::fill_normal(ctx, QKV * HID, 21, 0, 0.02f, Wqkv.get());
    bench::fill_normal(ctx, HID * HID, 22, 0, 0.02f, Wo.get());
    bench::fill_normal(ctx, 2 * FFN * HID, 23, 0, 0.02f, Wgu.get());
    bench::fill_normal(ctx, HID * FFN, 24, 0, 0.02f, Wd.get());
    bench::fill_normal(ctx, HID, 25, 1.0f, 0.1f, n1w.get());
    bench::fill_normal(ctx, HID, 26, 1.0f, 0.1f, n2w.get());
    ctx.sync();
  };

  LayerQuantOptions lo;
  // The reference's true-sequential plan, as src/model/layer-plan.ts (LAYER_PLAN) defines it.
  using gf::Linear;
  lo.plan.groups = {{gf::ForwardPoint::input_layernorm, {Linear::k, Linear::v, Linear::q}},
                    {gf::ForwardPoint::attention, {Linear::o}},
                    {gf::ForwardPoint::post_attention_layernorm, {Linear::up, Linear::gate}},
                    {gf::ForwardPoint::mlp_act, {Linear::down}}};
  lo.plan.qkv = {Linear::q, Linear::k, Linear::v};
  lo.plan.gate_up = {Linear::gate, Linear::up};
  lo.gptq = gf::GptqOptions{4, 128, true, false, true, a.mse, 0.01f, 128};
  lo.solve.tf32 = a.tf32;
  lo.solve.chol_fp32 = a.chol_fp32;
  lo.chunk_windows = a.chunk_windows;
  lo.attention_qc = a.qc;
  lo.mem_budget_gb = a.mem_budget_gb;
  lo.want_codes = false;
  lo.want_packed = true;  // packed on the GPU and copied to the host, as a branch writer needs them
  if (a.qep >= 0) {
    lo.qep = true;
    lo.qep_alpha = a.qep;
    for (Linear l : {Linear::q, Linear::k, Linear::v, Linear::o, Linear::gate, Linear::up}) lo.qep_correct[(int)l] = true;
  }
  if (a.gptaq >= 0) {
    lo.gptaq = true;
    lo.gptaq_alpha = a.gptaq;
  }
  const LayerDims dims{HID, FFN, HEADS, KVH, HD, EPS, THETA};
  const LayerDev w{Wqkv.get(), Wo.get(), Wgu.get(), Wd.get(), n1w.get(), n2w.get()};
  LayerTimes lt;
  std::vector<LinearOut> outs;
  double wall_s = 0, max_used = 0;
  // pass 0: warm-up over one chunk of windows (library handles, kernel loading, GEMM
  // heuristics); pass 1: the timed layer over all T tokens. Inputs and weights are drawn again
  // before each pass (a pass replaces the weights by Q and X by the layer's outputs).
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t TP = pass == 0 ? TC : T;
    fill();
    outs.clear();
    const auto wall0 = std::chrono::steady_clock::now();
    quantize_layer(ctx, dims, S, TP, X.get(), Xf.get(), w, lo, outs, &lt);
    ctx.sync();
    wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    max_used = std::max(max_used, device_used_gb());
    if (pass == 0) std::printf("warm-up pass over %lld tokens: %.3f s\n", (long long)TP, wall_s);
  }
  std::vector<std::string> log;
  for (auto& L : outs) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%-16s N=%-6lld K=%-6lld loss %.4g  damp %.3g (%d raises)  dead %lld  stack chol+solve %.0f ms",
                  L.name.c_str(), (long long)L.n, (long long)L.k, L.res.loss, L.res.damp_percent, L.res.damp_raises,
                  (long long)L.res.dead_columns, 1e3 * L.seconds);
    log.push_back(buf);
    std::printf("  %s\n", buf);
  }
  // Sanity: the outputs are finite (a NaN anywhere would make every timing meaningless).
  {
    std::vector<__half> h(std::min<int64_t>(T * HID, 1 << 20));
    CUDA_CHECK(cudaMemcpy(h.data(), X.get() + (T * HID - (int64_t)h.size()), h.size() * 2, cudaMemcpyDeviceToHost));
    for (auto v : h) if (!std::isfinite(__half2float(v))) throw std::runtime_error("non-finite layer output");
  }
  std::map<std::string, double> tot{{"forward", lt.forward_s}, {"forward.attention", lt.attention_s}, {"hessian", lt.hessian_s},
                                    {"cholesky_inverse", lt.chol_s}, {"solve", lt.solve_s}, {"pack", lt.pack_s}, {"qep", lt.qep_s},
                                    {"chol.potrf", lt.chol.potrf_ms / 1e3}, {"chol.trtri", lt.chol.trtri_ms / 1e3}, {"chol.build", lt.chol.build_ms / 1e3}};
  const double fwd_flops = lt.forward_flops, hes_flops = lt.hessian_flops, g_chol_flops = lt.chol_flops, g_solve_gemm_flops = lt.solve_flops;
  const int64_t cached_tokens = (int64_t)(lt.cached_fraction * T);
  const double stage_sum = tot["forward"] + tot["hessian"] + tot["cholesky_inverse"] + tot["solve"] + tot["pack"] + tot["qep"];
  std::printf("\nstage              seconds   TFLOP    achieved TFLOP/s  (ceiling %.0f fp16 GEMM)\n", peak_tflops);
  auto row = [&](const char* n, double s, double f) {
    std::printf("%-18s %7.3f  %7.1f   %8.1f  (%.0f %%)\n", n, s, f / 1e12, f / 1e12 / s, 100.0 * f / 1e12 / s / peak_tflops);
  };
  row("forward", tot["forward"], fwd_flops);
  std::printf("  of which attention %.3f s; %.1f %% of the tokens' step-5 activations kept from step 4 (memory budget %.0f GB)\n",
              tot["forward.attention"], 100.0 * cached_tokens / T, a.mem_budget_gb);
  row("hessian", tot["hessian"], hes_flops);
  std::printf("%-18s %7.3f  %7.1f   %8.1f  (%s cuSOLVER; potrf %.3f s, trtri %.3f s, permute/flip %.3f s)\n", "cholesky_inverse", tot["cholesky_inverse"], g_chol_flops / 1e12, g_chol_flops / 1e12 / tot["cholesky_inverse"],
              a.chol_fp32 ? "fp32" : "fp64", tot["chol.potrf"], tot["chol.trtri"], tot["chol.build"]);
  std::printf("%-18s %7.3f  %7.1f   %8.1f  (fp32%s trailing GEMMs)\n", "solve", tot["solve"], g_solve_gemm_flops / 1e12, g_solve_gemm_flops / 1e12 / tot["solve"], a.tf32 ? "/tf32" : "");
  std::printf("%-18s %7.3f  (GPU packing + copies of the packed tensors to the host)\n", "pack", tot["pack"]);
  if (a.qep >= 0) row("qep", tot["qep"], lt.qep_flops);  // the corrections; the cross terms are in hessian
  if (a.gptaq >= 0)  // GPTAQ has no stage of its own: the fp path's forward, its cross terms, each solve's P
    std::printf("%-18s (in the stages above: the fp16 path in forward, the cross terms in hessian, P in solve)\n", "gptaq");
  std::printf("%-18s %7.3f  (wall clock, the number used below; the stages sum to %.3f s)\n", "layer total", wall_s, stage_sum);
  // Peak: the largest of what the device buffers reached (counted at every allocation) and the
  // sampled device-wide use; library workspaces (cuBLAS, cuSOLVER) are in the latter only.
  const double peak_gpu = std::max(max_used - base_gb, lt.peak_buffers_gb);
  std::printf("peak GPU memory: %.2f GB (device buffers at their peak %.2f GB; cudaMemGetInfo after the layer %.2f GB above the %.2f GB before)\n",
              peak_gpu, lt.peak_buffers_gb, max_used - base_gb, base_gb);
  std::printf("host peak RSS: %.2f GB\n", bench::host_peak_rss_gb());

  // Disk and the projection for eight Llama-2-70B branches.
  bench::DiskRate disk;
  if (a.disk_w > 0) { disk.write_gbs = a.disk_w; disk.read_gbs = a.disk_r; disk.note = "rates given with --disk-rates"; }
  else disk = bench::measure_disk(a.disk_dir, (size_t)(a.disk_gb * (1ull << 30)) / (64u << 20) * (64u << 20));
  std::printf("disk (%s, %.1f GB, O_DIRECT): write %.2f GB/s, read %.2f GB/s %s\n", a.disk_dir.c_str(), disk.bytes / 1e9, disk.write_gbs, disk.read_gbs, disk.note.c_str());
  const double layers = 80, vocab = 32000;
  const double linear_params = HID * QKV + HID * HID + 3.0 * HID * FFN;  // per layer
  const double model_params = layers * (linear_params + 2 * HID) + 2 * vocab * HID + HID;
  const double read_bytes = model_params * 2;  // fp16 checkpoint
  const double groups_bytes = layers * ((QKV + HID + 2 * FFN) * (HID / 128) + HID * (FFN / 128)) * (2 + 0.5);  // scales fp16 + qzeros 4-bit
  const double branch_bytes = layers * linear_params * 0.5 + groups_bytes + layers * (2 * HID + 2 * HID + FFN) * 4 /* g_idx */ +
                              (2 * vocab * HID + HID + layers * 2 * HID) * 2;
  const double layer_s = wall_s * (128.0 * 4096.0 / (double)T);  // scaled if fewer tokens were used
  const double io_s = read_bytes / (disk.read_gbs * 1e9) + branch_bytes / (disk.write_gbs * 1e9);
  const double branch_s = layers * layer_s + io_s;
  const double branch_overlap_s = std::max(layers * layer_s, read_bytes / (disk.read_gbs * 1e9)) + branch_bytes / (disk.write_gbs * 1e9);
  std::printf("\nprojection, Llama-2-70B (%.1f B params, %.0f GB fp16 read per branch, %.1f GB written per 4-bit g128 branch):\n",
              model_params / 1e9, read_bytes / 1e9, branch_bytes / 1e9);
  std::printf("  per layer %.3f s%s; one branch = 80 × layer + read + write = %.1f min (%.1f min with reads overlapped)\n",
              layer_s, T == 128 * 4096 ? "" : " (scaled to 128 × 4096 tokens)", branch_s / 60, branch_overlap_s / 60);
  std::printf("  eight branches: %.2f h (%.2f h overlapped); the authors' code: 55 s/layer → %.1f h of compute alone\n",
              8 * branch_s / 3600, 8 * branch_overlap_s / 3600, 8 * 80 * 55.0 / 3600);

  // JSON result.
  const std::string slug = card_slug(prop.name);
  const std::string variant = std::string(a.chol_fp32 ? "-cholfp32" : "") + (a.tf32 ? "-tf32" : "") + (a.mse ? "-mse" : "") + (a.qep >= 0 ? "-qep" : "") + (a.gptaq >= 0 ? "-gptaq" : "");
  const std::string path = a.out + "/layer70b-" + slug + variant + (T == 128 * 4096 ? "" : "-small") + ".json";
  std::error_code mkdir_error;
  std::filesystem::create_directories(a.out, mkdir_error);  // a fresh --out folder is made
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "{\n \"card\": \"%s\",\n \"shape\": \"Llama-2-70B decoder layer (synthetic)\",\n \"windows\": %lld,\n \"seqlen\": %lld,\n",
               prop.name, (long long)a.windows, (long long)S);
  std::fprintf(f, " \"options\": {\"bits\": 4, \"groupSize\": 128, \"actOrder\": true, \"sym\": true, \"dampPercent\": 0.01, \"trueSequential\": true, \"mse\": %s, \"tf32TrailingUpdates\": %s, \"cholFp32\": %s, \"qep\": %s, \"gptaq\": %s},\n", a.mse ? "true" : "false", a.tf32 ? "true" : "false", a.chol_fp32 ? "true" : "false", a.qep >= 0 ? std::to_string(a.qep).c_str() : "null", a.gptaq >= 0 ? std::to_string(a.gptaq).c_str() : "null");
  std::fprintf(f, " \"forward_attention_s\": %.4f,\n \"act_cached_fraction\": %.4f,\n \"mem_budget_gb\": %.1f,\n \"chol_parts_s\": {\"potrf\": %.4f, \"trtri\": %.4f, \"build\": %.4f},\n",
               tot["forward.attention"], (double)cached_tokens / T, a.mem_budget_gb, tot["chol.potrf"], tot["chol.trtri"], tot["chol.build"]);
  std::fprintf(f, " \"chunk_windows\": %lld,\n \"attention_query_chunk\": %lld,\n", (long long)a.chunk_windows, (long long)a.qc);
  std::fprintf(f, " \"stages_s\": {\"forward\": %.4f, \"hessian\": %.4f, \"cholesky_inverse\": %.4f, \"solve\": %.4f, \"pack\": %.4f, \"qep\": %.4f},\n",
               tot["forward"], tot["hessian"], tot["cholesky_inverse"], tot["solve"], tot["pack"], tot["qep"]);
  std::fprintf(f, " \"layer_s\": %.4f,\n \"stage_sum_s\": %.4f,\n", wall_s, stage_sum);
  std::fprintf(f, " \"tflop\": {\"forward\": %.2f, \"hessian\": %.2f, \"cholesky_inverse_fp64\": %.2f, \"solve_trailing\": %.2f},\n",
               fwd_flops / 1e12, hes_flops / 1e12, g_chol_flops / 1e12, g_solve_gemm_flops / 1e12);
  std::fprintf(f, " \"ceilings\": {\"fp16_gemm_tflops\": %.1f, \"device_copy_gbs\": %.1f},\n", peak_tflops, copy_gbs);
  std::fprintf(f, " \"peak_gpu_gb\": %.3f,\n \"benchmark_buffers_peak_gb\": %.3f,\n \"host_peak_rss_gb\": %.3f,\n", peak_gpu, lt.peak_buffers_gb, bench::host_peak_rss_gb());
  std::fprintf(f, " \"disk\": {\"dir\": \"%s\", \"bytes\": %.0f, \"write_gbs\": %.3f, \"read_gbs\": %.3f, \"note\": \"%s\"},\n",
               a.disk_dir.c_str(), disk.bytes, disk.write_gbs, disk.read_gbs, disk.note.c_str());
  std::fprintf(f, " \"projection\": {\"layers\": 80, \"read_gb_per_branch\": %.1f, \"write_gb_per_branch\": %.1f, \"layer_s\": %.4f, \"branch_min\": %.2f, \"branch_overlapped_min\": %.2f, \"eight_branches_h\": %.3f, \"eight_branches_overlapped_h\": %.3f},\n",
               read_bytes / 1e9, branch_bytes / 1e9, layer_s, branch_s / 60, branch_overlap_s / 60, 8 * branch_s / 3600, 8 * branch_overlap_s / 3600);
  std::fprintf(f, " \"linears\": [");
  for (size_t i = 0; i < log.size(); ++i) {
    std::string s = log[i];
    while (!s.empty() && s[0] == ' ') s.erase(0, 1);
    std::fprintf(f, "%s\"%s\"", i ? ", " : "", s.c_str());
  }
  std::fprintf(f, "]\n}\n");
  std::fclose(f);
  std::printf("wrote %s\n", path.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "layer70b: error: %s\n", e.what());
  return 1;
}
