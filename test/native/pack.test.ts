/** AutoGPTQ v1 packing: pack / unpack / dequantize against hand-built words and a JS model. */
import { dequantizeGptq, packGptq, unpackGptq } from '../../src/native';
import { f16ToF32, f32ToF16Bits } from '../../src/io/dtypes';
import { mulberry32 } from '../helpers/lcg';

const prng = mulberry32;
const int = (rnd: () => number, n: number): number => Math.floor(rnd() * n);
const pick = <T>(rnd: () => number, xs: readonly T[]): T => xs[int(rnd, xs.length)];

type Numeric = ArrayLike<number>;

/** Element-wise equality, fast on large arrays (jest's toEqual walks them slowly). */
function expectSame(got: Numeric, want: Numeric, what = 'array'): void {
  expect(got.length).toBe(want.length);
  let i = 0;
  while (i < got.length && got[i] === want[i]) i++;
  expect(i === got.length ? 'same' : `${what} differs at ${i}: ${got[i]} vs ${want[i]}`).toBe('same');
}

/** Independent JS model of the layout: value i of a stream at bits [b·i, b·i + b). */
function jsPack(codes: Uint8Array, zeros: Int32Array, bits: number, k: number, n: number) {
  const qweight = new Int32Array((k * bits / 32) * n);
  for (let col = 0; col < n; col++)
    for (let i = 0; i < k; i++)
      for (let b = 0; b < bits; b++) {
        const pos = bits * i + b;
        if ((codes[col * k + i] >> b) & 1) qweight[Math.floor(pos / 32) * n + col] |= 1 << pos % 32;
      }
  const g = zeros.length / n;
  const rowWords = n * bits / 32;
  const qzeros = new Int32Array(g * rowWords);
  for (let r = 0; r < g; r++)
    for (let i = 0; i < n; i++) {
      const v = (zeros[r * n + i] - 1) & ((1 << bits) - 1);
      for (let b = 0; b < bits; b++) {
        const pos = bits * i + b;
        if ((v >> b) & 1) qzeros[r * rowWords + Math.floor(pos / 32)] |= 1 << pos % 32;
      }
    }
  return { qweight, qzeros };
}

/** Random codes in [0, maxq] and zero points in [1, 2^bits] (the range v1 round-trips). */
function randomLayer(rnd: () => number, bits: number, k: number, n: number, g: number) {
  const codes = Uint8Array.from({ length: n * k }, () => int(rnd, 1 << bits));
  const zeros = Int32Array.from({ length: g * n }, () => 1 + int(rnd, 1 << bits));
  return { codes, zeros };
}

/** Packs random codes and zeros (optimised, reference, optionally the JS model), then unpacks. */
async function roundTrip(
  bits: number, k: number, n: number, g: number, seed: number, withModel = true,
): Promise<void> {
  const { codes, zeros } = randomLayer(prng(seed), bits, k, n, g);
  const opt = await packGptq(codes, zeros, bits, k, n);
  const ref = await packGptq(codes, zeros, bits, k, n, 'reference');
  expectSame(opt.qweight, ref.qweight, 'qweight (optimised vs reference)');
  expectSame(opt.qzeros, ref.qzeros, 'qzeros (optimised vs reference)');
  if (withModel) {
    const model = jsPack(codes, zeros, bits, k, n);
    expectSame(opt.qweight, model.qweight, 'qweight (JS model)');
    expectSame(opt.qzeros, model.qzeros, 'qzeros (JS model)');
  }
  expect(opt.wrappedZeros).toBe(0);
  const back = await unpackGptq(opt.qweight, opt.qzeros, bits, k, n, g);
  expectSame(back.codes, codes, 'back.codes');
  expectSame(back.zeros, zeros, 'back.zeros');
}

describe('packGptq / unpackGptq round trips', () => {
  const sizes = [32, 64, 96, 256];
  for (const bits of [2, 3, 4, 8]) {
    test(`${bits}-bit: every K, N in {32, 64, 96, 256} and several G`, async () => {
      for (const k of sizes)
        for (const n of sizes)
          for (const g of new Set([1, k / 32, k / 64, k / 128].filter((x) => Number.isInteger(x)))) {
            await roundTrip(bits, k, n, g, bits * 1e6 + k * 1e3 + n + g);
          }
    });
  }

  test('300 random cases (seeded): optimised = reference (= JS model every 4th), unpack inverts', async () => {
    const rnd = prng(20240601);
    for (let c = 0; c < 300; c++) {
      const bits = pick(rnd, [2, 3, 4, 8]);
      const k = 32 * (1 + int(rnd, 12));
      const n = 32 * (1 + int(rnd, 12));
      const g = pick(rnd, [1, 2, 3, 4, 8].filter((x) => k % (32 * x) === 0 || x === 1));
      await roundTrip(bits, k, n, g, 1000 + c, c % 4 === 0);
    }
  });

  test('shapes wider than one parallel tile (N = 1024, K = 4096, 3-bit, 32 groups)', async () => {
    await roundTrip(3, 4096, 1024, 32, 7, false);
  });
});

