#!/usr/bin/env node
'use strict';
/**
 * Quality of the recipes (src/gptq/recipes.ts): for each recipe, the branches of a seed matrix
 * (configs/llama-2-70b-gptq.json) built with `gptq branches` on llama2-m at several calibration
 * seeds, each evaluated on wiki.test.raw; per recipe and branch: mean perplexity, spread over the
 * seeds, ratio to the GPTQ authors' seed-0 figure, fraction of the authors' gap to fp16 closed
 * (1 − (ours − fp16)/(authors − fp16)) and build time relative to the default recipe.
 *
 *   node bench/quality-recipes.js [--recipes default,best,mse,qep,static,damp0.1,mse-qep0.75,mse-qep1,gptaq,mse-gptaq] [--seeds 0,1,2]
 *     [--jobs 1] [--threads T] [--device cpu|cuda] [--work DIR] [--out bench/results/quality-recipes-<device>.json]
 *     [--matrix configs/llama-2-70b-gptq.json] [--only name,…] [--model DIR] [--dataset FILE]
 *     [--nsamples 128] [--seqlen 4096] [--eval-seqlen 4096] [--max-windows K] [--verify] [--onnx N] [--onnx-recipes r,…]
 *     [--reference FILE] [--shared ../shared]
 *
 * Each (recipe, seed) is one `gptq branches` child with its own folder under --work; --jobs of
 * them run at once with GPTQ_FORGE_THREADS = cores / jobs each. Resumable: rerun after a kill
 * and `gptq branches --resume` skips finished branches; evaluations already in the --out JSON
 * (written after every one) are not redone. Recipes are real ones (passed as --recipe) or the
 * bench-only single-option variants below (written as matrix keys on every branch, skipped
 * where the option does not apply, by the recipes' own rule).
 * --verify: `gptq verify` on every branch, pass/fail recorded. --onnx N: `gptq eval --engine
 * onnx` against the native engine (CPU) on N windows, at the first seed: every branch of the
 * recipes named by --onnx-recipes (e.g. best), one branch of each other recipe.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { root, flag: arg, sharedDir } = require('./args');
const { gptqChild, gptqJson } = require('./gptq-child');
const { RECIPES, RECIPE_OPTIONS, DEFAULT_RECIPE } = require(path.join(root, 'dist/gptq/recipes.js'));

/** Bench-only variants: one option each, as matrix keys (RECIPE_OPTIONS names them). */
const VARIANTS = {
  mse: { mse: true },
  qep: { qep: 0.5 },
  static: { staticGroups: true },
  'damp0.1': { damp: 0.1 },
  // QEP's α with the MSE grid: which α the best recipe takes
  'mse-qep0.75': { mse: true, qep: 0.75 },
  'mse-qep1': { mse: true, qep: 1 },
  // GPTAQ (the authors' α 0.25), alone and with the MSE grid
  gptaq: { gptaq: 0.25 },
  'mse-gptaq': { mse: true, gptaq: 0.25 },
};

const shared = sharedDir();
const list = (s) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0);
const has = (name) => process.argv.includes(name);
const device = arg('--device', 'cpu');
const recipes = list(arg('--recipes', 'default,best'));
const seeds = list(arg('--seeds', '0,1,2')).map(Number);
const jobs = Number(arg('--jobs', '1'));
const threads = arg('--threads', String(Math.max(1, Math.floor(os.cpus().length / jobs))));
const work = path.resolve(arg('--work', path.join(os.tmpdir(), 'gptq-quality-recipes')));
const outJson = path.resolve(arg('--out', path.join(root, `bench/results/quality-recipes-${device}.json`)));
const outMd = outJson.replace(/\.json$/, '') + '.md';
const matrixFile = path.resolve(arg('--matrix', path.join(root, 'configs/llama-2-70b-gptq.json')));
const model = path.resolve(arg('--model', path.join(shared, 'models/llama2-m')));
const dataset = path.resolve(arg('--dataset', path.join(shared, 'datasets/wikitext-2-v1/valid.txt')));
const evalText = path.join(shared, 'datasets/wikitext-2-raw-v1/wiki.test.raw');
const nsamples = arg('--nsamples', '128');
const seqlen = arg('--seqlen', '4096');
const evalSeqlen = arg('--eval-seqlen', '4096');
const maxWindows = arg('--max-windows', undefined);
const onnxWindows = arg('--onnx', undefined);
const onnxAll = list(arg('--onnx-recipes', ''));
const only = arg('--only', undefined);
const referenceFile = path.resolve(arg('--reference', path.join(shared, 'reference/quality-llama2-m-4096.json')));
const reference = JSON.parse(fs.readFileSync(referenceFile, 'utf8'));

