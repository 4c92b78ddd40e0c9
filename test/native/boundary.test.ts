/**
 * The native boundary: the addon's exports against the one typed surface (src/native/addon.ts),
 * its enum tables against the TypeScript ones, raw addon calls with wrong arguments (a TypeError
 * or RangeError naming the argument, never a crash), the TS wrappers rejecting before any native
 * call, and native errors carrying the JS stack of the call.
 */
import {
  ADDON_FILE, ADDON_MEMBERS, callNative, NATIVE_ENUMS, nativeCallAt, NO_CUDA,
} from '../../src/native/addon';
import {
  countNonFinite, cudaGptqQuantize, cudaInfo, dequantizeGptq, embed, f32ArrayToF16, gemmNt, gptqQuantize, packGptq,
  peakFlops, upperCholeskyOfInverse, WEIGHT_PARTS, xtx,
} from '../../src/native';
import { EVAL_LINEARS } from '../../src/native/cuda-eval';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const raw = require(ADDON_FILE) as Record<string, unknown>;
const cudaBuilt = raw.cudaBuilt === true;
type AnyFn = (...args: unknown[]) => unknown;

/** What a call does synchronously: the error it throws ({ name, message }), or 'returned'. */
function thrown(f: () => unknown): { name: string; message: string } | 'returned' {
  try {
    const r = f() as { catch?: (h: () => void) => void } | undefined;
    r?.catch?.(() => undefined); // a job that did start must not reject unhandled
    return 'returned';
  } catch (e) {
    return { name: (e as Error).name, message: (e as Error).message };
  }
}

describe('the addon surface', () => {
  test('every key the binary exports is typed, and every always-present member is there', () => {
    const exported = Object.keys(raw).sort();
    const typed = Object.keys(ADDON_MEMBERS);
    expect(exported.filter((k) => !typed.includes(k))).toEqual([]);
    const always = typed.filter((k) => ADDON_MEMBERS[k as keyof typeof ADDON_MEMBERS] === 'always');
    expect(always.filter((k) => !(k in raw))).toEqual([]);
    const cuda = typed.filter((k) => ADDON_MEMBERS[k as keyof typeof ADDON_MEMBERS] === 'cuda');
    // A CUDA build has all of its members, a CPU-only build none.
    expect(cuda.filter((k) => k in raw)).toEqual(cudaBuilt ? cuda : []);
  });

  test('the enum tables the addon parses names with are the TypeScript ones, in order', () => {
    const enums = raw.enums as Record<string, string[]>;
    const cpu = ['dtype', 'gemmVariant', 'packVariant'];
    const cudaOnly = Object.keys(NATIVE_ENUMS).filter((k) => !cpu.includes(k));
    expect(Object.keys(enums).sort()).toEqual((cudaBuilt ? [...cpu, ...cudaOnly] : cpu).sort());
    for (const [key, names] of Object.entries(enums)) {
      expect([key, names]).toEqual([key, [...NATIVE_ENUMS[key as keyof typeof NATIVE_ENUMS]]]);
    }
    expect(WEIGHT_PARTS).toBe(NATIVE_ENUMS.weightPart);
    expect(EVAL_LINEARS).toBe(NATIVE_ENUMS.evalLinear);
  });
});