describe('hand-built words', () => {
  test('3-bit, K = N = 32: column 0 holds codes k % 8, column 1 all 7, the rest 0', async () => {
    const k = 32, n = 32;
    const codes = new Uint8Array(n * k);
    for (let i = 0; i < k; i++) {
      codes[0 * k + i] = i % 8;
      codes[1 * k + i] = 7;
    }
    const { qweight } = await packGptq(codes, new Int32Array(n).fill(4), 3, k, n);
    // Column 0: codes 0..7 take 3 bits each, so one period is 24 bits:
    //   0 | 1<<3 | 2<<6 | 3<<9 | 4<<12 | 5<<15 | 6<<18 | 7<<21 = 0xFAC688.
    // The 96-bit stream (32 codes × 3 bits) is that period four times, highest first:
    //   FAC688 FAC688 FAC688 FAC688 → words from the low end, 8 hex digits each:
    //   word 0 = 0x88FAC688 (codes 0..9 and the low 2 bits of code 10 = 2 → bit 31 set),
    //   word 1 = 0xC688FAC6 (bit 0: the high bit of code 10 (0); codes 11..20; bit 31: low bit of code 21 = 5),
    //   word 2 = 0xFAC688FA (bits 0..1: the high bits of code 21 (5 >> 1 = 2); codes 22..31).
    expect([qweight[0 * n + 0] >>> 0, qweight[1 * n + 0] >>> 0, qweight[2 * n + 0] >>> 0]).toEqual([
      0x88fac688, 0xc688fac6, 0xfac688fa,
    ]);
    // Column 1: 96 one bits.
    expect([qweight[1], qweight[n + 1], qweight[2 * n + 1]]).toEqual([-1, -1, -1]);
    expect(qweight.filter((w, i) => i % n >= 2 && w !== 0).length).toBe(0);
  });

  test('4-bit, codes k % 16 in every column: each word is 0xFEDCBA98 or 0x76543210', async () => {
    const k = 64, n = 32;
    const codes = Uint8Array.from({ length: n * k }, (_, i) => (i % k) % 16);
    const { qweight } = await packGptq(codes, new Int32Array(n).fill(8), 4, k, n);
    const want = Int32Array.from({ length: 8 * n }, (_, i) => (Math.floor(i / n) % 2 === 0 ? 0x76543210 : 0xfedcba98));
    expectSame(qweight, want, 'qweight');
  });

  test('symmetric zero points: every qzeros word is (zero − 1) repeated', async () => {
    const cases: [number, number, number][] = [
      [4, 8, 0x77777777], [2, 2, 0x55555555], [8, 128, 0x7f7f7f7f],
    ];
    for (const [bits, zero, word] of cases) {
      const g = 3, n = 64;
      const { qzeros } = await packGptq(new Uint8Array(n * 32), new Int32Array(g * n).fill(zero), bits, 32, n);
      expect(qzeros.length).toBe(g * n * bits / 32);
      expectSame(qzeros, new Int32Array(qzeros.length).fill(word), 'qzeros');
    }
    // 3-bit, zero 4: stored 3 = 0b011, so the 96-bit stream is ...011011011 (bit 3i and 3i+1 set):
    // word 0 = bits 0..31 = 0xDB6DB6DB, word 1 starts at stream bit 32 (= 3·10 + 2, the high 0 of
    // value 10) → 0xB6DB6DB6, word 2 starts at bit 64 (= 3·21 + 1) → 0x6DB6DB6D.
    const { qzeros } = await packGptq(new Uint8Array(32 * 32), new Int32Array(32).fill(4), 3, 32, 32);
    expect(Array.from(qzeros, (w) => w >>> 0)).toEqual([0xdb6db6db, 0xb6db6db6, 0x6db6db6d]);
  });
});

describe('zero = 0 and zero = 2^bits', () => {
  test('zero 0 is stored masked (neighbours intact), counted, and reads back as 2^bits', async () => {
    const n = 32;
    const zeros = new Int32Array(n).fill(8);
    zeros[4] = 0;
    zeros[5] = 16; // stored 15 as well: reads back 16 exactly
    for (const variant of ['optimised', 'reference'] as const) {
      const packed = await packGptq(new Uint8Array(n * 32), zeros, 4, 32, n, variant);
      expect(packed.wrappedZeros).toBe(1);
      // Fields 0..7 of word 0: 7 7 7 7 F F 7 7 (AutoGPTQ's unmasked packer would give 7 7 7 7 F F F F).
      expect(packed.qzeros[0] >>> 0).toBe(0x77ff7777);
      const back = await unpackGptq(packed.qweight, packed.qzeros, 4, 32, n, 1);
      expect(back.zeros[4]).toBe(16);
      expect(back.zeros[5]).toBe(16);
      expect(back.zeros[3]).toBe(8);
      expect(back.zeros[6]).toBe(8);
    }
  });
});

