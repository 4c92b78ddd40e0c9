import * as fs from 'fs';
import * as path from 'path';
import { PythonRandom } from '../../src/data/python-random';

const shared = path.resolve(__dirname, '../../../shared');
const vectors = JSON.parse(fs.readFileSync(path.join(shared, 'reference/python-random.json'), 'utf8')) as Record<
  string,
  unknown
>;

function draw(seed: number, n: number, f: (r: PythonRandom) => number): number[] {
  const r = new PythonRandom(seed);
  return Array.from({ length: n }, () => f(r));
}

describe('PythonRandom against shared/reference/python-random.json', () => {
  it('covers every vector of the file', () => {
    expect(Object.keys(vectors).sort()).toEqual(
      [
        'what',
        'seed0_getrandbits32_first5',
        'seed0_randint_0_1000_first8',
        'seed0_randint_0_293969_first8',
        'seed1234_randint_0_1048576_first5',
      ].sort(),
    );
  });
  it('seed 0, getrandbits(32)', () => {
    expect(draw(0, 5, (r) => r.getrandbits(32))).toEqual(vectors.seed0_getrandbits32_first5);
  });
  it('seed 0, randint(0, 1000)', () => {
    expect(draw(0, 8, (r) => r.randint(0, 1000))).toEqual(vectors.seed0_randint_0_1000_first8);
  });
  it('seed 0, randint(0, 293969)', () => {
    expect(draw(0, 8, (r) => r.randint(0, 293969))).toEqual(vectors.seed0_randint_0_293969_first8);
  });
  it('seed 1234, randint(0, 1048576) (a power of two + 1: 21-bit draws with rejection)', () => {
    expect(draw(1234, 5, (r) => r.randint(0, 1048576))).toEqual(vectors.seed1234_randint_0_1048576_first5);
  });
});

// Produced with CPython 3.11.7 (`random.Random(seed)`), see the report of the change.
describe('PythonRandom against further CPython 3.11 vectors', () => {
  it('random()', () => {
    expect(draw(0, 3, (r) => r.random())).toEqual([0.8444218515250481, 0.7579544029403025, 0.420571580830845]);
  });
  it('getrandbits(k) for k in 1..200, in sequence', () => {
    const r = new PythonRandom(0);
    const got = [1, 7, 31, 32, 33, 53, 64, 65, 100, 200].map((k) => r.getrandbitsBig(k).toString());
    expect(got).toEqual([
      '1',
      '49',
      '1627694678',
      '3823568514',
      '1806341205',
      '8696133065399866',
      '8963783824838420066',
      '35385177767462683512',
      '631274152732079063015764344160',
      '222866531502970745238502861343619926975410375119812094926767',
    ]);
    const s = new PythonRandom(0);
    expect([1, 7, 31, 32, 33, 53].map((k) => s.getrandbits(k))).toEqual([1, 49, 1627694678, 3823568514, 1806341205, 8696133065399866]);
    expect(s.getrandbitsBig(0)).toBe(0n);
    expect(s.getrandbits(0)).toBe(0);
    expect(() => s.getrandbits(54)).toThrow(RangeError);
    expect(() => s.getrandbits(-1)).toThrow(RangeError);
  });
  it('seeds: negative = absolute value, multi-word, bigint', () => {
    const a = [2675342405, 1097127993, 3185950873];
    expect(draw(5, 3, (r) => r.getrandbits(32))).toEqual(a);
    expect(draw(-5, 3, (r) => r.getrandbits(32))).toEqual(a);
    expect(draw(2 ** 32 + 7, 3, (r) => r.getrandbits(32))).toEqual([968553300, 3287823873, 1540179448]);
    const big = new PythonRandom(2n ** 100n + 12345678901234567n);
    expect([0, 1, 2].map(() => big.getrandbits(32))).toEqual([2659173812, 1900203628, 2228311648]);
    const r = new PythonRandom(99);
    r.seed(0n);
    expect(r.getrandbits(32)).toBe((vectors.seed0_getrandbits32_first5 as number[])[0]);
    expect(() => new PythonRandom(0.5)).toThrow(RangeError);
  });
  it('randint over wide ranges (33, 41 and 71 bits)', () => {
    expect(draw(42, 4, (r) => r.randint(0, 2 ** 32))).toEqual([2746317213, 1181241943, 958682846, 3163119785]);
    expect(draw(42, 4, (r) => r.randint(-3, 2 ** 40))).toEqual([247559453082, 538052153940, 305901360859, 226501419174]);
    const r = new PythonRandom(42);
    expect([0, 1, 2].map(() => r.randintBig(0n, 2n ** 70n).toString())).toEqual([
      '57393928075486525853',
      '576922461802029531387',
      '212974421763009405264',
    ]);
  });
  it('mixed calls share one stream; state after 1000 draws', () => {
    const r = new PythonRandom(7);
    const got = [0, 1, 2, 3, 4].map(() => r.randint(1, 6));
    expect(got).toEqual([3, 2, 4, 6, 1]);
    expect(r.random()).toBe(0.07243628666754276);
    expect(r.randint(0, 2 ** 31 - 1)).toBe(404285457);
    const s = new PythonRandom(0);
    for (let i = 0; i < 1000; i++) s.nextUint32();
    expect(s.getrandbits(32)).toBe(126175447);
  });
  it('rejects empty ranges', () => {
    const r = new PythonRandom(0);
    expect(() => r.randint(5, 4)).toThrow(RangeError);
    expect(() => r.randbelow(0)).toThrow(RangeError);
  });
});
