#!/usr/bin/env node
/**
 * The CUDA engine through the addon (dist/), where CUDA exists — for GPU hosts, e.g. from the
 * offline bundle (no jest there):
 *   node test/cuda/cuda-golden.js <dir with gptq-golden.safetensors and gptq-golden.json>
 * 1. The GPTQ golden: the GPU solve against the authors' fasterquant outputs (the bar of
 *    test/golden/gptq-golden.test.ts: loss within 1 %, ≥ 95 % identical fp16 entries) and
 *    against the CPU engine on the same W, H (≥ 99 % identical codes, loss within 0.5 %).
 * 2. A CudaSession over a small random decoder layer: all seven linears come back, and the
 *    first group's (k, v, q) codes match the CPU engine solving with the CPU's Hessian of
 *    input_layernorm(x) (≥ 99 %).
 * 3. The weight slots' sources: a bf16 file, fp32 data and fp16 files give the same layer; a
 *    NaN weight is reported by name.
 * Exit code 0 only when every check passes.
 */
const path = require('node:path');
const root = path.resolve(__dirname, '../..');
const native = require(path.join(root, 'dist/native'));
const { SafetensorsFile } = require(path.join(root, 'dist/io/safetensors-reader'));
const { f32ToF16Bits, f16ToF32 } = require(path.join(root, 'dist/io/dtypes'));
const { LAYER_PLAN, planOrder } = require(path.join(root, 'dist/model/layer-plan'));

let failures = 0;
function report(ok, line) {
  console.log(`${ok ? 'PASS' : 'FAIL'} ${line}`);
  if (!ok) failures++;
}
function sameFraction(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) s++;
  return s / a.length;
}

async function golden(dir) {
  const meta = require(path.join(dir, 'gptq-golden.json'));
  const file = await SafetensorsFile.open(path.join(dir, 'gptq-golden.safetensors'));
  const tensor = async (name) => {
    const info = file.info(name);
    const bytes = new Uint8Array(await file.read(name));
    return info.dtype === 'F32' ? new Float32Array(bytes.buffer) : native.f16ToF32(new Uint16Array(bytes.buffer));
  };
  for (const run of meta.runs) {
    const W = await tensor(`${run.linear}.W`);
    const H = await tensor(`${run.linear}.H`);
    const ref = await tensor(run.tensor);
    const [N, K] = file.info(`${run.linear}.W`).shape;
    const opts = { bits: run.bits, groupSize: run.group_size, actOrder: run.desc_act, staticGroups: false,
      sym: meta.sym, dampPercent: meta.damp_percent, blockSize: meta.blocksize };
    const gpu = await native.cudaGptqQuantize(W.slice(), H, N, K, opts);
    const cpu = await native.gptqQuantize(W.slice(), H, N, K, opts);
    let same = 0;
    for (let i = 0; i < ref.length; i++) if (f32ToF16Bits(gpu.q[i]) === f32ToF16Bits(ref[i])) same++;
    const frac = same / ref.length, rel = gpu.loss / run.loss - 1;
    report(Math.abs(rel) < 0.01 && frac >= 0.95 && gpu.dampRaises === 0,
      `golden ${run.tensor.padEnd(28)} GPU vs authors: loss ${gpu.loss.toFixed(4)} vs ${run.loss.toFixed(4)} (${(100 * rel).toFixed(3)} %), identical ${(100 * frac).toFixed(2)} %`);
    const fc = sameFraction(gpu.codes, cpu.codes), lc = gpu.loss / cpu.loss - 1;
    report(fc >= 0.99 && Math.abs(lc) < 5e-3,
      `golden ${run.tensor.padEnd(28)} GPU vs CPU engine: codes identical ${(100 * fc).toFixed(2)} %, loss ${(100 * lc).toFixed(4)} %`);
  }
  file.close();
}

function randomHalves(n, std, mean, seed) {
  let s = seed >>> 0;
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    // Irwin–Hall(12) − 6 ≈ N(0, 1) from an LCG: enough for test data.
    let u = 0;
    for (let j = 0; j < 12; j++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; u += s / 4294967296; }
    out[i] = f32ToF16Bits(mean + std * (u - 6));
  }
  return out;
}