describe('dequantizeGptq', () => {
  test('known 4-bit case: w = scale · (code − 8), two groups, act-order g_idx', async () => {
    const k = 64, n = 32, bits = 4;
    const codes = Uint8Array.from({ length: n * k }, (_, i) => (i * 7 + 3) % 16);
    const packed = await packGptq(codes, new Int32Array(2 * n).fill(8), bits, k, n);
    // Group 0: scale 0.5 for every column; group 1: scale 0.25·(1 + n/32) per column n.
    const scales = new Uint16Array(2 * n);
    for (let c = 0; c < n; c++) {
      scales[c] = f32ToF16Bits(0.5);
      scales[n + c] = f32ToF16Bits(0.25 * (1 + c / 32));
    }
    const gIdx = Int32Array.from({ length: k }, (_, i) => (i * 5) % 2); // scattered, 32 per group
    const w = await dequantizeGptq(packed.qweight, packed.qzeros, scales, gIdx, bits, k, n);
    const want = new Float32Array(n * k);
    for (let r = 0; r < n; r++)
      for (let i = 0; i < k; i++) {
        const scale = gIdx[i] === 0 ? 0.5 : f16ToF32(scales[n + r]);
        want[r * k + i] = scale * (codes[r * k + i] - 8);
      }
    expectSame(w, want, 'w');
    expect(w[0 * k + 0]).toBe(0.5 * (3 - 8));
  });

  test('random layers: optimised = reference = JS formula; round16 rounds to fp16', async () => {
    const rnd = prng(99);
    for (let c = 0; c < 40; c++) {
      const bits = pick(rnd, [2, 3, 4, 8]);
      const k = 32 * (1 + int(rnd, 6)), n = 32 * (1 + int(rnd, 4)), g = pick(rnd, [1, 2, 3]);
      const { codes, zeros } = randomLayer(rnd, bits, k, n, g);
      const scales = Uint16Array.from({ length: g * n }, () => f32ToF16Bits((rnd() - 0.5) * 0.1));
      const gIdx = Int32Array.from({ length: k }, () => int(rnd, g));
      const p = await packGptq(codes, zeros, bits, k, n);
      const opt = await dequantizeGptq(p.qweight, p.qzeros, scales, gIdx, bits, k, n);
      const ref = await dequantizeGptq(p.qweight, p.qzeros, scales, gIdx, bits, k, n, { variant: 'reference' });
      const r16 = await dequantizeGptq(p.qweight, p.qzeros, scales, gIdx, bits, k, n, { round16: true });
      expectSame(opt, ref, 'opt');
      const want = new Float32Array(n * k), want16 = new Float32Array(n * k);
      for (let r = 0; r < n; r++)
        for (let i = 0; i < k; i++) {
          const v = f16ToF32(scales[gIdx[i] * n + r]) * (codes[r * k + i] - zeros[gIdx[i] * n + r]);
          want[r * k + i] = v;
          want16[r * k + i] = f16ToF32(f32ToF16Bits(v));
        }
      expectSame(opt, want, 'w');
      expectSame(r16, want16, 'w (round16)');
    }
  });
});

describe('argument errors name the argument, the expectation and what was given', () => {
  const codes = new Uint8Array(32 * 32);
  const zeros = new Int32Array(32).fill(8);
  test('layout', async () => {
    await expect(packGptq(new Uint8Array(48 * 32), zeros, 4, 48, 32)).rejects.toThrow(
      'K: expected a positive multiple of 32, got 48',
    );
    await expect(packGptq(codes, zeros, 5, 32, 32)).rejects.toThrow('bits: expected 2, 3, 4 or 8, got 5');
    await expect(packGptq(codes, new Int32Array(40), 4, 32, 32)).rejects.toThrow(
      'zeros: expected G × N elements (N = 32), got 40',
    );
    await expect(packGptq(codes.subarray(1), zeros, 4, 32, 32)).rejects.toThrow('codes: expected 1024 elements, got 1023');
    await expect(unpackGptq(new Int32Array(10), new Int32Array(4), 4, 32, 32, 1)).rejects.toThrow(
      'qweight: expected 128 elements, got 10',
    );
  });
  test('values out of range are rejected by the kernels', async () => {
    const bad = codes.slice();
    bad[3 * 32 + 5] = 8;
    for (const variant of ['optimised', 'reference'] as const) {
      await expect(packGptq(bad, zeros, 3, 32, 32, variant)).rejects.toThrow('codes[3, 5] = 8 exceeds 2^bits - 1 = 7');
      await expect(packGptq(codes, Int32Array.from(zeros, (z, i) => (i === 2 ? 17 : z)), 4, 32, 32, variant))
        .rejects.toThrow('zeros[0, 2] = 17 is outside [0, 2^bits = 16]');
    }
    const p = await packGptq(codes, zeros, 4, 32, 32);
    const gIdx = new Int32Array(32);
    gIdx[7] = 1;
    await expect(dequantizeGptq(p.qweight, p.qzeros, new Uint16Array(32), gIdx, 4, 32, 32)).rejects.toThrow(
      'gIdx[7]: expected a group in [0, 1), got 1',
    );
  });
});
