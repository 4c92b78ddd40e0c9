import { UserError } from '../../src/errors';
import { evalWindows, perplexityFromWindowNll } from '../../src/data/windows';

function ramp(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, k) => k);
}

describe('evalWindows', () => {
  it('cuts floor(n / seqlen) non-overlapping windows from the start', () => {
    const w = evalWindows(ramp(10), 3);
    expect(w.count).toBe(3);
    expect(w.seqlen).toBe(3);
    expect(Array.from(w.tokens)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
  });
  it('matches the protocol on wiki.test.raw sizes (335,688 ids with BOS)', () => {
    expect(evalWindows(new Int32Array(335688), 4096).count).toBe(81);
    expect(evalWindows(new Int32Array(335688), 2048).count).toBe(163);
    expect(evalWindows(new Int32Array(335688), 512).count).toBe(655);
  });
  it('exact multiple and single window', () => {
    expect(evalWindows(ramp(12), 4).count).toBe(3);
    expect(evalWindows(ramp(4), 4).count).toBe(1);
  });
  it('caps the count with maxWindows', () => {
    const w = evalWindows(ramp(10), 3, 2);
    expect(w.count).toBe(2);
    expect(Array.from(w.tokens)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(evalWindows(ramp(10), 3, 50).count).toBe(3);
  });
  it('refuses a seqlen larger than the text', () => {
    expect(() => evalWindows(ramp(3), 4)).toThrow(UserError);
    expect(() => evalWindows(ramp(3), 4)).toThrow('--seqlen 4 is larger than the text (3 tokens)');
  });
  it('validates seqlen and maxWindows', () => {
    for (const bad of [0, -1, 2.5, NaN, Infinity]) expect(() => evalWindows(ramp(10), bad)).toThrow(UserError);
    expect(() => evalWindows(ramp(10), 3, 0)).toThrow(UserError);
    expect(() => evalWindows(ramp(10), 3, 1.5)).toThrow(UserError);
  });
});

describe('perplexityFromWindowNll', () => {
  it('is exp of the mean of the window means', () => {
    expect(perplexityFromWindowNll([Math.log(10)])).toBeCloseTo(10, 12);
    expect(perplexityFromWindowNll([1, 2, 3])).toBeCloseTo(Math.exp(2), 12);
  });
  it('equals the README formula exp(sum_w mean_w * seqlen / (windows * seqlen))', () => {
    const means = [6.9, 7.1, 7.05, 6.8];
    const seqlen = 4096;
    const readme = Math.exp(means.reduce((s, m) => s + m * seqlen, 0) / (means.length * seqlen));
    expect(perplexityFromWindowNll(means)).toBeCloseTo(readme, 9);
  });
  it('needs at least one window', () => {
    expect(() => perplexityFromWindowNll([])).toThrow();
  });
});
