/**
 * --mse on the CUDA solve through the addon's typed call (src/native/cuda.ts cudaGptqQuantize).
 * Where the addon has no CUDA: the option is no longer refused on the TS side, the call reaches
 * the native module (and fails there for want of CUDA). Where a GPU is visible (test:cuda runs
 * this file): the GPU's mse solve against the CPU engine's on random W/H. The bar is
 * native/kernels/cuda/checks/gptq_check.cu's: both engines search the grids by one rule
 * (gptq_math.h), so the grids computed before the solve (g = −1, static groups) are identical
 * but where the two fp64 pows round differently to fp32 (≥ 99.9 %); the solves differ in
 * summation order only: ≥ 99 % identical codes, losses within 0.5 %.
 */
import { NO_CUDA } from '../../src/native/addon';
import { cudaAvailable, cudaGptqQuantize, cudaInfo, GptqOptions, gptqQuantize, xtx } from '../../src/native';
import { lcg } from '../helpers/lcg';

const base: GptqOptions = {
  bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: true, dampPercent: 0.01, blockSize: 128,
};

(cudaInfo().built ? test.skip : test)('a CPU-only build: cudaGptqQuantize with mse goes to the native call (no mse refusal)', async () => {
  const e = (await cudaGptqQuantize(new Float32Array(4), new Float32Array(4), 2, 2, { ...base, groupSize: -1 }).catch((x: unknown) => x)) as Error;
  expect(e.message).toBe(`${NO_CUDA}: cudaGptqQuantize`);
});

(cudaAvailable() ? describe : describe.skip)('--mse on the GPU against the CPU engine', () => {
  const n = 64, k = 512, t = 1024;
  let w: Float32Array, h: Float32Array;
  beforeAll(async () => {
    const r = lcg(77);
    w = Float32Array.from({ length: n * k }, (_, i) => 0.04 * r() * (i % 53 === 0 ? 8 : 1));
    const x = Float32Array.from({ length: t * k }, lcg(78));
    h = (await xtx(x, t, k, false)).map((v) => (2 * v) / t);
  });

  const cases: [string, Partial<GptqOptions>, boolean][] = [
    ['4-bit g128 act-order', {}, false],
    ['3-bit g-1 asym', { bits: 3, groupSize: -1, actOrder: false, sym: false }, true],
    ['2-bit g64 act-order static groups', { bits: 2, groupSize: 64, staticGroups: true }, true],
  ];
  for (const [label, o, fixed] of cases) {
    test(`${label}: codes, loss and grids as on the CPU engine`, async () => {
      const opts = { ...base, ...o };
      const gpu = await cudaGptqQuantize(w.slice(), h, n, k, opts);
      const cpu = await gptqQuantize(w.slice(), h, n, k, opts);
      const plain = await cudaGptqQuantize(w.slice(), h, n, k, { ...opts, mse: false });
      let codes = 0;
      for (let i = 0; i < gpu.codes.length; i++) if (gpu.codes[i] === cpu.codes[i]) codes++;
      expect(codes / gpu.codes.length).toBeGreaterThanOrEqual(0.99);
      expect(Math.abs(gpu.loss / cpu.loss - 1)).toBeLessThan(5e-3);
      let grids = 0, shrunk = 0;
      for (let i = 0; i < gpu.scales.length; i++) {
        if (gpu.scales[i] === cpu.scales[i] && gpu.zeros[i] === cpu.zeros[i]) grids++;
        if (gpu.scales[i] !== plain.scales[i]) shrunk++;
      }
      if (fixed) expect(grids / gpu.scales.length).toBeGreaterThanOrEqual(0.999);
      expect(shrunk).toBeGreaterThan(0); // the search ran: some grids are not the min/max ones
      expect(Array.from(gpu.gIdx)).toEqual(Array.from(cpu.gIdx));
    });
  }
});
