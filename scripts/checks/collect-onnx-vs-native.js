#!/usr/bin/env node
'use strict';
/**
 * Collects the output folder of scripts/checks/onnx-vs-native.sh into bench/results/onnx-vs-native-cpu.json
 * and prints the table: per model, native and ONNX perplexity, their relative difference, and
 * (fp16) the transformers figure of ../shared/reference/quality-llama2-m-4096.json.
 *
 *   node scripts/checks/collect-onnx-vs-native.js OUT
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { root, sharedDir } = require('../../bench/args');

const out = process.argv[2];
if (!out) { console.error('usage: collect-onnx-vs-native.js OUT'); process.exit(1); }
const ref = JSON.parse(fs.readFileSync(path.join(sharedDir(), 'reference/quality-llama2-m-4096.json'), 'utf8'));
const read = (f) => JSON.parse(fs.readFileSync(path.join(out, f), 'utf8'));
const rows = [];
for (const f of fs.readdirSync(out).filter((x) => x.endsWith('-native.json')).sort()) {
  const name = f.replace(/-native\.json$/, '');
  const done = (f2) => fs.existsSync(path.join(out, f2)) && fs.statSync(path.join(out, f2)).size > 0;
  if (![f, `${name}-onnx.json`, `${name}-export.json`].every(done)) continue; // still running
  const native = read(f), onnx = read(`${name}-onnx.json`), exp = read(`${name}-export.json`);
  const transformers = name === 'fp16' ? ref.ppl.fp16 : undefined;
  rows.push({
    model: name, export: exp.summary, exportSeconds: exp.seconds,
    native: { perplexity: native.perplexity, seconds: native.seconds, tokensPerSecond: native.tokensPerSecond, activations: native.activations },
    onnx: { perplexity: onnx.perplexity, seconds: onnx.seconds, tokensPerSecond: onnx.tokensPerSecond, activations: onnx.activations },
    onnxOverNative: onnx.perplexity / native.perplexity - 1,
    transformers, onnxOverTransformers: transformers ? onnx.perplexity / transformers - 1 : undefined,
    windows: native.windows, seqlen: native.seqlen, threads: native.threads,
  });
}
const result = {
  date: new Date().toISOString(),
  machine: `${os.cpus()[0].model.trim()} × ${os.cpus().length} (${rows[0]?.threads} threads, shared with other jobs)`,
  onnxruntime: require('onnxruntime-node/package.json').version,
  rows,
};
console.log('model                            native ppl   onnx ppl   onnx/native-1   native s   onnx s');
for (const r of rows) {
  console.log(`${r.model.padEnd(32)} ${r.native.perplexity.toFixed(2).padStart(10)} ${r.onnx.perplexity.toFixed(2).padStart(10)}` +
    ` ${(100 * r.onnxOverNative).toFixed(4).padStart(13)} % ${r.native.seconds.toFixed(0).padStart(8)} ${r.onnx.seconds.toFixed(0).padStart(8)}` +
    (r.transformers ? `   transformers ${r.transformers.toFixed(2)} (onnx ${(100 * r.onnxOverTransformers).toFixed(4)} %)` : ''));
}
fs.writeFileSync(path.join(root, 'bench/results/onnx-vs-native-cpu.json'), `${JSON.stringify(result, null, 2)}\n`);
