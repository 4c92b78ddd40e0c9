/**
 * bench/quality-recipes.js on llama2-s at toy sizes (2 branches, 2 × 64 calibration tokens,
 * 1 seed, 2 recipes, 2 eval windows of 64 tokens): the JSON holds every raw number with the
 * expected structure, finite, and the summary rows; a rerun continues (nothing rebuilt).
 * The figures themselves mean nothing at these sizes; the benchmark prints them, no test checks them.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LLAMA2_S } from '../helpers/shared';

jest.setTimeout(300_000);
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-quality-recipes-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SCRIPT = path.resolve(__dirname, '../../bench/quality-recipes.js');
const RECIPES = ['default', 'best'];
const BRANCHES = ['main', 'gptq-3bit-128g-actorder_True'];

test('quality-recipes.js: raw numbers and summary per recipe and branch, finite; a rerun rebuilds nothing', () => {
  const matrix = path.join(tmp, 'm.json');
  fs.writeFileSync(matrix, JSON.stringify({
    dataset: 'unused', seqlen: 4096, nsamples: 128,
    branches: [
      { name: BRANCHES[0], bits: 4, groupSize: -1, actOrder: true, damp: 0.01 },
      { name: BRANCHES[1], bits: 3, groupSize: 128, actOrder: true, damp: 0.01 },
    ],
  }));
  const out = path.join(tmp, 'q.json'), work = path.join(tmp, 'work');
  const argv = [
    SCRIPT, '--model', LLAMA2_S, '--matrix', matrix, '--recipes', RECIPES.join(','), '--seeds', '0', '--nsamples', '2', '--seqlen', '64',
    '--eval-seqlen', '64', '--max-windows', '2', '--work', work, '--out', out, '--verify', '--device', 'cpu', '--threads', '2',
  ];
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', timeout: 240_000 });
  expect(r.stderr).not.toMatch(/exited|Error/);
  expect(r.status).toBe(0);
  const j = JSON.parse(fs.readFileSync(out, 'utf8'));
  expect(Number.isFinite(j.fp16.perplexity)).toBe(true);
  expect(Object.keys(j.runs).sort()).toEqual([...RECIPES].sort());
  for (const recipe of RECIPES) {
    expect(Object.keys(j.runs[recipe])).toEqual(['0']);
    const run = j.runs[recipe]['0'];
    expect(Object.keys(run).sort()).toEqual([...BRANCHES].sort());
    for (const b of BRANCHES) {
      expect(Number.isFinite(run[b].perplexity)).toBe(true);
      expect(run[b].buildSeconds).toBeGreaterThan(0);
      expect(run[b].verify).toBe('pass');
      expect(run[b].settings.recipe).toBe(recipe === 'default' ? undefined : recipe);
    }
  }
  expect(j.summary).toHaveLength(RECIPES.length * BRANCHES.length);
  for (const row of j.summary) {
    for (const k of ['mean', 'min', 'max', 'std', 'ratioToAuthors', 'gapClosed', 'buildSeconds', 'buildRelative']) expect(Number.isFinite(row[k])).toBe(true);
    expect(row.min).toBeLessThanOrEqual(row.mean);
    expect(row.max).toBeGreaterThanOrEqual(row.mean);
  }
  expect(j.summary.filter((row: { recipe: string }) => row.recipe === 'default').every((row: { buildRelative: number }) => row.buildRelative === 1)).toBe(true);
  expect(fs.readFileSync(out.replace(/\.json$/, '.md'), 'utf8')).toContain('| best | main |');

  const manifest = path.join(work, 'best', 'seed-0', BRANCHES[1], 'manifest.json');
  const before = fs.readFileSync(manifest, 'utf8');
  const again = spawnSync(process.execPath, argv, { encoding: 'utf8', timeout: 60_000 });
  expect(again.status).toBe(0);
  expect(fs.readFileSync(manifest, 'utf8')).toBe(before);
  expect(JSON.parse(fs.readFileSync(out, 'utf8')).runs).toEqual(j.runs);
});
