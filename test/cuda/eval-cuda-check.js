#!/usr/bin/env node
'use strict';
/**
 * The GPU perplexity engine against the CPU engine on the same files (a GPU host):
 *
 *   node test/cuda/eval-cuda-check.js --dataset wiki.test.raw [--seqlen 4096] [--max-windows K]
 *     [--bar 0.02] [--reference MODEL=PPL ...] [--json OUT.json] MODEL_DIR...
 *
 * For each model (fp16 or GPTQ branch) it runs `gptq eval --json` with --device cpu and with
 * --device cuda, and prints both perplexities, their difference in percent and both times.
 * --reference MODEL=PPL also compares the GPU's figure with a known one (e.g. transformers').
 * Exits 1 when a difference is above --bar percent (default 0.02).
 */
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const args = process.argv.slice(2);
const opt = { seqlen: '4096', bar: '0.02', reference: [] };
const models = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--reference') opt.reference.push(args[++i]);
  else if (a.startsWith('--')) opt[a.slice(2)] = args[++i];
  else models.push(a);
}
if (!opt.dataset || models.length === 0) {
  console.error('usage: node test/cuda/eval-cuda-check.js --dataset FILE [--seqlen N] [--max-windows K] [--bar PCT] [--reference MODEL=PPL] [--json OUT] MODEL...');
  process.exit(2);
}
const root = path.join(__dirname, '../..');
const node = fs.existsSync(path.join(root, 'bin', 'node')) ? path.join(root, 'bin', 'node') : process.execPath;
const refs = Object.fromEntries(opt.reference.map((r) => { const [m, p] = r.split('='); return [path.resolve(m), Number(p)]; }));

function evaluate(model, device) {
  const a = [path.join(root, 'bin', 'gptq.js'), 'eval', '--model', model, '--dataset', opt.dataset, '--seqlen', opt.seqlen,
    '--device', device, '--json', '--quiet'];
  if (opt['max-windows']) a.push('--max-windows', opt['max-windows']);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(node, a, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${model} --device ${device}: ${r.stderr.trim()}`);
  return { ...JSON.parse(r.stdout.trim().split('\n').pop()), wall };
}

const rows = [];
let worst = 0;
for (const m of models) {
  const cpu = evaluate(m, 'cpu');
  const gpu = evaluate(m, 'cuda');
  const diff = (gpu.perplexity / cpu.perplexity - 1) * 100;
  worst = Math.max(worst, Math.abs(diff));
  const ref = refs[path.resolve(m)];
  const row = {
    model: m, cpu: cpu.perplexity, cuda: gpu.perplexity, diffPercent: diff, cpuSeconds: cpu.wall, cudaSeconds: gpu.wall,
    device: gpu.device, windows: gpu.windows, ...(ref ? { reference: ref, cudaVsReferencePercent: (gpu.perplexity / ref - 1) * 100 } : {}),
  };
  rows.push(row);
  const r = ref ? `; vs reference ${ref}: ${row.cudaVsReferencePercent.toFixed(4)} %` : '';
  console.log(`${path.basename(m)}: cpu ${cpu.perplexity.toFixed(4)} (${cpu.wall.toFixed(1)} s), cuda ${gpu.perplexity.toFixed(4)} ` +
    `(${gpu.wall.toFixed(1)} s), cuda − cpu ${diff >= 0 ? '+' : ''}${diff.toFixed(4)} %${r}`);
  if (ref) worst = Math.max(worst, Math.abs(row.cudaVsReferencePercent));
}
if (opt.json) fs.writeFileSync(opt.json, JSON.stringify({ date: new Date().toISOString(), dataset: opt.dataset, seqlen: Number(opt.seqlen), rows }, null, 2) + '\n');
const ok = worst <= Number(opt.bar);
console.log(`${ok ? 'PASS' : 'FAIL'}: largest difference ${worst.toFixed(4)} % (bar ${opt.bar} %)`);
process.exit(ok ? 0 : 1);
