/**
 * QEP's settings (src/gptq/settings.ts): α's one rule for the flag and for code paths that skip
 * the CLI, the refused combination with rtn, the CPU layer call's config, and the CUDA engine's
 * refusal until it has QEP (src/gptq/device.ts).
 */
import { UsageError } from '../../src/errors';
import { matchesMatrix, settingsOf } from '../../src/gptq/branches-dir';
import { cudaRefusal } from '../../src/gptq/device';
import { CUDA_QEP_UNCORRECTED } from '../../src/native/cuda';
import { Manifest } from '../../src/gptq/manifest';
import { comboProblem, qepConfig, QEP_CORRECTED, QuantizeSettings, validateSettings } from '../../src/gptq/settings';
import { LINEARS } from '../../src/model/weights';
import { LlamaConfig } from '../../src/model/config';

const s: QuantizeSettings = { bits: 3, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true };
const config = { hiddenSize: 256, intermediateSize: 768, numHeads: 4, numKvHeads: 2, headDim: 64 } as LlamaConfig;

test('α must be in (0, 1]: a UsageError naming --qep', () => {
  for (const bad of [0, -0.1, 1.01, NaN]) {
    expect(() => validateSettings({ ...s, qep: bad }, config)).toThrow(UsageError);
    expect(() => validateSettings({ ...s, qep: bad }, config)).toThrow(/^--qep must be a number in \(0, 1\]/);
  }
  for (const ok of [1e-9, 0.5, 1]) expect(() => validateSettings({ ...s, qep: ok }, config)).not.toThrow();
  expect(() => validateSettings(s, config)).not.toThrow();
});

test('QEP needs calibration: refused with rtn, by name', () => {
  expect(comboProblem({ groupSize: 128, qep: 0.5, rtn: true })).toMatch(/^--qep needs calibration .*--rtn has none$/);
  expect(comboProblem({ groupSize: 128, qep: 0.5, rtn: false })).toBeUndefined();
});

test('the layer call\'s config: every linear but down_proj corrected; none without qep', () => {
  expect(qepConfig(s)).toBeNull();
  expect(qepConfig({ ...s, qep: 0.25 })).toEqual({ alpha: 0.25, linears: QEP_CORRECTED });
  expect([...QEP_CORRECTED].sort()).toEqual(LINEARS.filter((l) => l !== 'mlp.down_proj').sort());
});

test('--device cuda takes --qep (the CUDA engine runs QEP); --rtn and --no-true-sequential stay refused beside it', () => {
  expect(cudaRefusal({ ...s, qep: 0.5 })).toBeNull();
  expect(cudaRefusal({ ...s, qep: 1 })).toBeNull();
  expect(cudaRefusal(s)).toBeNull();
  expect(cudaRefusal({ ...s, qep: 0.5, trueSequential: false })).toMatch(/--no-true-sequential/);
  // The corrected linears the CUDA engine gets never include down_proj, which it refuses.
  expect(qepConfig({ ...s, qep: 0.5 })!.linears.filter((l) => CUDA_QEP_UNCORRECTED.includes(l))).toEqual([]);
});

test('a finished branch built with qep does not match a matrix entry without it, nor another α', () => {
  const b = { name: 'a', bits: 3, groupSize: 128, actOrder: true, damp: 0.01, staticGroups: false, mse: false, dataset: 'd', split: 'train' as const, seqlen: 8, nsamples: 2, seed: 0 };
  const manifest = (settings: QuantizeSettings) => ({
    settings, calibration: { dataset: 'd', source: 's', split: 'train', nsamples: 2, seqlen: 8, seed: 0, digest: 'x' },
  }) as unknown as Manifest;
  expect(matchesMatrix(manifest(settingsOf({ ...b, qep: 0.5 })), { ...b, qep: 0.5 })).toBe(true);
  expect(matchesMatrix(manifest(settingsOf({ ...b, qep: 0.5 })), b)).toBe(false);
  expect(matchesMatrix(manifest(settingsOf(b)), { ...b, qep: 0.5 })).toBe(false);
  expect(matchesMatrix(manifest(settingsOf({ ...b, qep: 0.5 })), { ...b, qep: 0.25 })).toBe(false);
  expect(matchesMatrix(manifest(settingsOf(b)), b)).toBe(true);
});
