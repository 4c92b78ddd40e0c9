#!/usr/bin/env node
'use strict';
/**
 * Quality benchmark: every seed branch (configs/llama-2-gptq-paper.json) of llama2-m built with the
 * standard protocol (128 × 4096 calibration windows of wikitext-2-v1/valid.txt, seed 0, damp
 * 0.01), plus round-to-nearest baselines and fp16, each evaluated on wiki.test.raw at 4096;
 * printed beside the GPTQ authors' figures (../shared/reference/quality-llama2-m-4096.json).
 *
 *   node bench/quality-llama2-m.js [--jobs 1] [--threads T] [--work DIR] [--only name,…] [--shared ../shared] [--mse]
 *
 * Resumable: each finished entry is a JSON file in --work, skipped when run again. Jobs run in
 * parallel with GPTQ_FORGE_THREADS = cores / jobs each. Results: bench/results/quality-llama2-m.json.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { root, flag: arg, sharedDir } = require('./args');
const { gptqJson } = require('./gptq-child');

const shared = sharedDir();
const work = path.resolve(arg('--work', path.join(os.tmpdir(), 'gptq-quality-llama2-m')));
const jobs = Number(arg('--jobs', '1'));
const only = arg('--only', '');
// --mse: the GPTQ branches with the reference Quantizer's grid search (RTN and fp16 unchanged)
const mse = process.argv.includes('--mse');
const model = path.join(shared, 'models/llama2-m');
const calib = path.join(shared, 'datasets/wikitext-2-v1/valid.txt');
const evalText = path.join(shared, 'datasets/wikitext-2-raw-v1/wiki.test.raw');
const reference = JSON.parse(fs.readFileSync(path.join(shared, 'reference/quality-llama2-m-4096.json'), 'utf8'));
const matrix = JSON.parse(fs.readFileSync(path.join(root, 'configs/llama-2-gptq-paper.json'), 'utf8'));
const threads = arg('--threads', String(Math.max(1, Math.floor(os.cpus().length / jobs))));

const entries = [
  { name: 'fp16' },
  { name: 'rtn-4bit-128g', bits: 4, groupSize: 128, actOrder: false, rtn: true },
  { name: 'rtn-4bit--1g', bits: 4, groupSize: -1, actOrder: false, rtn: true },
  { name: 'rtn-3bit-128g', bits: 3, groupSize: 128, actOrder: false, rtn: true },
  ...matrix.branches,
].filter((e) => !only || only.split(',').includes(e.name));

const gptq = (argv) => gptqJson(argv, threads);

async function runEntry(e) {
  const done = path.join(work, `${e.name}.json`);
  if (fs.existsSync(done)) return JSON.parse(fs.readFileSync(done, 'utf8'));
  let target = model;
  let quantize = null;
  if (e.name !== 'fp16') {
    target = path.join(work, e.name);
    quantize = await gptq([
      'quantize', '--model', model, '--out', target, '--force', '--bits', String(e.bits),
      '--group-size', String(e.groupSize), e.actOrder ? '--act-order' : '--no-act-order',
      '--damp', String(e.damp ?? 0.01), '--dataset', calib, '--nsamples', String(matrix.nsamples),
      '--seqlen', String(matrix.seqlen), '--seed', '0', ...(e.rtn ? ['--rtn'] : []), ...(mse && !e.rtn ? ['--mse'] : []),
    ]);
  }
  const evaluation = await gptq(['eval', '--model', target, '--dataset', evalText, '--seqlen', '4096']);
  const result = { name: e.name, perplexity: evaluation.perplexity, evalSeconds: evaluation.seconds, quantize };
  fs.writeFileSync(done, JSON.stringify(result, null, 2));
  console.error(`${e.name}: ${evaluation.perplexity.toFixed(2)}`);
  return result;
}

async function main() {
  fs.mkdirSync(work, { recursive: true });
  const queue = [...entries];
  const results = {};
  await Promise.all(Array.from({ length: jobs }, async () => {
    for (let e; (e = queue.shift());) results[e.name] = await runEntry(e);
  }));
  const rows = entries.map((e) => {
    const r = results[e.name];
    const ref = reference.ppl[e.name];
    return {
      name: e.name, ours: r.perplexity, authors: ref ?? null, ratio: ref ? r.perplexity / ref : null,
      quantizeSeconds: r.quantize?.seconds ?? null, stageSeconds: r.quantize?.times ?? null,
    };
  });
  console.log('| branch | ours | authors (GPTQ code) | ours / authors | quantize s |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    console.log(`| ${r.name} | ${r.ours.toFixed(2)} | ${r.authors ? r.authors.toFixed(2) : '–'} | ${r.ratio ? r.ratio.toFixed(4) : '–'} | ${r.quantizeSeconds ? r.quantizeSeconds.toFixed(0) : '–'} |`);
  }
  const out = {
    date: new Date().toISOString(),
    machine: `${os.cpus()[0].model.trim()} × ${os.cpus().length}, ${jobs} jobs × ${threads} threads`,
    protocol: { calibration: `wikitext-2-v1/valid.txt, 128 × 4096, seed 0, damp 0.01, sym, true-sequential${mse ? ', mse grid' : ''}`, eval: 'wiki.test.raw, seqlen 4096' },
    rows,
  };
  const file = arg('--results', path.join(root, 'bench/results/quality-llama2-m.json'));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
}

main().catch((e) => { console.error(e.message); process.exit(1); });
