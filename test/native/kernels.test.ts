/** Optimised native kernels against their simple reference versions. */
import { f16ToF32, gemmNt } from '../../src/native';
import { f32ToF16Bits } from '../../src/io/dtypes';
import { lcg } from '../helpers/lcg';

describe('gemmNt (C = A·Bᵀ)', () => {
  // Edge shapes exercise the 4×4 tile remainders, K not a multiple of the 16-lane vector,
  // and the B-panel blocking (N > panel rows).
  const shapes: [number, number, number][] = [
    [1, 1, 1], [3, 5, 7], [4, 4, 16], [17, 33, 65], [64, 300, 384], [130, 1030, 31],
  ];
  for (const [m, n, k] of shapes) {
    test(`${m}×${n}×${k}: tiled and threaded match the reference`, async () => {
      const rnd = lcg(m * 1000 + n * 10 + k);
      const a = Float32Array.from({ length: m * k }, rnd);
      const b = Float32Array.from({ length: n * k }, rnd);
      const ref = await gemmNt(a, b, m, n, k, 'reference');
      for (const variant of ['tiled', 'parallel'] as const) {
        const c = await gemmNt(a, b, m, n, k, variant);
        // Reference sums in fp64; fp32 sums of k products of |x| < 0.25 drift by
        // ≲ k · 2^-24 · Σ|a·b| ≤ k² · 2^-28; use that bound (+ tiny absolute floor).
        const tol = (k * k) / 2 ** 28 + 1e-6;
        let worst = 0;
        for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(c[i] - ref[i]));
        expect(worst).toBeLessThanOrEqual(tol);
      }
    });
  }

  test('wrong lengths are rejected with name, expected and got', async () => {
    await expect(gemmNt(new Float32Array(5), new Float32Array(6), 2, 3, 3, 'tiled')).rejects.toThrow(
      /A: expected 6 elements, got 5/,
    );
  });
});

describe('f16ToF32', () => {
  test('every fp16 bit pattern converts like the scalar reference', async () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const out = await f16ToF32(bits);
    for (let i = 0; i < 65536; i++) {
      const v = out[i];
      if (Number.isNaN(v)) {
        expect((i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0).toBe(true);
      } else {
        expect(f32ToF16Bits(v)).toBe(i);
      }
    }
  });
});
