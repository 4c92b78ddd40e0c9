/** The branch matrix schema: the shipped matrix parses as the seed's table; bad matrices get a line naming the place. */
import * as path from 'node:path';
import { datasetRegistry } from '../../src/data/datasets';
import { loadMatrix, parseMatrix, selectBranches } from '../../src/gptq/matrix';
import { settingsOf } from '../../src/gptq/branches-dir';

const SEED = path.resolve(__dirname, '../../configs/llama-2-70b-gptq.json');
const PAPER = path.resolve(__dirname, '../../configs/llama-2-gptq-paper.json');

const SEED_TABLE = [
  ['main', 4, -1, true, 0.01],
  ['gptq-4bit-32g-actorder_True', 4, 32, true, 0.01],
  ['gptq-4bit-64g-actorder_True', 4, 64, true, 0.01],
  ['gptq-4bit-128g-actorder_True', 4, 128, true, 0.01],
  ['gptq-3bit-128g-actorder_True', 3, 128, true, 0.01],
  ['gptq-3bit-128g-actorder_False', 3, 128, false, 0.01],
  ['gptq-3bit--1g-actorder_True', 3, -1, true, 0.01],
  ['gptq-3bit-64g-actorder_True', 3, 64, true, 0.01],
];

// TheBloke's branches were calibrated on WikiText-2 v1's test split at 4096 (../shared/README.md).
test('the Llama-2-70B matrix is the seed table: 8 branches, 128 × 4096 of wikitext2-v1 test', async () => {
  const m = await loadMatrix(SEED);
  expect(m.branches.map((b) => [b.name, b.bits, b.groupSize, b.actOrder, b.damp])).toEqual(SEED_TABLE);
  for (const b of m.branches) {
    expect(b).toMatchObject({ dataset: 'wikitext2-v1', split: 'test', seqlen: 4096, nsamples: 128, seed: 0, staticGroups: false, mse: false });
  }
  expect(m.description).toMatch(/TEST split/);
});

// The standard protocol of ../shared/README.md: calibration on the validation split, evaluation on the test split.
test('the paper matrix: the same 8 branches, 128 × 4096 of wikitext2-v1 validation', async () => {
  const m = await loadMatrix(PAPER);
  expect(m.branches.map((b) => [b.name, b.bits, b.groupSize, b.actOrder, b.damp])).toEqual(SEED_TABLE);
  for (const b of m.branches) {
    expect(b).toMatchObject({ dataset: 'wikitext2-v1', split: 'validation', seqlen: 4096, nsamples: 128, seed: 0, staticGroups: false, mse: false });
  }
  expect(m.description).toMatch(/VALIDATION split/);
});

test('the shipped matrices name datasets of the registry, and the registry has their splits', async () => {
  const registry = datasetRegistry();
  for (const file of [SEED, PAPER]) {
    for (const b of (await loadMatrix(file)).branches) {
      expect(Object.keys(registry)).toContain(b.dataset);
      expect(registry[b.dataset].files[b.split]).toMatch(new RegExp(`^${registry[b.dataset].config}/${b.split}-`));
    }
  }
});

const one = (b: Record<string, unknown>, top: Record<string, unknown> = {}) => ({
  dataset: 'wikitext2', seqlen: 128, ...top,
  branches: [{ name: 'a', bits: 4, groupSize: 128, actOrder: true, damp: 0.01, ...b }],
});

