/** GPTQ kernels: Hessian, the Cholesky route, the solve's edge paths. */
import { gIdxProblem } from '../../src/gptq/format';
import { refGIdx } from '../helpers/gptq-math-ref';
import { gptqQuantize, GptqOptions, upperCholeskyOfInverse, xtx } from '../../src/native';
import { lcg } from '../helpers/lcg';

const base: GptqOptions = {
  bits: 4, groupSize: -1, actOrder: false, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128,
};

/** A random SPD-ish Hessian 2/n XᵀX from T random tokens. */
async function hessian(k: number, t: number, seed: number): Promise<Float32Array> {
  const rnd = lcg(seed);
  const x = Float32Array.from({ length: t * k }, rnd);
  const h = await xtx(x, t, k, false);
  return h.map((v) => (2 * v) / t);
}

describe('xtx (XᵀX)', () => {
  for (const [t, k] of [[1, 1], [7, 5], [600, 130], [1100, 300]]) {
    test(`T=${t} K=${k}: blocked kernel equals the fp64 reference`, async () => {
      const rnd = lcg(t + k);
      const x = Float32Array.from({ length: t * k }, rnd);
      const [fast, ref] = await Promise.all([xtx(x, t, k, false), xtx(x, t, k, true)]);
      // fp32 sums of T products of |x| ≤ 0.5: error ≲ T · 2^-24 · Σ|x_i x_j| ≤ T² · 2^-26.
      const tol = (t * t) / 2 ** 26 + 1e-6;
      let worst = 0;
      for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(fast[i] - ref[i]));
      expect(worst).toBeLessThanOrEqual(tol);
      // symmetric
      for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) expect(fast[i * k + j]).toBe(fast[j * k + i]);
    });
  }
});

describe('upper Cholesky factor of H⁻¹', () => {
  test('one factorisation + triangular inverse equals the reference route, and UᵀU·H = I', async () => {
    const k = 70;
    const h32 = await hessian(k, 400, 3);
    const h = Float64Array.from(h32);
    for (let i = 0; i < k; i++) h[i * k + i] += 0.01;
    const [u, uref] = await Promise.all([upperCholeskyOfInverse(h, k, false), upperCholeskyOfInverse(h, k, true)]);
    expect(u).not.toBeNull();
    let worst = 0;
    for (let i = 0; i < k * k; i++) worst = Math.max(worst, Math.abs(u![i] - uref![i]) / (Math.abs(uref![i]) + 1e-12));
    expect(worst).toBeLessThan(1e-8); // fp64, condition number ≲ 1e4 here
    for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) expect(u![i * k + j]).toBe(0);
    // (UᵀU) H = I
    for (let i = 0; i < k; i += 7) {
      for (let j = 0; j < k; j += 5) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          let hinv = 0;
          for (let q = 0; q <= Math.min(i, p); q++) hinv += u![q * k + i] * u![q * k + p];
          s += hinv * h[p * k + j];
        }
        expect(Math.abs(s - (i === j ? 1 : 0))).toBeLessThan(1e-8);
      }
    }
  });

  test('not positive definite → null', async () => {
    const h = Float64Array.from([1, 2, 2, 1]);
    expect(await upperCholeskyOfInverse(h, 2, false)).toBeNull();
  });
});