for (const r of recipes) {
  if (!(r in RECIPES) && !(r in VARIANTS)) {
    console.error(`--recipes: unknown ${JSON.stringify(r)}; recipes: ${Object.keys(RECIPES).join(', ')}; bench variants: ${Object.keys(VARIANTS).join(', ')}`);
    process.exit(2);
  }
}
if (!seeds.every((s) => Number.isSafeInteger(s) && s >= 0)) {
  console.error(`--seeds: expected comma-separated integers ≥ 0, got ${arg('--seeds')}`);
  process.exit(2);
}

const gptq = (argv) => gptqChild(argv, threads);
const must = (argv) => gptqJson(argv, threads);

// The results so far (a rerun continues them), written after every step.
const results = fs.existsSync(outJson) ? JSON.parse(fs.readFileSync(outJson, 'utf8')) : {};
const protocol = {
  model, matrix: matrixFile, dataset, nsamples: Number(nsamples), seqlen: Number(seqlen), eval: evalText,
  evalSeqlen: Number(evalSeqlen), maxWindows: maxWindows === undefined ? null : Number(maxWindows), device, reference: referenceFile,
};
if (results.protocol !== undefined && JSON.stringify(results.protocol) !== JSON.stringify(protocol)) {
  console.error(`${outJson} holds results of another protocol (${JSON.stringify(results.protocol)}); give another --out (and --work)`);
  process.exit(2);
}
results.protocol = protocol;
results.recipes = Object.fromEntries(recipes.map((r) => [r, r in RECIPES ? { recipe: r, ...RECIPES[r] } : { variant: VARIANTS[r] }]));
results.runs = results.runs ?? {};
results.onnx = results.onnx ?? {};
const save = () => {
  fs.mkdirSync(path.dirname(outJson), { recursive: true });
  fs.writeFileSync(outJson, `${JSON.stringify(results, null, 2)}\n`);
};

const evalArgs = (target) => ['eval', '--model', target, '--dataset', evalText, '--seqlen', evalSeqlen,
  ...(maxWindows !== undefined ? ['--max-windows', maxWindows] : []), ...(device === 'cuda' ? ['--device', 'cuda'] : ['--device', 'cpu'])];

