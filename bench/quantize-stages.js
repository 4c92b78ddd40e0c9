#!/usr/bin/env node
'use strict';
/**
 * Benchmark: where the time of one GPTQ branch of llama2-m goes on the CPU — layer forward
 * passes, Hessian accumulation, solves, pack+write — and the Hessian kernel's GFLOP/s against
 * the machine's measured fp32 FMA peak. Writes bench/results/quantize-stages-cpu.json.
 *
 *   node bench/quantize-stages.js [--nsamples 128] [--seqlen 4096] [--bits 4] [--group-size 128]
 *
 * Hessian FLOPs: XᵀX over T tokens of width K is T·K·(K+1) multiply-adds counted ×1 (the
 * symmetric half, 2 FLOP each): per layer K = hidden (q/k/v), heads·headDim (o), hidden
 * (gate/up), intermediate (down).
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { root, flag: arg, sharedDir } = require('./args');

const shared = sharedDir();
const model = path.join(shared, 'models/llama2-m');
const nsamples = Number(arg('--nsamples', '128'));
const seqlen = Number(arg('--seqlen', '4096'));
const bits = arg('--bits', '4');
const groupSize = arg('--group-size', '128');

async function main() {
  const native = require(path.join(root, 'dist/native'));
  const peak = await native.peakFlops(2);
  const out = path.join(os.tmpdir(), `gptq-stages-${process.pid}`);
  const json = execFileSync(process.execPath, [
    path.join(root, 'bin/gptq.js'), 'quantize', '--model', model, '--out', out, '--force',
    '--bits', bits, '--group-size', groupSize, '--act-order', '--damp', '0.01',
    '--dataset', path.join(shared, 'datasets/wikitext-2-v1/valid.txt'),
    '--nsamples', String(nsamples), '--seqlen', String(seqlen), '--seed', '0', '--json', '--quiet',
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  fs.rmSync(out, { recursive: true, force: true });
  const s = JSON.parse(json.trim().split('\n').pop());
  const cfg = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
  const H = cfg.hidden_size, F = cfg.intermediate_size, qd = cfg.num_attention_heads * (cfg.head_dim ?? H / cfg.num_attention_heads);
  const T = nsamples * seqlen;
  const hessianFlops = cfg.num_hidden_layers * T * (2 * H * (H + 1) + qd * (qd + 1) + F * (F + 1));
  const t = s.times;
  const result = {
    date: new Date().toISOString(),
    machine: `${os.cpus()[0].model.trim()} × ${os.cpus().length} (${s.threads} threads)`,
    branch: `${bits}-bit, group ${groupSize}, act-order`, nsamples, seqlen,
    seconds: { total: s.seconds, load: t.load, forward: t.forward, hessian: t.hessian, solve: t.solve, packWrite: t.sink },
    hessianGflops: hessianFlops / t.hessian / 1e9, peakGflops: peak / 1e9, hessianOverPeak: hessianFlops / t.hessian / peak,
  };
  console.log(`machine        ${result.machine}`);
  console.log(`branch         llama2-m ${result.branch}, ${nsamples} × ${seqlen} calibration tokens`);
  for (const [k, v] of Object.entries(result.seconds)) console.log(`${k.padEnd(14)} ${v.toFixed(2)} s`);
  console.log(`hessian        ${(hessianFlops / 1e12).toFixed(2)} TFLOP at ${result.hessianGflops.toFixed(1)} GFLOP/s = ${(100 * result.hessianOverPeak).toFixed(0)} % of the measured fp32 peak (${result.peakGflops.toFixed(1)} GFLOP/s)`);
  const file = path.join(root, 'bench/results/quantize-stages-cpu.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((e) => { console.error(e.message); process.exit(1); });
