#!/usr/bin/env node
'use strict';
/**
 * A branch with one qweight word flipped (every bit inverted), evaluated by both engines:
 * they must agree with each other on the damaged file as they do on the clean one (they read
 * the same bytes), and both must see the damage. Prints the four perplexities and writes
 * bench/results/tamper-engines-cpu.json.
 *
 *   node scripts/checks/tamper-engines.js --branch DIR [--tensor NAME] [--word I|max-scale] [--windows 4] [--seqlen 4096]
 *
 * `--word max-scale` (the default) flips row 0 of the output column with the largest group-0
 * scale: the column whose weights are largest, so the damage is well above both engines'
 * rounding differences.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { root, flag: arg, sharedDir } = require('../../bench/args');

const branch = arg('--branch');
const tensor = arg('--tensor', 'model.layers.0.self_attn.q_proj.qweight');
const wordArg = arg('--word', 'max-scale');
const windows = arg('--windows', '4');
const seqlen = arg('--seqlen', '4096');
const dataset = path.join(sharedDir(), 'datasets/wikitext-2-raw-v1/wiki.test.raw');
const cli = path.join(root, 'bin/gptq.js');

function evalJson(dir, engine) {
  const out = execFileSync(process.execPath, [cli, 'eval', '--model', dir, '--dataset', dataset, '--seqlen', seqlen,
    '--max-windows', windows, '--engine', engine, '--json', '--quiet'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(out.trim().split('\n').pop());
}

/** Inverts one int32 word of `name` in dir/model.safetensors; returns [before, after]. */
function flip(dir) {
  const file = path.join(dir, 'model.safetensors');
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const entry = header[tensor];
  if (!entry) throw new Error(`${file}: no tensor ${tensor}`);
  let word = Number(wordArg);
  if (wordArg === 'max-scale') {
    const sc = header[tensor.replace(/\.qweight$/, '.scales')];
    const cols = sc.shape[1];
    let best = 0, bestV = -1;
    for (let j = 0; j < cols; j++) {
      const v = f16(buf.readUInt16LE(8 + n + sc.data_offsets[0] + 2 * j));
      if (v > bestV) { bestV = v; best = j; }
    }
    word = best; // qweight row 0, column `best`
  }
  const at = 8 + n + entry.data_offsets[0] + 4 * word;
  if (at + 4 > 8 + n + entry.data_offsets[1]) throw new Error(`word ${word} is outside ${tensor}`);
  const before = buf.readInt32LE(at);
  buf.writeInt32LE(~before, at);
  fs.writeFileSync(file, buf);
  return [word, before, ~before];
}

function f16(h) {
  const e = (h >> 10) & 31, m = h & 1023, s = h >> 15 ? -1 : 1;
  return e === 0 ? s * m * 2 ** -24 : e === 31 ? s * Infinity : s * (1 + m / 1024) * 2 ** (e - 15);
}

function main() {
  if (!branch) throw new Error('--branch DIR is required');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-tamper-'));
  try {
    const bad = path.join(tmp, 'tampered');
    fs.cpSync(branch, bad, { recursive: true });
    const [word, before, after] = flip(bad);
    const r = {};
    for (const [label, dir] of [['clean', branch], ['tampered', bad]]) {
      r[label] = { native: evalJson(dir, 'native').perplexity, onnx: evalJson(dir, 'onnx').perplexity };
    }
    const result = {
      date: new Date().toISOString(),
      machine: `${os.cpus()[0].model.trim()} × ${os.cpus().length}`,
      branch: path.basename(branch), tensor, word, before, after, windows: Number(windows), seqlen: Number(seqlen),
      ...r,
      onnxOverNativeClean: r.clean.onnx / r.clean.native - 1,
      onnxOverNativeTampered: r.tampered.onnx / r.tampered.native - 1,
      tamperedOverCleanNative: r.tampered.native / r.clean.native - 1,
    };
    console.log(`${result.branch}: ${tensor} word ${word} 0x${(before >>> 0).toString(16)} → 0x${(after >>> 0).toString(16)}, ${windows} × ${seqlen} tokens`);
    for (const k of ['clean', 'tampered']) {
      console.log(`${k.padEnd(9)} native ${r[k].native.toFixed(4)}  onnx ${r[k].onnx.toFixed(4)}  (${(100 * (r[k].onnx / r[k].native - 1)).toFixed(4)} %)`);
    }
    console.log(`damage seen by native: ${(100 * result.tamperedOverCleanNative).toFixed(4)} %, by onnx: ${(100 * (r.tampered.onnx / r.clean.onnx - 1)).toFixed(4)} %`);
    fs.writeFileSync(path.join(root, 'bench/results/tamper-engines-cpu.json'), `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

try {
  main();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