/** The matrix a variant builds: its keys on every branch where the option applies (RECIPE_OPTIONS' rule). */
const variantFiles = new Map();
function variantMatrix(name) {
  // Written once: the variant's runs for other seeds may be reading it (--jobs > 1).
  if (variantFiles.has(name)) return variantFiles.get(name);
  const m = JSON.parse(fs.readFileSync(matrixFile, 'utf8'));
  m.branches = m.branches.map((b) => {
    const out = { ...b };
    for (const [key, v] of Object.entries(VARIANTS[name])) {
      const why = RECIPE_OPTIONS[key].notApplicable?.({ groupSize: b.groupSize, rtn: false });
      if (why === undefined) out[key] = v;
    }
    return out;
  });
  const file = path.join(work, name, 'matrix.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(m, null, 2));
  variantFiles.set(name, file);
  return file;
}

async function runOne(recipe, seed) {
  const dir = path.join(work, recipe, `seed-${seed}`);
  const matrix = recipe in VARIANTS ? variantMatrix(recipe) : matrixFile;
  const built = await must([
    'branches', '--model', model, '--matrix', matrix, '--out', dir, '--resume', '--dataset', dataset, '--split', 'validation',
    '--nsamples', nsamples, '--seqlen', seqlen, '--seed', String(seed), '--device', device,
    ...(recipe in RECIPES && recipe !== DEFAULT_RECIPE ? ['--recipe', recipe] : []), ...(only ? ['--only', only] : []),
  ]);
  const run = (results.runs[recipe] ??= {})[seed] ??= {};
  for (const b of built) {
    const manifest = JSON.parse(fs.readFileSync(path.join(b.dir, 'manifest.json'), 'utf8'));
    const row = (run[b.name] ??= {});
    row.buildSeconds = manifest.timings.seconds;
    row.settings = manifest.settings;
    if (row.perplexity === undefined) {
      const e = await must(evalArgs(b.dir));
      row.perplexity = e.perplexity;
      row.evalSeconds = e.seconds;
    }
    if (has('--verify') && row.verify === undefined) {
      const v = await gptq(['verify', b.dir]);
      row.verify = v.code === 0 ? 'pass' : 'fail';
      if (v.code !== 0) row.verifyError = v.err.trim().split('\n').pop();
    }
    save();
    console.error(`${recipe} seed ${seed} ${b.name}: ${row.perplexity.toFixed(4)} (${row.buildSeconds.toFixed(1)} s)`);
  }
  if (onnxWindows !== undefined && seed === seeds[0] && built.length > 0) {
    const checked = (results.onnx[recipe] ??= {});
    for (const b of onnxAll.includes(recipe) ? built : built.slice(0, 1)) {
      if (checked[b.name] !== undefined) continue;
      const args = ['eval', '--model', b.dir, '--dataset', evalText, '--seqlen', evalSeqlen, '--max-windows', onnxWindows];
      const native = await must([...args, '--device', 'cpu']);
      const onnx = await must([...args, '--engine', 'onnx']);
      checked[b.name] = {
        seed, windows: Number(onnxWindows), native: native.perplexity, onnx: onnx.perplexity,
        relativeDifference: Math.abs(onnx.perplexity - native.perplexity) / native.perplexity,
      };
      save();
    }
  }
}

const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const std = (a) => Math.sqrt(mean(a.map((x) => (x - mean(a)) ** 2)));

function summarize() {
  const fp16 = results.fp16.perplexity;
  const rows = [];
  const buildMean = (recipe, name) => {
    const v = Object.values(results.runs[recipe] ?? {}).map((s) => s[name]?.buildSeconds).filter((x) => x !== undefined);
    return v.length ? mean(v) : undefined;
  };
  for (const recipe of recipes) {
    const bySeed = results.runs[recipe] ?? {};
    const names = [...new Set(seeds.flatMap((s) => Object.keys(bySeed[s] ?? {})))];
    for (const name of names) {
      const ppl = seeds.map((s) => bySeed[s]?.[name]?.perplexity).filter((x) => x !== undefined);
      if (ppl.length === 0) continue;
      const m = mean(ppl);
      const authors = reference.ppl?.[name];
      const base = buildMean('default', name);
      const build = buildMean(recipe, name);
      rows.push({
        recipe, branch: name, seeds: ppl.length, mean: m, min: Math.min(...ppl), max: Math.max(...ppl), std: std(ppl), authors: authors ?? null,
        ratioToAuthors: authors !== undefined ? m / authors : null,
        gapClosed: authors !== undefined && authors !== fp16 ? 1 - (m - fp16) / (authors - fp16) : null,
        buildSeconds: build, buildRelative: base !== undefined && build !== undefined && base > 0 ? build / base : null,
        verify: seeds.map((s) => bySeed[s]?.[name]?.verify).filter((x) => x !== undefined),
      });
    }
  }
  results.summary = rows;
  const f = (x, d = 4) => (x === null || x === undefined ? '–' : x.toFixed(d));
  const md = [
    `# Recipes on ${path.basename(model)} (${device})`, '',
    `Calibration ${nsamples} × ${seqlen} of ${path.basename(dataset)}, seeds ${seeds.join(', ')}; eval ${path.basename(evalText)} at ${evalSeqlen}` +
      `${maxWindows !== undefined ? ` (first ${maxWindows} windows)` : ''}; fp16 ${f(fp16)}. Authors: ${path.basename(referenceFile)} (seed 0).`, '',
    '| Recipe | Branch | Mean PPL | Min–max | Std | Authors | Ratio | Gap closed | Build s | Build × default | Verify |',
    '| ------ | ------ | -------- | ------- | --- | ------- | ----- | ---------- | ------- | --------------- | ------ |',
    ...rows.map((r) => `| ${r.recipe} | ${r.branch} | ${f(r.mean)} | ${f(r.min)}–${f(r.max)} | ${f(r.std)} | ${f(r.authors)} | ${f(r.ratioToAuthors)} | ` +
      `${f(r.gapClosed, 3)} | ${f(r.buildSeconds, 1)} | ${f(r.buildRelative, 2)} | ${r.verify.length ? r.verify.join(',') : '–'} |`),
    '',
    ...(Object.keys(results.onnx).length ? ['ONNX engine against the native one:', '',
      ...Object.entries(results.onnx).flatMap(([r, byBranch]) => Object.entries(byBranch).map(([name, o]) =>
        `- ${r} ${name} (seed ${o.seed}, ${o.windows} windows): native ${f(o.native)}, onnx ${f(o.onnx)}, relative difference ${o.relativeDifference.toExponential(2)}`)), ''] : []),
  ];
  fs.writeFileSync(outMd, md.join('\n'));
  process.stdout.write(md.join('\n'));
}

async function main() {
  fs.mkdirSync(work, { recursive: true });
  if (results.fp16 === undefined) {
    const e = await must(evalArgs(model));
    results.fp16 = { perplexity: e.perplexity, evalSeconds: e.seconds };
    save();
  }
  const queue = recipes.flatMap((r) => seeds.map((s) => [r, s]));
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, async () => {
    for (let j; (j = queue.shift());) await runOne(...j);
  }));
  summarize();
  save();
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
