/**
 * Which settings the CUDA engine takes (src/gptq/device.ts cudaRefusal) and what the device
 * choice makes of them where a GPU is visible (the native module's CUDA probe mocked: the rule,
 * not the hardware). --mse runs on both engines; --rtn and --no-true-sequential stay CPU only.
 */
import { UserError } from '../../src/errors';
import { checkCudaSettings, cudaRefusal, pickDevice } from '../../src/gptq/device';
import { QuantizeSettings } from '../../src/gptq/settings';

jest.mock('../../src/native', () => ({
  ...jest.requireActual('../../src/native'),
  cudaAvailable: () => true,
  cudaUnavailableReason: () => null,
}));

const base: QuantizeSettings = {
  bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true,
};

describe('cudaRefusal', () => {
  test('--mse is not refused, with any grid setting', () => {
    for (const bits of [2, 3, 4, 8]) {
      for (const [groupSize, actOrder, staticGroups, sym] of [[128, true, false, true], [-1, false, false, false], [128, true, true, true]] as const) {
        expect(cudaRefusal({ ...base, bits, groupSize, actOrder, staticGroups, sym, mse: true })).toBeNull();
      }
    }
  });

  test('--rtn and --no-true-sequential are still refused, naming the flag (also with --mse)', () => {
    expect(cudaRefusal({ ...base, rtn: true })).toMatch(/--rtn/);
    expect(cudaRefusal({ ...base, mse: true, rtn: true })).toMatch(/--rtn/);
    expect(cudaRefusal({ ...base, mse: true, trueSequential: false })).toMatch(/--no-true-sequential/);
  });
});

describe('the device of a build where a GPU is visible', () => {
  test('--device cuda --mse: cuda, no error', () => {
    expect(pickDevice('cuda', { ...base, mse: true })).toBe('cuda');
    expect(() => checkCudaSettings({ ...base, mse: true })).not.toThrow();
  });

  test('no --device: --mse builds go to the GPU like the default ones', () => {
    expect(pickDevice(undefined, { ...base, mse: true })).toBe('cuda');
    expect(pickDevice(undefined, base)).toBe('cuda');
  });

  test('--device cuda --rtn: a UserError naming --rtn; without --device the CPU', () => {
    expect(() => pickDevice('cuda', { ...base, mse: true, rtn: true })).toThrow(UserError);
    expect(() => pickDevice('cuda', { ...base, mse: true, rtn: true })).toThrow(/--rtn/);
    expect(pickDevice(undefined, { ...base, rtn: true })).toBe('cpu');
  });
});
