#!/usr/bin/env node
/**
 * The input of test/cuda/cuda-ppl-check.js, small enough to carry to a GPU host:
 *   node test/cuda/make-cuda-ppl-input.js [--plain] <model dir> <calibration text> <test text> <out dir> [nsamples=128] [seqlen=2048]
 * out/model: config and tokenizer-free copy of the model (model.safetensors.xz: unpack on the
 * host; with --plain, made on the GPU host itself by native/tests/run-cuda-checks.sh,
 * model.safetensors as it is); out/calib.bin: the calibration windows as `gptq quantize` samples them (seed 0);
 * out/test.bin: the evaluation windows of the test text as `gptq eval` cuts them (Int32 LE).
 */
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const root = path.resolve(__dirname, '../..');
const { loadCalibration } = require(path.join(root, 'dist/gptq/calibration-set'));
const { tokenizeCached } = require(path.join(root, 'dist/data/tokenizer'));
const { evalWindows } = require(path.join(root, 'dist/data/windows'));

const write = (file, a) => fs.writeFileSync(file, Buffer.from(a.buffer, a.byteOffset, a.byteLength));

(async () => {
  const plain = process.argv.includes('--plain');
  const [modelDir, calibText, testText, outDir, ns = '128', sl = '2048'] = process.argv.slice(2).filter((a) => a !== '--plain');
  const out = path.join(outDir, 'model');
  fs.mkdirSync(out, { recursive: true });
  for (const f of ['config.json', 'generation_config.json'])
    if (fs.existsSync(path.join(modelDir, f))) fs.copyFileSync(path.join(modelDir, f), path.join(out, f));
  if (plain) fs.copyFileSync(path.join(modelDir, 'model.safetensors'), path.join(out, 'model.safetensors'));
  else execFileSync('sh', ['-c', `xz -T0 -6 -c "${path.join(modelDir, 'model.safetensors')}" > "${path.join(out, 'model.safetensors.xz')}"`]);
  const calib = await loadCalibration(modelDir, calibText, { split: 'train', nsamples: +ns, seqlen: +sl, seed: 0 });
  write(path.join(outDir, 'calib.bin'), calib.tokens);
  const ids = await tokenizeCached(modelDir, fs.readFileSync(testText, 'utf8'), { addBos: true });
  const w = evalWindows(ids, +sl);
  write(path.join(outDir, 'test.bin'), w.tokens);
  console.log(`wrote ${outDir}: calib ${calib.nsamples} × ${calib.seqlen}, test ${w.count} × ${w.seqlen}`);
})().catch((e) => { console.error(e); process.exit(1); });
