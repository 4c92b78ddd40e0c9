/**
 * The CUDA engine's QEP and GPTAQ arguments, checked in TypeScript before any native call (so these run
 * without a GPU): the layer call's config.qep and config.gptaq, and the session's fp16 path (xf) at creation.
 */
import { checkLayerConfig, CudaSession, CUDA_QEP_UNCORRECTED } from '../../src/native/cuda';
import { QEP_CORRECTED } from '../../src/gptq/settings';

test('config.qep: null, absent or { alpha in [0, 1], linears: names }; down_proj refused by name', () => {
  expect(() => checkLayerConfig({})).not.toThrow();
  expect(() => checkLayerConfig({ qep: null })).not.toThrow();
  expect(() => checkLayerConfig({ qep: { alpha: 0.5, linears: QEP_CORRECTED } })).not.toThrow();
  expect(() => checkLayerConfig({ qep: { alpha: 0, linears: [] } })).not.toThrow();
  expect(() => checkLayerConfig({ qep: { alpha: 1.5, linears: [] } })).toThrow('config.qep.alpha: expected a number in [0, 1], got 1.5');
  expect(() => checkLayerConfig({ qep: { alpha: NaN, linears: [] } })).toThrow('config.qep.alpha: expected a number in [0, 1]');
  expect(() => checkLayerConfig({ qep: { alpha: 0.5, linears: 'self_attn.q_proj' as unknown as string[] } }))
    .toThrow('config.qep.linears: expected an array of names');
  expect(() => checkLayerConfig({ qep: { alpha: 0.5, linears: ['self_attn.q_proj', 'mlp.down_proj'] } }))
    .toThrow("config.qep.linears: expected linears the CUDA engine corrects (not mlp.down_proj), got mlp.down_proj");
  expect(() => checkLayerConfig({ qep: 3 as unknown as null })).toThrow(/^config\.qep: expected/);
  expect(CUDA_QEP_UNCORRECTED).toEqual(['mlp.down_proj']);
});

test('config.gptaq: null, absent or { alpha in [0, 1] }; refused with config.qep', () => {
  expect(() => checkLayerConfig({ gptaq: null })).not.toThrow();
  expect(() => checkLayerConfig({ gptaq: { alpha: 0.25 } })).not.toThrow();
  expect(() => checkLayerConfig({ gptaq: { alpha: 0 } })).not.toThrow();
  expect(() => checkLayerConfig({ gptaq: { alpha: 1.5 } })).toThrow('config.gptaq.alpha: expected a number in [0, 1], got 1.5');
  expect(() => checkLayerConfig({ gptaq: { alpha: NaN } })).toThrow('config.gptaq.alpha: expected a number in [0, 1]');
  expect(() => checkLayerConfig({ gptaq: 3 as unknown as null })).toThrow(/^config\.gptaq: expected/);
  expect(() => checkLayerConfig({ gptaq: { alpha: 0.25 }, qep: { alpha: 0.5, linears: [] } }))
    .toThrow('config.gptaq: expected null with config.qep');
});

test('CudaSession.create: xf must be fp16 bits of the same size as x', async () => {
  const x = new Uint16Array(4 * 8);
  await expect(CudaSession.create(x, 4, 2, 8, new Uint16Array(3))).rejects.toThrow('xf: expected');
  await expect(CudaSession.create(x, 4, 2, 8, new Float32Array(32) as unknown as Uint16Array)).rejects.toThrow('xf: expected');
});
