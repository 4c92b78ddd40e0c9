/**
 * GPTAQ's settings (src/gptq/settings.ts): α's one rule for the flag, the matrix and code paths
 * that skip the CLI; the refused combinations (with rtn, with qep) in the CLI's and the matrix's
 * words; the CPU layer call's config; the CUDA engine's refusal (src/gptq/device.ts); and a
 * finished branch matching a matrix entry only with the same α.
 */
import { UsageError, UserError } from '../../src/errors';
import { matchesMatrix, settingsOf } from '../../src/gptq/branches-dir';
import { cudaRefusal } from '../../src/gptq/device';
import { Manifest } from '../../src/gptq/manifest';
import { parseMatrix } from '../../src/gptq/matrix';
import { comboProblem, gptaqConfig, GPTAQ_DEFAULT_ALPHA, QuantizeSettings, validateSettings } from '../../src/gptq/settings';
import { LlamaConfig } from '../../src/model/config';

const s: QuantizeSettings = { bits: 3, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true };
const config = { hiddenSize: 256, intermediateSize: 768, numHeads: 4, numKvHeads: 2, headDim: 64 } as LlamaConfig;

test('α must be in (0, 1]: a UsageError naming --gptaq', () => {
  for (const bad of [0, -0.25, 1.5, NaN]) {
    expect(() => validateSettings({ ...s, gptaq: bad }, config)).toThrow(UsageError);
    expect(() => validateSettings({ ...s, gptaq: bad }, config)).toThrow(/^--gptaq must be a number in \(0, 1\] \(GPTAQ's α, e\.g\. 0\.25\), got /);
  }
  for (const ok of [1e-9, GPTAQ_DEFAULT_ALPHA, 1]) expect(() => validateSettings({ ...s, gptaq: ok }, config)).not.toThrow();
  expect(GPTAQ_DEFAULT_ALPHA).toBe(0.25); // the authors' fasterquant(alpha=0.25)
});

test('GPTAQ needs calibration and is not combined with QEP: refused by name', () => {
  expect(comboProblem({ groupSize: 128, gptaq: 0.25, rtn: true })).toMatch(/^--gptaq needs calibration .*--rtn has none$/);
  expect(comboProblem({ groupSize: 128, gptaq: 0.25, qep: 0.5 })).toMatch(/^--gptaq and --qep both fit the quantized model .*use one of them$/);
  expect(() => validateSettings({ ...s, gptaq: 0.25, qep: 0.5 }, config)).toThrow(UsageError);
  expect(comboProblem({ groupSize: 128, gptaq: 0.25, rtn: false })).toBeUndefined();
  expect(comboProblem({ groupSize: 128, qep: 0.5 })).toBeUndefined();
});

test('the layer call\'s config: α alone; null without gptaq', () => {
  expect(gptaqConfig(s)).toBeNull();
  expect(gptaqConfig({ ...s, gptaq: 0.5 })).toEqual({ alpha: 0.5 });
});

test('--device cuda runs --gptaq (its layer gathers every group\'s cross term)', () => {
  expect(cudaRefusal({ ...s, gptaq: 0.25 })).toBeNull();
  expect(cudaRefusal(s)).toBeNull();
});

const entry = { name: 'a', bits: 3, groupSize: 128, actOrder: true, damp: 0.01 };
const matrix = (b: Record<string, unknown>) => parseMatrix({ dataset: 'd', seqlen: 8, branches: [{ ...entry, ...b }] }, 'm.json');

test('matrix key gptaq: the one rule, worded with the matrix\'s place; refused with qep', () => {
  expect(matrix({ gptaq: 0.25 }).branches[0].gptaq).toBe(0.25);
  expect('gptaq' in matrix({}).branches[0]).toBe(false);
  expect(() => matrix({ gptaq: 2 })).toThrow(UserError);
  expect(() => matrix({ gptaq: 2 })).toThrow(/^m\.json: branches\[0\]\.gptaq must be a number in \(0, 1\]/);
  expect(() => matrix({ gptaq: 0.25, qep: 0.5 })).toThrow(/^m\.json: branches\[0\]\.gptaq and branches\[0\]\.qep both fit/);
});

test('a finished branch built with gptaq does not match a matrix entry without it, nor another α', () => {
  const b = { ...entry, staticGroups: false, mse: false, dataset: 'd', split: 'train' as const, seqlen: 8, nsamples: 2, seed: 0 };
  const manifest = (settings: QuantizeSettings) => ({
    settings, calibration: { dataset: 'd', source: 's', split: 'train', nsamples: 2, seqlen: 8, seed: 0, digest: 'x' },
  }) as unknown as Manifest;
  expect(matchesMatrix(manifest(settingsOf({ ...b, gptaq: 0.25 })), { ...b, gptaq: 0.25 })).toBe(true);
  expect(matchesMatrix(manifest(settingsOf({ ...b, gptaq: 0.25 })), b)).toBe(false);
  expect(matchesMatrix(manifest(settingsOf(b)), { ...b, gptaq: 0.25 })).toBe(false);
  expect(matchesMatrix(manifest(settingsOf({ ...b, gptaq: 0.25 })), { ...b, gptaq: 0.5 })).toBe(false);
  expect(matchesMatrix(manifest(settingsOf({ ...b, gptaq: 0.25 })), { ...b, qep: 0.25 })).toBe(false);
});