async function session() {
  const d = { hidden: 256, ffn: 512, heads: 4, kvHeads: 2, headDim: 64, eps: 1e-5, ropeTheta: 10000 };
  const S = 128, windows = 4, T = S * windows, qd = d.heads * d.headDim, kvd = d.kvHeads * d.headDim;
  const opts = { bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };
  const x = randomHalves(T * d.hidden, 1, 0, 1);
  const w = {
    qkv: randomHalves((qd + 2 * kvd) * d.hidden, 0.05, 0, 2), o: randomHalves(d.hidden * qd, 0.05, 0, 3),
    gateUp: randomHalves(2 * d.ffn * d.hidden, 0.05, 0, 4), down: randomHalves(d.hidden * d.ffn, 0.05, 0, 5),
    inputNorm: randomHalves(d.hidden, 0.1, 1, 6), postNorm: randomHalves(d.hidden, 0.1, 1, 7),
  };
  const s = await native.CudaSession.create(x, T, S, d.hidden);
  const res = await s.quantizeLayer(w, d, opts, {}, LAYER_PLAN);
  const out = await s.read();
  await s.free();
  const names = res.linears.map((l) => l.name).join(',');
  report(names === planOrder(LAYER_PLAN).join(','), `session: linears in the plan's order (${names})`);
  const finite = res.linears.every((l) => Number.isFinite(l.loss) && l.loss > 0) && Float32Array.from(out, f16ToF32).every(Number.isFinite);
  report(finite, `session: finite positive losses and finite outputs; times ${JSON.stringify(res.times)}`);
  // CPU engine on the same layer (fp16 activation storage): its first group, k, v, q, is solved
  // with the Hessian of input_layernorm(x), as the GPU's.
  const f32 = (h) => Float32Array.from(h, f16ToF32);  // fp16 bits → values (exact)
  const qkv = f32(w.qkv);
  const layer = {
    inputNorm: f32(w.inputNorm), q: qkv.slice(0, qd * d.hidden), k: qkv.slice(qd * d.hidden, (qd + kvd) * d.hidden),
    v: qkv.slice((qd + kvd) * d.hidden), o: f32(w.o), postNorm: f32(w.postNorm),
    gate: f32(w.gateUp).slice(0, d.ffn * d.hidden), up: f32(w.gateUp).slice(d.ffn * d.hidden), down: f32(w.down),
  };
  const xs = [];
  const xf = f32(x);
  for (let i = 0; i < windows; i++) xs.push(xf.slice(i * S * d.hidden, (i + 1) * S * d.hidden));
  const dims = { ...d, round16: true };
  const scratch = (width) => xs.map(() => new Float32Array(S * width));
  const cpuLayer = await native.cpuQuantizeLayer(layer, dims, { x: xs, att: scratch(qd), h1: scratch(d.hidden), seqlen: S }, opts,
    { rtn: false, trueSequential: true }, LAYER_PLAN);
  for (const name of ['self_attn.k_proj', 'self_attn.v_proj', 'self_attn.q_proj']) {
    const cpu = cpuLayer.linears.find((l) => l.name === name);
    const gpu = res.linears.find((l) => l.name === name);
    const fc = sameFraction(gpu.codes, cpu.codes), lc = gpu.loss / cpu.loss - 1;
    report(fc >= 0.99 && Math.abs(lc) < 0.01,
      `session ${name}: codes identical to the CPU engine (CPU Hessian) ${(100 * fc).toFixed(2)} %, loss ${(100 * lc).toFixed(3)} %`);
  }
}

// 3. The weight slots' other sources: the same layer (values bf16 also holds exactly) loaded as a
// bf16 file, fp32 data and fp16 files gives identical codes, scales and losses; a NaN weight is
// reported by name.
async function weightSources() {
  const fs = require('node:fs');
  const os = require('node:os');
  const d = { hidden: 256, ffn: 512, heads: 4, kvHeads: 2, headDim: 64, eps: 1e-5, ropeTheta: 10000 };
  const S = 128, T = 4 * S;
  const opts = { bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };
  const bf16able = (h) => h.map((v) => v & 0xfff8);  // 8 significant bits: exact in bf16
  const x = randomHalves(T * d.hidden, 1, 0, 11);
  const counts = native.weightPartCounts(d);
  const w = {};
  native.WEIGHT_PARTS.forEach((p, i) => { w[p] = bf16able(randomHalves(counts[p], p.endsWith('Norm') ? 0.1 : 0.05, p.endsWith('Norm') ? 1 : 0, 20 + i)); });
  const run = async (entries) => {
    const s = await native.CudaSession.create(x, T, S, d.hidden);
    try {
      const bad = await s.load(0, d, entries);
      if (bad.length) return { bad };
      return await s.quantizeLayer(0, d, opts, {}, LAYER_PLAN);
    } finally {
      await s.free();
    }
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cuda-weights-'));
  const file = (name, bytes) => { const f = path.join(dir, name); fs.writeFileSync(f, Buffer.concat([Buffer.alloc(24, 7), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)])); return f; };
  const f16entries = native.WEIGHT_PARTS.map((p) => ({ name: p, part: p, at: 0, count: counts[p], dtype: 'F16', file: file(`${p}.f16`, w[p]), offset: 24 }));
  const ref = await run(f16entries);
  const bf16 = Uint16Array.from(w.qkv, (h) => (new Uint32Array(Float32Array.of(f16ToF32(h)).buffer)[0] >>> 16));
  const mixed = f16entries.map((e) => e.part === 'qkv' ? { ...e, dtype: 'BF16', file: file('qkv.bf16', bf16) }
    : e.part === 'o' ? { name: e.name, part: e.part, at: 0, count: e.count, dtype: 'F32', data: Float32Array.from(w.o, f16ToF32) } : e);
  const got = await run(mixed);
  const same = ref.linears.every((l, i) => l.loss === got.linears[i].loss && sameFraction(l.codes, got.linears[i].codes) === 1
    && sameFraction(l.scales, got.linears[i].scales) === 1);
  report(same, 'weights from a bf16 file, fp32 data and fp16 files: codes, scales and losses identical to fp16 files');
  const nan = w.down.slice();
  nan[5] = 0x7e00;
  const bad = await run(f16entries.map((e) => e.part === 'down' ? { ...e, file: file('down-nan.f16', nan) } : e));
  report(bad.bad?.length === 1 && bad.bad[0].name === 'down' && bad.bad[0].nonFinite === 1, `a NaN weight is reported by name: ${JSON.stringify(bad.bad)}`);
  fs.rmSync(dir, { recursive: true, force: true });
}

(async () => {
  const info = native.cudaInfo();
  console.log(`CUDA: ${JSON.stringify(info)}`);
  if (!native.cudaAvailable()) {
    console.log('the addon has no usable CUDA backend here: nothing checked');
    process.exit(3);
  }
  if (process.argv[2]) await golden(path.resolve(process.argv[2]));
  await session();
  await weightSources();
  console.log(`${failures ? 'FAILED' : 'ALL PASSED'}: ${failures} failure(s)`);
  process.exit(failures ? 1 : 0);
})().catch((e) => { console.error(`cuda-golden: error: ${e.message}`); process.exit(2); });
