#!/usr/bin/env node
/**
 * Quality parity of the CUDA engine: one branch (4-bit, g128, act-order) built by the CPU
 * pipeline and one by the CUDA pipeline from the same model and calibration windows, both
 * written by the BranchWriter and evaluated by the same CPU perplexity code (fp16 activations):
 *   node test/cuda/cuda-ppl-check.js <dir made by test/cuda/make-cuda-ppl-input.js> [seqlen=2048]
 * The issue's bar: the GPU-built branch's perplexity within 0.3 % of the CPU-built one's. For
 * scale, a third branch is built by the CPU from the same windows in reverse order (only the
 * Hessians' summation order changes): how far two equally valid runs land apart.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const root = path.resolve(__dirname, '../..');
const { LlamaModel } = require(path.join(root, 'dist/model/llama-model'));
const { BranchWriter, packLinear } = require(path.join(root, 'dist/gptq/branch-writer'));
const { quantizeLayers } = require(path.join(root, 'dist/gptq/driver'));
const quantizeLayersCuda = (model, calib, seqlen, s, sink) => quantizeLayers(model, calib, seqlen, s, sink, {}, undefined, 'cuda');
const { evaluatePerplexity } = require(path.join(root, 'dist/eval/perplexity'));

const ints = (file) => {
  const b = fs.readFileSync(file);
  return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

(async () => {
  const dir = path.resolve(process.argv[2]);
  const seqlen = +(process.argv[3] ?? 2048);
  const modelDir = path.join(dir, 'model');
  const model = await LlamaModel.open(modelDir);
  let calib = ints(path.join(dir, 'calib.bin')), test = ints(path.join(dir, 'test.bin'));
  // Dry runs (no GPU): CUDA_PPL_DRY=<windows> keeps that many windows and skips the CUDA branch.
  const dry = +(process.env.CUDA_PPL_DRY ?? 0);
  if (dry) { calib = calib.subarray(0, dry * seqlen); test = test.subarray(0, dry * seqlen); }
  const s = { bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cuda-ppl-'));
  const branches = {};
  const reversed = new Int32Array(calib.length);
  const nw = calib.length / seqlen;
  for (let w = 0; w < nw; w++) reversed.set(calib.subarray(w * seqlen, (w + 1) * seqlen), (nw - 1 - w) * seqlen);
  for (const [engine, run, windows] of [['cpu', quantizeLayers, calib], ['cpu-reversed', quantizeLayers, reversed],
    ['cuda', dry ? quantizeLayers : quantizeLayersCuda, calib]]) {
    const out = path.join(work, engine);
    const writer = await BranchWriter.create(out, `${out}.tmp`, model, s, { modelNameOrPath: 'llama2-s' });
    const t0 = Date.now();
    const r = await run(model, windows, seqlen, s, async (l, n, solve, shape) =>
      writer.writeTensors(await packLinear(l, n, solve, shape, s.bits, s.groupSize)));
    await writer.finish();
    const loss = r.linears.reduce((a, l) => a + l.loss, 0);
    console.log(`${engine}: quantized in ${((Date.now() - t0) / 1e3).toFixed(1)} s, Σ loss ${loss.toPrecision(6)}, stages ${JSON.stringify(r.times)}`);
    branches[engine] = out;
  }
  const ppl = {};
  for (const [name, d] of [['fp16', modelDir], ...Object.entries(branches)]) {
    const m = await LlamaModel.open(d);
    const t0 = Date.now();
    const r = await evaluatePerplexity(m, test, seqlen, { round16: true });
    await m.close();
    ppl[name] = r.perplexity;
    console.log(`${name.padEnd(12)} perplexity ${r.perplexity.toFixed(4)} (${r.windows} × ${r.seqlen} tokens, ${((Date.now() - t0) / 1e3).toFixed(1)} s)`);
  }
  console.log(`CPU-built, windows reversed, vs CPU-built: perplexity ${(100 * (ppl['cpu-reversed'] / ppl.cpu - 1)).toFixed(3)} %`);
  const rel = ppl.cuda / ppl.cpu - 1;
  const ok = Math.abs(rel) <= 0.003;
  console.log(`${ok ? 'PASS' : 'FAIL'} GPU-built branch vs CPU-built: perplexity ${(100 * rel).toFixed(3)} % (bar ±0.3 %); fp16 ${ppl.fp16.toFixed(4)}`);
  fs.rmSync(work, { recursive: true, force: true });
  process.exit(ok ? 0 : 1);
})().catch((e) => { console.error(`cuda-ppl-check: error: ${e.stack}`); process.exit(2); });
