/**
 * The host side of the shared GPTQ rules (native/kernels/common/gptq_math.h: find_params, the
 * code of a value, the mse search, the damping retry, act-order, g_idx, the option checks), seen
 * through the CPU engine, against the independent reference test/helpers/gptq-math-ref.ts.
 */
import * as path from 'node:path';
import { gIdxProblem } from '../../src/gptq/format';
import { BLOCK_SIZE, comboProblem, settingProblem, solverOptions } from '../../src/gptq/settings';
import { checkGptqOptions, gptqQuantize, GptqOptions } from '../../src/native';
import {
  refActOrderPerm, refCode, refDampSequence, refFindParams, refGIdx, refMseCandidates, refMseError,
} from '../helpers/gptq-math-ref';
import { lcg } from '../helpers/lcg';

const f = Math.fround;
const base: GptqOptions = {
  bits: 4, groupSize: -1, actOrder: false, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, blockSize: 128,
};

/** Round-to-nearest (H = null) is find_params + quantize per group: every grid and code against the reference. */
async function rtnAgainstReference(w: Float32Array, n: number, k: number, o: GptqOptions) {
  const res = await gptqQuantize(w, null, n, k, o);
  const maxq = 2 ** o.bits - 1, g = o.groupSize === -1 ? k : o.groupSize;
  const want = { scales: [] as number[], zeros: [] as number[], codes: [] as number[] };
  const got = { scales: [] as number[], zeros: [] as number[], codes: [] as number[] };
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < k / g; j++) {
      const slice = w.subarray(r * k + j * g, r * k + (j + 1) * g);
      const grid = refFindParams(slice, maxq, o.sym);
      want.scales.push(grid.scale); want.zeros.push(grid.zero);
      got.scales.push(res.scales[j * n + r]); got.zeros.push(res.zeros[j * n + r]);
      for (let c = j * g; c < (j + 1) * g; c++) {
        want.codes.push(refCode(w[r * k + c], grid, maxq));
        got.codes.push(res.codes[r * k + c]);
      }
    }
  }
  expect(got).toEqual(want);
  return res;
}

