import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../../src/errors';
import { calibrationDigest, sampleCalibration } from '../../src/data/calibration';

const shared = path.resolve(__dirname, '../../../shared');
const vectors = JSON.parse(fs.readFileSync(path.join(shared, 'reference/python-random.json'), 'utf8')) as Record<string, number[]>;

/** ids[k] = k + 1000, so a window's first token tells its offset. */
function ramp(n: number): Int32Array {
  const a = new Int32Array(n);
  for (let k = 0; k < n; k++) a[k] = k + 1000;
  return a;
}

describe('sampleCalibration (GPTQ reference sampler)', () => {
  it('draws offsets randint(0, len - seqlen - 1) after random.seed(seed)', () => {
    const seqlen = 4096;
    const ids = ramp(293969 + seqlen + 1);
    const { offsets, tokens } = sampleCalibration(ids, 8, seqlen, 0);
    expect(offsets).toEqual(vectors.seed0_randint_0_293969_first8);
    expect(tokens.length).toBe(8 * seqlen);
    offsets.forEach((o, s) => {
      expect(tokens[s * seqlen]).toBe(o + 1000);
      expect(tokens[s * seqlen + seqlen - 1]).toBe(o + seqlen - 1 + 1000);
    });
  });
  it('matches randint(0, 1000) for seed 0 and randint(0, 1048576) for seed 1234', () => {
    expect(sampleCalibration(ramp(1000 + 16 + 1), 8, 16, 0).offsets).toEqual(vectors.seed0_randint_0_1000_first8);
    expect(sampleCalibration(ramp(1048576 + 2 + 1), 5, 2, 1234).offsets).toEqual(vectors.seed1234_randint_0_1048576_first5);
  });
  it('with len = seqlen + 1 the only window is at offset 0', () => {
    const { offsets, tokens } = sampleCalibration(ramp(5), 3, 4, 0);
    expect(offsets).toEqual([0, 0, 0]);
    expect(Array.from(tokens.subarray(0, 4))).toEqual([1000, 1001, 1002, 1003]);
  });
  it('refuses a text of seqlen tokens or fewer', () => {
    expect(() => sampleCalibration(ramp(4), 1, 4, 0)).toThrow(UserError);
    expect(() => sampleCalibration(ramp(4), 1, 4, 0)).toThrow(/4 tokens.*--seqlen 4/);
  });
  it('validates its arguments', () => {
    expect(() => sampleCalibration(ramp(100), 0, 4, 0)).toThrow(UserError);
    expect(() => sampleCalibration(ramp(100), 1, 0, 0)).toThrow(UserError);
    expect(() => sampleCalibration(ramp(100), 1, 2.5, 0)).toThrow(UserError);
    expect(() => sampleCalibration(ramp(100), 1, 4, 0.5)).toThrow(UserError);
  });
});

describe('calibrationDigest', () => {
  it('is a stable sha256 that depends on offsets, tokens and seqlen', () => {
    const ids = ramp(10000);
    const a = sampleCalibration(ids, 4, 64, 0);
    const d = calibrationDigest(a, 64);
    expect(d).toMatch(/^[0-9a-f]{64}$/);
    expect(calibrationDigest(sampleCalibration(ids, 4, 64, 0), 64)).toBe(d);
    expect(calibrationDigest(sampleCalibration(ids, 4, 64, 1), 64)).not.toBe(d);
    const t = { offsets: a.offsets, tokens: a.tokens.slice() };
    t.tokens[5] += 1;
    expect(calibrationDigest(t, 64)).not.toBe(d);
    const b = sampleCalibration(ids, 8, 32, 0);
    expect(calibrationDigest(b, 32)).not.toBe(d);
    expect(() => calibrationDigest(a, 32)).toThrow();
  });
});