describe('raw addon calls with wrong arguments', () => {
  const fns = Object.keys(raw).filter((k) => typeof raw[k] === 'function').sort();
  const call = (name: string, ...args: unknown[]) => thrown(() => (raw[name] as AnyFn)(...args));

  test('every function checks its argument count and the type of every argument', () => {
    let checked = 0;
    for (const name of fns) {
      const none = call(name);
      if (none === 'returned') continue; // takes no arguments (cudaInfo)
      expect([name, none.name]).toEqual([name, 'TypeError']);
      const m = new RegExp(`^${name}: expected (\\d+)(?: to (\\d+))? arguments, got 0$`).exec(none.message);
      expect([name, none.message, m !== null]).toEqual([name, none.message, true]);
      const n = Number(m![2] ?? m![1]);
      expect(call(name, ...new Array(n + 1).fill(0))).toMatchObject({ name: 'TypeError', message: expect.stringContaining('arguments, got') });
      // Every argument of a wrong kind: each call fails on one, by name, as a TypeError or RangeError.
      for (const junk of [undefined, null, 'x', {}, [], -1, -0.5, NaN, new Float64Array(3)]) {
        const r = call(name, ...new Array(n).fill(junk));
        expect([name, junk, r === 'returned']).toEqual([name, junk, false]);
        if (r === 'returned') continue;
        expect([name, junk, r.name]).toEqual([name, junk, expect.stringMatching(/^(TypeError|RangeError)$/)]);
        expect([name, junk, r.message]).toEqual([name, junk, expect.stringMatching(/^[\w.[\] ×()]+: expected .+, got /)]);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(9 * 16);
  });

  test('wrong types, values and sizes name the argument', () => {
    const f = (n: number) => new Float32Array(n);
    const opts = { bits: 4, groupSize: -1, actOrder: false, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };
    const cases: [string, unknown[], string, string][] = [
      ['gemmNt', [f(6), f(6), 2, 3, -3, 'tiled'], 'RangeError', 'K: expected an integer ≥ 0, got -3'],
      ['gemmNt', [f(6), f(6), 2, 3, 1.5, 'tiled'], 'RangeError', 'K: expected an integer ≥ 0, got 1.5'],
      ['gemmNt', [f(6), f(6), 2, 3, 3, 1], 'TypeError', 'variant: expected reference, tiled or parallel, got 1'],
      ['gemmNt', [f(6), f(6), 2, 3, 3, 'fast'], 'RangeError', "variant: expected reference, tiled or parallel, got 'fast'"],
      ['gemmNt', [new Float64Array(6), f(9), 2, 3, 3, 'tiled'], 'TypeError', 'A: expected a Float32Array, got a Float64Array of 6 elements'],
      ['gemmNt', [f(6), f(8), 2, 3, 3, 'tiled'], 'RangeError', 'B: expected 9 elements, got 8'],
      // products that overflow int64 (or pass 2^53) never skip the length check
      ['gemmNt', [f(6), f(6), 2 ** 40, 2 ** 40, 2 ** 40, 'tiled'], 'RangeError', 'A: expected a size below 2^53, got 1099511627776 × 1099511627776'],
      ['xtx', [f(6), 2 ** 53, 2, false], 'RangeError', 'T: expected an integer ≥ 0, got 9007199254740992'],
      ['xtx', [f(6), 2, 3, 1], 'TypeError', 'reference: expected a boolean, got 1'],
      ['upperCholeskyOfInverse', [new Float64Array(4), 2 ** 26, true], 'RangeError', 'H: expected 4503599627370496 elements, got 4'],
      ['upperCholeskyOfInverse', [new Float64Array(4), 2 ** 30, true], 'RangeError', 'H: expected a size below 2^53, got 1073741824 × 1073741824'],
      ['nonFinite', [f(3), 2], 'TypeError', 'dtype: expected F16, BF16 or F32, got 2'],
      ['nonFinite', [f(3), 'F64'], 'RangeError', "dtype: expected F16, BF16 or F32, got 'F64'"],
      ['nonFinite', [new Uint16Array(3), 'F32'], 'TypeError', 'src: expected a Float32Array, got a Uint16Array of 3 elements'],
      ['f32ToF16', [f(3), new Uint16Array(2)], 'RangeError', 'dst: expected 3 elements, got 2'],
      ['embed', [new Int32Array(4), f(8), 0, [f(8)]], 'RangeError', 'vocab: expected an integer ≥ 1, got 0'],
      ['embed', [new Int32Array(4), f(8), 2, f(8)], 'TypeError', 'windows: expected an array, got a Float32Array of 8 elements'],
      ['peakFlops', ['1'], 'TypeError', "seconds: expected a number, got '1'"],
      ['peakFlops', [Infinity], 'RangeError', 'seconds: expected a finite number, got Infinity'],
      ['gptqQuantize', [f(4), null, 2, 2, { ...opts, groupSize: 3 }], 'RangeError', 'options.groupSize: expected -1 or a divisor of K (2), got 3'],
      ['gptqQuantize', [f(4), null, 2, 2, { ...opts, sym: 1 }], 'TypeError', 'options.sym: expected a boolean, got 1'],
      ['gptqQuantize', [f(4), null, 2, 2, { ...opts, bits: 5 }], 'RangeError', 'options.bits: expected 2, 3, 4 or 8, got 5'],
      ['gptqQuantize', [f(4), null, 2, 2, null], 'TypeError', 'options: expected an object, got null'],
      ['packGptq', [new Uint8Array(1024), new Int32Array(32), 4, 32, 32, 0], 'TypeError', 'variant: expected reference or optimised, got 0'],
      ['packGptq', [new Uint8Array(1024), new Int32Array(32), 4, -32, 32, 'reference'], 'RangeError', 'K: expected an integer ≥ 1, got -32'],
      ['decoderLayer', [[], {}, { hidden: 4, ffn: 8, heads: 3, kvHeads: 2, headDim: 4, eps: 1e-5, ropeTheta: 1e4, round16: false }, 2],
        'RangeError', 'dims.heads: expected a multiple of kvHeads (2), got 3'],
      ['decoderLayer', [[], {}, { hidden: 4, ffn: 8, heads: 1, kvHeads: 1, headDim: 4, eps: 1e-5, ropeTheta: 1e4, round16: 0 }, 2],
        'TypeError', 'dims.round16: expected a boolean, got 0'],
    ];
    for (const [name, args, type, message] of cases) {
      expect([name, call(name, ...args)]).toEqual([name, { name: type, message }]);
    }
  });

  test('an error inside the job rejects the promise (the process goes on)', async () => {
    const p = (raw.embed as AnyFn)(new Int32Array([0, 5]), new Float32Array(8), 4, [new Float32Array(4)]) as Promise<void>;
    await expect(p).rejects.toThrow('token id 5 is outside the vocabulary (4)');
  });
});

describe('the TypeScript wrappers reject before the native call', () => {
  const spied = ['gemmNt', 'nonFinite', 'f32ToF16', 'embed', 'xtx', 'upperCholeskyOfInverse', 'gptqQuantize', 'packGptq',
    'dequantizeGptq', 'peakFlops'] as const;
  let spies: Record<string, jest.SpyInstance>;
  beforeEach(() => {
    spies = Object.fromEntries(spied.map((k) => [k, jest.spyOn(raw as Record<string, AnyFn>, k)]));
  });
  afterEach(() => jest.restoreAllMocks());

  const opts = { bits: 4, groupSize: -1, actOrder: false, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };
  const bad: [string, string, () => Promise<unknown>][] = [
    ['gemmNt', 'variant: expected reference, tiled or parallel, got fast', () => gemmNt(new Float32Array(1), new Float32Array(1), 1, 1, 1, 'fast' as 'tiled')],
    ['gemmNt', 'K: expected an integer ≥ 0, got -1', () => gemmNt(new Float32Array(1), new Float32Array(1), 1, 1, -1, 'tiled')],
    ['gemmNt', 'A: expected a Float32Array, got a Float64Array', () => gemmNt(new Float64Array(1) as unknown as Float32Array, new Float32Array(1), 1, 1, 1, 'tiled')],
    ['nonFinite', 'dtype: expected F16, BF16 or F32, got F64', () => countNonFinite(new Float32Array(1), 'F64' as 'F32')],
    ['nonFinite', 'src (F16): expected a Uint16Array, got a Float32Array', () => countNonFinite(new Float32Array(1), 'F16')],
    ['f32ToF16', 'src: expected a Float32Array, got an array of 2 elements', () => f32ArrayToF16([1, 2] as unknown as Float32Array)],
    ['embed', 'vocab: expected an integer ≥ 1, got 0', () => embed(new Int32Array(2), new Float32Array(4), 0, [new Float32Array(4)])],
    ['xtx', 'reference: expected a boolean, got 1', () => xtx(new Float32Array(4), 2, 2, 1 as unknown as boolean)],
    ['upperCholeskyOfInverse', 'H: expected a Float64Array, got a Float32Array', () => upperCholeskyOfInverse(new Float32Array(4) as unknown as Float64Array, 2, true)],
    ['gptqQuantize', 'sym: expected a boolean, got yes', () => gptqQuantize(new Float32Array(4), null, 2, 2, { ...opts, sym: 'yes' as unknown as boolean })],
    ['gptqQuantize', 'N: expected an integer ≥ 1, got 0.5', () => gptqQuantize(new Float32Array(4), null, 0.5, 2, opts)],
    ['packGptq', 'variant: expected reference or optimised, got 1', () => packGptq(new Uint8Array(1024), new Int32Array(32), 4, 32, 32, 1 as unknown as 'reference')],
    ['dequantizeGptq', 'round16: expected a boolean, got 1', () => dequantizeGptq(new Int32Array(128), new Int32Array(4), new Uint16Array(32), new Int32Array(32), 4, 32, 32, { round16: 1 as unknown as boolean })],
    ['peakFlops', 'seconds: expected a number, got 1', () => peakFlops('1' as unknown as number)],
  ];
  for (const [fn, message, run] of bad) {
    test(`${fn}: ${message}`, async () => {
      await expect(run()).rejects.toThrow(message);
      expect(spies[fn]).not.toHaveBeenCalled();
    });
  }

  test('a good call does reach the addon (the spies see it)', async () => {
    await gemmNt(new Float32Array([2]), new Float32Array([3]), 1, 1, 1, 'reference');
    expect(spies.gemmNt).toHaveBeenCalledTimes(1);
    expect(spies.gemmNt.mock.calls[0][5]).toBe('reference'); // the enum crosses by name
  });
});

describe('native errors carry the JS stack of the call', () => {
  async function provokeNativeJobError(): Promise<void> {
    // token id 5 of a 4-word vocabulary: only the native job sees it
    await embed(new Int32Array([0, 5]), new Float32Array(8), 4, [new Float32Array(4)]);
  }
  function provokeNativeArgumentError(): unknown {
    // an argument only the C++ side checks (a raw call through the one call path)
    return callNative('gemmNt', new Float32Array(1), new Float32Array(1), 1, 1, -1, 'tiled');
  }
  function askForJobHere(): () => Promise<void> {
    const later = nativeCallAt('embed');
    return () => later(new Int32Array([7]), new Float32Array(4), 4, [new Float32Array(1)]);
  }

  test('a rejected job: message kept, the calling function in the stack', async () => {
    const e = (await provokeNativeJobError().catch((x: unknown) => x)) as Error;
    expect(e.message).toBe('token id 5 is outside the vocabulary (4)');
    const lines = e.stack!.split('\n');
    expect(lines[0]).toBe('Error: token id 5 is outside the vocabulary (4)');
    expect(lines[1]).toBe('    at <native embed> (gptq_forge.node)');
    expect(e.stack).toMatch(/at (async )?embed \(.*src\/native\/index\.ts/);
    expect(e.stack).toMatch(/at (async )?provokeNativeJobError \(.*boundary\.test\.ts/);
  });

  test('a synchronous throw: the calling function in the stack', () => {
    let e: Error | undefined;
    try {
      provokeNativeArgumentError();
    } catch (x) {
      e = x as Error;
    }
    expect(e?.name).toBe('RangeError');
    expect(e?.message).toBe('K: expected an integer ≥ 0, got -1');
    expect(e?.stack).toContain('<native gemmNt>');
    expect(e?.stack).toMatch(/at provokeNativeArgumentError \(.*boundary\.test\.ts/);
  });

  test('a call made later (a queued job) shows where it was asked for', async () => {
    const job = askForJobHere();
    const e = (await new Promise((resolve) => setTimeout(resolve, 1)).then(job).catch((x: unknown) => x)) as Error;
    expect(e.message).toBe('token id 7 is outside the vocabulary (4)');
    expect(e.stack).toMatch(/at askForJobHere \(.*boundary\.test\.ts/);
  });

  test('GPTQ_FORGE_DEBUG=1 prints those frames (the CLI describeError of dist/, in a process of its own)', () => {
    // A process of its own: in jest's realm an addon error is not `instanceof Error`.
    const dist = path.resolve(__dirname, '../../dist');
    const script = `
      const { embed } = require(${JSON.stringify(path.join(dist, 'native'))});
      const { describeError } = require(${JSON.stringify(path.join(dist, 'cli', 'main'))});
      async function quantizeFromTheCli() { await embed(new Int32Array([9]), new Float32Array(4), 4, [new Float32Array(1)]); }
      quantizeFromTheCli().catch((e) => process.stdout.write(describeError(e)));`;
    const run = (debug: boolean) => execFileSync(process.execPath, ['-e', script], {
      encoding: 'utf8', env: { ...process.env, GPTQ_FORGE_DEBUG: debug ? '1' : '' },
    });
    const debug = run(true);
    expect(debug.split('\n')[0]).toBe('token id 9 is outside the vocabulary (4)');
    expect(debug).toContain('at <native embed> (gptq_forge.node)');
    expect(debug).toMatch(/at (async )?quantizeFromTheCli \(/);
    expect(run(false)).toBe('token id 9 is outside the vocabulary (4) (set GPTQ_FORGE_DEBUG=1 for a stack trace)');
  });

  (cudaBuilt ? test.skip : test)('a CUDA call in a CPU-only build: a clear error with the stack', async () => {
    expect(cudaInfo()).toEqual({ built: false, devices: 0 });
    const opts = { bits: 4, groupSize: -1, actOrder: false, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };
    const e = (await cudaGptqQuantize(new Float32Array(4), new Float32Array(4), 2, 2, opts).catch((x: unknown) => x)) as Error;
    expect(e.message).toBe(`${NO_CUDA}: cudaGptqQuantize`);
    expect(e.stack).toMatch(/at cudaGptqQuantize \(.*src\/native\/cuda\.ts/);
  });
});