describe('find_params and quantize (gf::find_params, gf::quant_code)', () => {
  const k = 32, g = 8;
  // Group 0 of each row is an edge case; the other groups are random.
  const edges = [
    [0, 0, 0, 0, 0, 0, 0, 0],                        // all zero: the range becomes [−1, 1]
    [-3, 1, 0.5, -0.25, 0, 0.75, -1, 0.125],          // sym with a negative minimum: [−3, 3]
    [0.5, 1, 1.5, 2, 2.5, 3, 0.25, 0],                // sym, all ≥ 0: xmin stays 0, codes clip at maxq
    [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 7.5, -7.5],     // 4-bit sym: scale 1, ties round to even
  ];
  const rnd = lcg(3);
  const w = new Float32Array(edges.length * k);
  edges.forEach((e, r) => {
    for (let c = 0; c < k; c++) w[r * k + c] = c < g ? e[c] : rnd() * (1 + r);
  });
  const n = edges.length;

  for (const bits of [2, 3, 4, 8]) {
    for (const sym of [true, false]) {
      test(`${bits}-bit ${sym ? 'sym' : 'asym'}: grids and codes equal the reference`, async () => {
        await rtnAgainstReference(w, n, k, { ...base, bits, sym, groupSize: g });
        await rtnAgainstReference(w, n, k, { ...base, bits, sym, groupSize: -1 });
      });
    }
  }

  test('the edge cases, by hand (4-bit sym)', async () => {
    const res = await gptqQuantize(w, null, n, k, { ...base, groupSize: g });
    const scale = (r: number) => res.scales[0 * n + r];
    const codes = (r: number) => Array.from(res.codes.subarray(r * k, r * k + g));
    expect([scale(0), res.zeros[0]]).toEqual([f(2 / 15), 8]);
    expect(codes(0)).toEqual(new Array(8).fill(8));
    expect(scale(1)).toBe(f(6 / 15));
    expect(scale(2)).toBe(f(3 / 15));
    expect(codes(2)).toEqual([10, 13, 15, 15, 15, 15, 9, 8]);
    expect(scale(3)).toBe(1);
    expect(codes(3)).toEqual([8, 10, 10, 8, 6, 6, 15, 0]);
  });

  test('asym zero of an all-zero group: round(−(−1) / (2 / maxq)) for every width', async () => {
    for (const bits of [2, 3, 4, 8]) {
      const maxq = 2 ** bits - 1;
      const res = await gptqQuantize(new Float32Array(k), null, 1, k, { ...base, bits, sym: false });
      expect([res.scales[0], res.zeros[0]]).toEqual([f(2 / maxq), refFindParams([0], maxq, false).zero]);
    }
  });

  test('mse: the grid is the best of the shrunk candidates', async () => {
    const rows = 24, kk = 64, r = lcg(9);
    const wm = Float32Array.from({ length: rows * kk }, (_, i) => r() * (i % 7 === 0 ? 4 : 1));
    let shrunk = 0;
    for (const bits of [3, 4]) {
      for (const sym of [true, false]) {
        const maxq = 2 ** bits - 1;
        const res = await gptqQuantize(wm, null, rows, kk, { ...base, bits, sym, mse: true, groupSize: 32 });
        for (let row = 0; row < rows; row++) {
          for (let j = 0; j < 2; j++) {
            const x = wm.subarray(row * kk + j * 32, row * kk + (j + 1) * 32);
            // The host may fuse p·xmax − p·xmin (FMA contraction): either rounding is the rule.
            const plain = refMseCandidates(x, maxq, sym), fused = refMseCandidates(x, maxq, sym, true);
            const cands = [...plain, ...fused];
            const got = { scale: res.scales[j * rows + row], zero: res.zeros[j * rows + row] };
            const at = cands.findIndex((c) => c.scale === got.scale && c.zero === got.zero) % 80;
            expect(at).toBeGreaterThanOrEqual(0);
            const best = Math.min(...cands.map((c) => refMseError(x, c, maxq)));
            expect(refMseError(x, got, maxq)).toBeLessThanOrEqual(best * (1 + 1e-5));
            if (at > 0) shrunk++;
          }
        }
      }
    }
    expect(shrunk).toBeGreaterThan(0);
  });
});

describe('damping and its retry (gf::damp_until_pd)', () => {
  // H = [[1, b], [b, 1]] is positive definite once 1 + damp · mean(diag H) > b (mean = 1).
  async function solve2(b: number, dampPercent: number) {
    const h = Float32Array.from([1, b, b, 1]);
    return gptqQuantize(Float32Array.from([0.3, -0.2, 0.1, 0.4]), h, 2, 2, { ...base, dampPercent });
  }
  function expected(b: number, dampPercent: number): { dampPercent: number; dampRaises: number } {
    const seq = refDampSequence(dampPercent);
    const i = seq.findIndex((d) => 1 + d * 1 > f(b));
    return { dampPercent: seq[i], dampRaises: i };
  }

  for (const [b, damp] of [[0.5, 0.01], [1.3, 0.01], [1.3, 0], [1.001, 0.001], [5, 0.05]] as const) {
    test(`b = ${b}, damp ${damp}: the reference's sequence`, async () => {
      const res = await solve2(b, damp);
      expect({ dampPercent: res.dampPercent, dampRaises: res.dampRaises }).toEqual(expected(b, damp));
    });
  }

  test('1.3 from 1 %: five doublings, 0.32; from 0: 0.01 first', async () => {
    expect((await solve2(1.3, 0.01)).dampRaises).toBe(5);
    expect((await solve2(1.3, 0)).dampRaises).toBe(6);
    expect(refDampSequence(0).slice(0, 3)).toEqual([0, f(0.01), f(0.02)]);
  });

  test('still not positive definite after 10 raises → an error naming the last damping', async () => {
    const last = refDampSequence(0.01)[10];
    expect(last).toBeCloseTo(10.24, 5);
    await expect(solve2(12, 0.01)).rejects.toThrow(/not positive definite even with damp_percent 10\.24/);
  });
});