describe('gptqQuantize', () => {
  const n = 48, k = 256;
  const rnd = lcg(11);
  const w = Float32Array.from({ length: n * k }, () => rnd() * 0.1);

  test('an indefinite H raises the damping, says so, and still gives finite weights', async () => {
    const h = await hessian(k, 50, 5); // rank 50 < 256: singular
    for (let i = 0; i < k; i++) h[i * k + (k - 1 - i)] += i % 2 ? 0.5 : -0.5; // and indefinite
    const res = await gptqQuantize(w, h, n, k, { ...base, dampPercent: 0.0 });
    expect(res.dampRaises).toBeGreaterThan(0);
    expect(res.dampPercent).toBeGreaterThan(0);
    expect(res.q.every(Number.isFinite)).toBe(true);
  });

  test('NaN in H is an error, not NaN weights', async () => {
    const h = await hessian(k, 300, 6);
    h[5] = NaN;
    await expect(gptqQuantize(w, h, n, k, base)).rejects.toThrow(/NaN or Inf/);
  });

  test('dead columns are zeroed and counted', async () => {
    const h = await hessian(k, 300, 7);
    for (let j = 0; j < k; j++) { h[3 * k + j] = 0; h[j * k + 3] = 0; }
    const res = await gptqQuantize(w, h, n, k, { ...base, actOrder: true, groupSize: 64 });
    expect(res.deadColumns).toBe(1);
    for (let r = 0; r < n; r++) expect(Math.abs(res.q[r * k + 3])).toBe(0); // code = zero exactly
  });

  for (const opts of [
    { bits: 3, groupSize: 32, actOrder: true, staticGroups: true, sym: false },
    { bits: 2, groupSize: 64, actOrder: true, staticGroups: false, sym: false },
    { bits: 8, groupSize: -1, actOrder: false, staticGroups: false, sym: true },
  ]) {
    test(`codes, scales, zeros and g_idx reproduce q (${JSON.stringify(opts)})`, async () => {
      const h = await hessian(k, 400, 9);
      const res = await gptqQuantize(w, h, n, k, { ...base, ...opts });
      const maxq = 2 ** opts.bits - 1;
      const groups = opts.groupSize === -1 ? 1 : k / opts.groupSize;
      const count = new Array(groups).fill(0);
      res.gIdx.forEach((g) => count[g]++);
      expect(count.every((c) => c === k / groups)).toBe(true);
      for (let r = 0; r < n; r++) {
        for (let c = 0; c < k; c++) {
          const g = res.gIdx[c];
          const code = res.codes[r * k + c];
          expect(code).toBeLessThanOrEqual(maxq);
          const deq = res.scales[g * n + r] * (code - res.zeros[g * n + r]);
          expect(Math.abs(deq - res.q[r * k + c])).toBeLessThanOrEqual(2 ** -11 * Math.abs(deq) + 1e-9); // q is fp16
        }
      }
      // g_idx as AutoGPTQ builds it from the permutation (docs/gptq.md, "g_idx"), and the format's rule.
      expect(Array.from(res.gIdx)).toEqual(Array.from(refGIdx(k, opts.groupSize, opts.actOrder ? res.perm : null, opts.staticGroups)));
      expect(gIdxProblem(res.gIdx, k, opts.groupSize, opts.actOrder, opts.staticGroups)).toBeUndefined();
    });
  }

  test('GPTQ error is lower than round-to-nearest on the proxy loss tr((W−Q) H (W−Q)ᵀ)', async () => {
    const h = await hessian(k, 400, 12);
    const proxy = (q: Float32Array) => {
      let s = 0;
      for (let r = 0; r < n; r++) {
        const d = Array.from({ length: k }, (_, c) => w[r * k + c] - q[r * k + c]);
        for (let i = 0; i < k; i++) { let t = 0; for (let j = 0; j < k; j++) t += h[i * k + j] * d[j]; s += d[i] * t; }
      }
      return s;
    };
    const opts = { ...base, bits: 3, groupSize: 128 };
    const [g, rtn] = await Promise.all([gptqQuantize(w, h, n, k, opts), gptqQuantize(w, null, n, k, opts)]);
    expect(proxy(g.q)).toBeLessThan(0.9 * proxy(rtn.q));
  });

  test('the MSE grid search never does worse than min/max on its own metric, and helps on average', async () => {
    // The search includes p = 1 (the min/max grid), so per row and group Σ|q − w|^2.4 can only
    // go down; with outliers in the rows it goes down clearly.
    const heavy = Float32Array.from(w, (v, i) => (i % 97 === 0 ? v * 8 : v));
    for (const opts of [{ ...base, bits: 3, groupSize: 64 }, { ...base, bits: 4, groupSize: -1, sym: false }]) {
      const [plain, mse] = await Promise.all([
        gptqQuantize(heavy, null, n, k, opts), gptqQuantize(heavy, null, n, k, { ...opts, mse: true }),
      ]);
      const g = opts.groupSize === -1 ? k : opts.groupSize;
      let sumPlain = 0, sumMse = 0;
      for (let r = 0; r < n; r++) {
        for (let j = 0; j < k / g; j++) {
          let ep = 0, em = 0;
          for (let c = j * g; c < (j + 1) * g; c++) {
            const x = heavy[r * k + c];
            // q is stored in fp16: compare on the grid values themselves
            const grid = (res: typeof plain) => res.scales[res.gIdx[c] * n + r] * (res.codes[r * k + c] - res.zeros[res.gIdx[c] * n + r]);
            ep += Math.abs(grid(plain) - x) ** 2.4;
            em += Math.abs(grid(mse) - x) ** 2.4;
          }
          expect(em).toBeLessThanOrEqual(ep * (1 + 1e-5)); // fp32 sums in the kernel
          sumPlain += ep;
          sumMse += em;
        }
      }
      expect(sumMse).toBeLessThan(0.9 * sumPlain);
    }
  });

  test('bad options are rejected before the native call', async () => {
    await expect(gptqQuantize(w, null, n, k, { ...base, bits: 5 })).rejects.toThrow(/bits: expected 2, 3, 4 or 8, got 5/);
    await expect(gptqQuantize(w, null, n, k, { ...base, groupSize: 100 })).rejects.toThrow(/groupSize: expected -1 or a divisor of 256, got 100/);
  });
});