test.each([
  [one({ bits: 5 }), /^m\.json: branches\[0\]\.bits must be 2, 3, 4 or 8, got 5$/],
  [one({ groupSize: 0 }), /branches\[0\]\.groupSize must be -1 or a positive integer, got 0$/],
  [one({ actOrder: 'yes' }), /branches\[0\]\.actOrder: expected true or false, got "yes"/],
  [one({ damp: 1 }), /branches\[0\]\.damp must be between 0 and 1 \(exclusive\), e\.g\. 0\.01, got 1$/],
  [one({ name: 'a b' }), /branches\[0\]\.name: expected a branch name/],
  [one({ name: 'x.partial' }), /branches\[0\]\.name: expected a branch name/],
  [one({ groupsize: 64 }), /branches\[0\]: unknown key "groupsize"/],
  [one({ staticGroups: true, groupSize: -1 }), /branches\[0\]\.staticGroups needs a group size \(branches\[0\]\.groupSize > 0\), got branches\[0\]\.groupSize -1$/],
  [one({}, { seqlen: undefined }), /^m\.json: seqlen must be an integer ≥ 2, got undefined$/],
  [one({ seqlen: 0 }), /branches\[0\]\.seqlen must be an integer ≥ 2, got 0$/],
  [one({}, { split: 'dev' }), /split: expected one of train, validation, test/],
  [{ branches: [] }, /branches: expected a non-empty array/],
  [[1], /a branch matrix must be a JSON object/],
  [{ ...one({}), extra: 1 }, /unknown key "extra"/],
  [one({ qep: 0 }), /^m\.json: branches\[0\]\.qep must be a number in \(0, 1\] \(QEP's α, e\.g\. 0\.5\), got 0$/],
  [one({ qep: 1.5 }), /branches\[0\]\.qep must be a number in \(0, 1\].*, got 1\.5$/],
  [one({ bits: '4' }), /branches\[0\]\.bits must be 2, 3, 4 or 8, got "4"$/],
  [one({ groupSize: 1.5 }), /branches\[0\]\.groupSize must be -1 or a positive integer, got 1\.5$/],
  [one({ seqlen: 1 }), /branches\[0\]\.seqlen must be an integer ≥ 2, got 1$/],
  [one({}, { nsamples: 0 }), /^m\.json: nsamples must be an integer ≥ 1, got 0$/],
  [one({ seed: -1 }), /branches\[0\]\.seed must be an integer ≥ 0, got -1$/],
  [one({ qep: true }), /branches\[0\]\.qep must be a number in \(0, 1\].*, got true$/],
])('bad matrix %#', (json, pattern) => {
  expect(() => parseMatrix(json, 'm.json')).toThrow(pattern);
});

test('qep: a per-branch α, absent (plain GPTQ) by default, carried into the branch\'s settings', () => {
  const m = parseMatrix({ ...one({ qep: 0.25 }), branches: [...one({ qep: 0.25 }).branches, { name: 'b', bits: 3, groupSize: 128, actOrder: true, damp: 0.01 }] }, 'm.json');
  expect(m.branches.map((b) => b.qep)).toEqual([0.25, undefined]);
  expect('qep' in m.branches[1]).toBe(false);
  expect(settingsOf(m.branches[0]).qep).toBe(0.25);
  expect('qep' in settingsOf(m.branches[1])).toBe(false); // plain branches' manifests stay as they were
});

test('duplicate names are refused', () => {
  const m = one({});
  m.branches.push({ ...m.branches[0] });
  expect(() => parseMatrix(m, 'm.json')).toThrow(/branches\[1\]\.name: "a" appears twice/);
});

test('per-branch values override the top-level defaults', () => {
  const m = parseMatrix({ ...one({ seqlen: 64, nsamples: 8, dataset: 'x.txt' }), nsamples: 16 }, 'm.json');
  expect(m.branches[0]).toMatchObject({ seqlen: 64, nsamples: 8, dataset: 'x.txt', seed: 0, split: 'train' });
});

test('--only keeps the matrix order and names unknown branches', async () => {
  const m = await loadMatrix(SEED);
  expect(selectBranches(m, 'gptq-3bit-64g-actorder_True, main').map((b) => b.name)).toEqual(['main', 'gptq-3bit-64g-actorder_True']);
  expect(() => selectBranches(m, 'main,gptq-5bit')).toThrow(/--only: unknown branch "gptq-5bit"; .* has main, /);
  expect(() => selectBranches(m, ' , ')).toThrow(/--only needs at least one branch name/);
});
