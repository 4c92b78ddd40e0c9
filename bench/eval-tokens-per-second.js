#!/usr/bin/env node
'use strict';
/**
 * Benchmark: tokens/s of `gptq eval` (native CPU engine) on llama2-m, set against the
 * machine's measured fp32 peak. Prints a table and writes bench/results/eval-cpu.json.
 *
 *   node bench/eval-tokens-per-second.js [--windows K] [--seqlen 4096] [--model DIR]
 *
 * FLOP count per token and layer (forward only): 2·(q+k+v+o+gate+up+down parameters) for the
 * linears, plus causal attention 2·2·heads·headDim·(t+1) at position t (QKᵀ and P·V); the
 * lm_head adds 2·vocab·hidden per token.
 */
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { root, flag: arg, sharedDir } = require('./args');

const model = arg('--model', path.join(sharedDir(), 'models/llama2-m'));
const seqlen = Number(arg('--seqlen', '4096'));
const windows = Number(arg('--windows', '8'));
const dataset = path.join(sharedDir(), 'datasets/wikitext-2-raw-v1/wiki.test.raw');

async function main() {
  const native = require(path.join(root, 'dist/native'));
  const peak = await native.peakFlops(2);
  const cfg = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'));
  const H = cfg.hidden_size, F = cfg.intermediate_size, L = cfg.num_hidden_layers;
  const nh = cfg.num_attention_heads, nkv = cfg.num_key_value_heads ?? nh, D = cfg.head_dim ?? H / nh;
  const linearParams = H * nh * D * 2 + 2 * H * nkv * D + 3 * H * F;
  const perWindow =
    L * (2 * linearParams * seqlen + 4 * nh * D * (seqlen * (seqlen + 1)) / 2) + 2 * cfg.vocab_size * H * seqlen;

  const cli = path.join(root, 'bin/gptq.js');
  const out = execFileSync(process.execPath, [
    cli, 'eval', '--model', model, '--dataset', dataset, '--seqlen', String(seqlen),
    '--max-windows', String(windows), '--json', '--quiet',
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const r = JSON.parse(out.trim().split('\n').pop());
  const flops = (perWindow * r.windows) / r.seconds;
  const result = {
    date: new Date().toISOString(),
    machine: `${os.cpus()[0].model.trim()} × ${os.cpus().length} (${r.threads} threads)`,
    model: path.basename(model), seqlen, windows: r.windows, seconds: r.seconds,
    tokensPerSecond: r.tokensPerSecond, perplexity: r.perplexity,
    gflopPerWindow: perWindow / 1e9, achievedGflops: flops / 1e9, peakGflops: peak / 1e9,
    achievedOverPeak: flops / peak,
  };
  console.log(`machine           ${result.machine}`);
  console.log(`model             ${result.model}, ${r.windows} windows × ${seqlen} tokens`);
  console.log(`time              ${r.seconds.toFixed(1)} s`);
  console.log(`tokens/s          ${r.tokensPerSecond.toFixed(0)}`);
  console.log(`work              ${(perWindow / 1e9).toFixed(1)} GFLOP per window`);
  console.log(`achieved          ${(flops / 1e9).toFixed(1)} GFLOP/s`);
  console.log(`measured fp32 peak ${(peak / 1e9).toFixed(1)} GFLOP/s  → ${(100 * flops / peak).toFixed(0)} % of peak`);
  fs.mkdirSync(path.join(root, 'bench/results'), { recursive: true });
  fs.writeFileSync(path.join(root, 'bench/results/eval-cpu.json'), `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
