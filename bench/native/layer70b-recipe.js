#!/usr/bin/env node
'use strict';
/**
 * The recipe side of bench:layer70b (run-layer70b.sh), which runs the C++ benchmark directly
 * (no TS settings):
 *   flags <recipe>    prints the benchmark flags of a recipe, from dist's recipe data
 *                     (src/gptq/recipes.ts: RECIPES[name].set through RECIPE_OPTIONS' flags),
 *                     one per line; exit 2 naming the known recipes for an unknown name
 *   relative <marker> prints the layer time of the JSON written after <marker> (a file touched
 *                     before the run) relative to the default run on the same card (same windows,
 *                     seqlen, tf32 and cholFp32, no recipe option) in bench/results
 */
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '../..');
const [mode, value] = process.argv.slice(2);

if (mode === 'flags') {
  const { RECIPES, RECIPE_OPTIONS, recipeProblem } = require(path.join(root, 'dist/gptq/recipes.js'));
  const problem = recipeProblem(value);
  if (problem !== undefined) {
    process.stderr.write(`bench:layer70b: --recipe: ${problem}\n`);
    process.exit(2);
  }
  for (const [key, v] of Object.entries(RECIPES[value].set)) {
    const flag = RECIPE_OPTIONS[key].flag;
    process.stdout.write(v === true ? `${flag}\n` : v === false ? '' : `${flag}\n${v}\n`);
  }
} else if (mode === 'relative') {
  const dir = path.join(root, 'bench/results');
  const since = fs.statSync(value).mtimeMs;
  const read = (f) => ({ file: f, ...JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) });
  const all = fs.readdirSync(dir).filter((f) => /^layer70b-.*\.json$/.test(f));
  const fresh = all.filter((f) => fs.statSync(path.join(dir, f)).mtimeMs >= since).map(read);
  if (fresh.length !== 1) {
    process.stderr.write(`bench:layer70b: expected one result JSON written by this run in ${dir}, found ${fresh.length}\n`);
    process.exit(1);
  }
  const run = fresh[0];
  // Options that are not recipe options: the run's own configuration.
  const BASE_KEYS = ['bits', 'groupSize', 'actOrder', 'sym', 'dampPercent', 'trueSequential', 'tf32TrailingUpdates', 'cholFp32'];
  const isDefault = (o) => Object.entries(o).every(([k, v]) => BASE_KEYS.includes(k) || v === false || v === null) && o.dampPercent === 0.01;
  const same = (r) => r.card === run.card && r.windows === run.windows && r.seqlen === run.seqlen &&
    r.options.tf32TrailingUpdates === run.options.tf32TrailingUpdates && r.options.cholFp32 === run.options.cholFp32;
  if (isDefault(run.options)) {
    process.stdout.write(`layer ${run.layer_s.toFixed(3)} s: the default run (${run.file})\n`);
  } else {
    const base = all.filter((f) => f !== run.file).map(read).find((r) => same(r) && isDefault(r.options));
    process.stdout.write(base
      ? `layer ${run.layer_s.toFixed(3)} s with ${JSON.stringify(run.options)}: ${(run.layer_s / base.layer_s).toFixed(2)}× the default run (${base.file}, ${base.layer_s.toFixed(3)} s)\n`
      : `layer ${run.layer_s.toFixed(3)} s; no default run of ${run.card} with ${run.windows} × ${run.seqlen} in bench/results to compare with: run npm run bench:layer70b without recipe flags\n`);
  }
} else {
  process.stderr.write('usage: layer70b-recipe.js flags <recipe> | relative <marker-file>\n');
  process.exit(2);
}