describe('act-order and g_idx (gf::act_order_perm, gf::g_idx_of)', () => {
  const k = 64, n = 8;
  // A diagonal H with ties and one dead column (diag 0 → 1, which ties it with the 1s).
  const diag = Array.from({ length: k }, (_, i) => ((i * 7) % 5) + 1);
  diag[5] = 0;
  const h = new Float32Array(k * k);
  diag.forEach((d, i) => (h[i * k + i] = d));
  const w = Float32Array.from({ length: n * k }, lcg(4));
  const perm = refActOrderPerm(diag.map((d) => (d === 0 ? 1 : d)));

  for (const groupSize of [16, -1]) {
    for (const staticGroups of groupSize === -1 ? [false] : [false, true]) {
      test(`g ${groupSize}${staticGroups ? ', static groups' : ''}`, async () => {
        const res = await gptqQuantize(w, h, n, k, { ...base, actOrder: true, groupSize, staticGroups });
        expect(Array.from(res.perm)).toEqual(Array.from(perm));
        expect(Array.from(res.gIdx)).toEqual(Array.from(refGIdx(k, groupSize, perm, staticGroups)));
        expect(gIdxProblem(res.gIdx, k, groupSize, true, staticGroups)).toBeUndefined();
        const plain = await gptqQuantize(w, h, n, k, { ...base, actOrder: false, groupSize, staticGroups });
        expect(Array.from(plain.perm)).toEqual(Array.from({ length: k }, (_, i) => i));
        expect(Array.from(plain.gIdx)).toEqual(Array.from(refGIdx(k, groupSize, null, staticGroups)));
      });
    }
  }
});

describe('option checks: gf::gptq_options_problem and src/native checkGptqOptions state the same rules', () => {
  interface RawAddon {
    gptqQuantize(w: Float32Array, h: Float32Array | null, n: number, k: number, o: GptqOptions): Promise<unknown>;
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const addon = require(path.resolve(__dirname, '../../build/Release/gptq_forge.node')) as RawAddon;
  const k = 32, n = 2;
  const w = Float32Array.from({ length: n * k }, lcg(5));
  const h = new Float32Array(k * k);
  for (let i = 0; i < k; i++) h[i * k + i] = 1;

  const cases: Partial<GptqOptions>[] = [
    {}, { bits: 2 }, { bits: 3 }, { bits: 8 }, { bits: 0 }, { bits: 1 }, { bits: 5 }, { bits: 16 },
    { groupSize: 8 }, { groupSize: 32 }, { groupSize: 0 }, { groupSize: -2 }, { groupSize: 7 }, { groupSize: 64 },
    { dampPercent: 0 }, { dampPercent: 0.5 }, { dampPercent: 3 }, { dampPercent: -0.01 }, { dampPercent: NaN },
    { dampPercent: Infinity }, { blockSize: 1 }, { blockSize: 7 }, { blockSize: 0 },
  ];
  for (const c of cases) {
    test(JSON.stringify(c), async () => {
      const o = { ...base, ...c };
      let ts: boolean;
      try { checkGptqOptions(o, k); ts = true; } catch { ts = false; }
      for (const hh of [null, h]) {
        let native: boolean;
        try { await (async () => addon.gptqQuantize(w, hh, n, k, o))(); native = true; } catch { native = false; }
        expect({ native }).toEqual({ native: ts });
      }
    });
  }

  test('every branch setting the CLI accepts is accepted by both checks', async () => {
    for (const bits of [2, 3, 4, 8]) {
      for (const groupSize of [-1, 8, 16, 32]) {
        for (const dampPercent of [0.001, 0.01, 0.1, 0.99]) {
          for (const [actOrder, staticGroups] of [[false, false], [true, false], [true, true]]) {
            const s = { bits, groupSize, dampPercent, actOrder, staticGroups, sym: true, mse: false, trueSequential: true };
            expect([settingProblem('bits', bits), settingProblem('groupSize', groupSize), settingProblem('damp', dampPercent)]).toEqual([undefined, undefined, undefined]);
            if (comboProblem(s) !== undefined) continue;
            const o = solverOptions(s);
            expect(o.blockSize).toBe(BLOCK_SIZE);
            expect(() => checkGptqOptions(o, k)).not.toThrow();
            await expect(addon.gptqQuantize(w, null, n, k, o)).resolves.toBeDefined();
          }
        }
      }
    }
  });
});
