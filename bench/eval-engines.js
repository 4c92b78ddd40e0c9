#!/usr/bin/env node
'use strict';
/**
 * Benchmark: tokens/s of `gptq eval` with the native engine and with onnxruntime-node (CPU
 * execution provider) on llama2-m fp16 and on a 4-bit GPTQ branch, same windows, same threads.
 * Prints a table and writes bench/results/eval-engines-cpu.json.
 *
 *   node bench/eval-engines.js --branch DIR [--model DIR] [--windows 8] [--seqlen 4096]
 *
 * The ONNX export is timed separately (it is done once per model); the ONNX figure includes
 * session creation (weight loading and prepacking), as the native figure includes its loading.
 * Threads: GPTQ_FORGE_THREADS (default: all cores) for both engines.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { root, flag: arg, sharedDir } = require('./args');

const model = arg('--model', path.join(sharedDir(), 'models/llama2-m'));
const branch = arg('--branch');
const seqlen = Number(arg('--seqlen', '4096'));
const windows = Number(arg('--windows', '8'));
const dataset = path.join(sharedDir(), 'datasets/wikitext-2-raw-v1/wiki.test.raw');
const cli = path.join(root, 'bin/gptq.js');

function gptq(args) {
  const out = execFileSync(process.execPath, [cli, ...args, '--json', '--quiet'], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(out.trim().split('\n').pop());
}

function evalWith(dir, engine, onnxFile) {
  const extra = engine === 'onnx' ? ['--engine', 'onnx', '--onnx', onnxFile] : [];
  return gptq(['eval', '--model', dir, '--dataset', dataset, '--seqlen', String(seqlen),
    '--max-windows', String(windows), ...extra]);
}

function main() {
  if (!branch) throw new Error('--branch DIR (a 4-bit GPTQ branch of the model) is required');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-bench-onnx-'));
  const rows = [];
  try {
    for (const [label, dir] of [['fp16', model], ['branch', branch]]) {
      const onnxFile = path.join(tmp, `${label}.onnx`);
      const exp = gptq(['export-onnx', dir, '--out', onnxFile]);
      const native = evalWith(dir, 'native');
      const onnx = evalWith(dir, 'onnx', onnxFile);
      rows.push({
        model: label === 'fp16' ? path.basename(dir) : `${path.basename(model)} ${path.basename(dir)}`,
        linears: exp.summary, exportSeconds: exp.seconds, windows: native.windows, threads: native.threads,
        native: { seconds: native.seconds, tokensPerSecond: native.tokensPerSecond, perplexity: native.perplexity },
        onnx: { seconds: onnx.seconds, tokensPerSecond: onnx.tokensPerSecond, perplexity: onnx.perplexity },
      });
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const result = {
    date: new Date().toISOString(),
    machine: `${os.cpus()[0].model.trim()} × ${os.cpus().length} (${rows[0].threads} threads)`,
    onnxruntime: require('onnxruntime-node/package.json').version,
    seqlen, windows: rows[0].windows, rows,
  };
  console.log(`machine ${result.machine}, onnxruntime-node ${result.onnxruntime}, ${result.windows} windows × ${seqlen} tokens`);
  console.log('model                                      native tok/s   onnx tok/s   onnx/native   ppl native   ppl onnx');
  for (const r of rows) {
    console.log(`${r.model.padEnd(42)} ${r.native.tokensPerSecond.toFixed(0).padStart(12)} ${r.onnx.tokensPerSecond.toFixed(0).padStart(12)}` +
      ` ${(r.onnx.tokensPerSecond / r.native.tokensPerSecond).toFixed(2).padStart(13)} ${r.native.perplexity.toFixed(2).padStart(12)} ${r.onnx.perplexity.toFixed(2).padStart(10)}`);
  }
  fs.mkdirSync(path.join(root, 'bench/results'), { recursive: true });
  fs.writeFileSync(path.join(root, 'bench/results/eval-engines-cpu.json'), `${JSON.stringify(result, null, 2)}\n`);
}

try {
  main();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
