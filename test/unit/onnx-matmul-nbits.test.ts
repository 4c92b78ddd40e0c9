/**
 * @jest-environment ./test/helpers/ort-environment.js
 */
/**
 * GPTQ tensors repacked for com.microsoft MatMulNBits, checked against ONNX Runtime itself:
 * random codes, per-group zero points and scales, packed to AutoGPTQ v1 by our packer, repacked
 * by packForMatMulNBits and run as a one-node ONNX model; the product must equal
 * x · dequantizeGptq(...)ᵀ. Covers 2/4/8 bits, act-order g_idx (K permuted + Gather), an odd
 * number of blocks (zero-point padding), and the refusals (3 bits, wrapped zeros, odd groups).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { f32ToF16Bits } from '../../src/io/dtypes';
import { IR_VERSION, OnnxModelWriter, OnnxType } from '../../src/io/onnx-file';
import { refGIdx } from '../helpers/gptq-math-ref';
import { GraphBuilder, MS_DOMAIN, valueInfo } from '../../src/eval/onnx/graph-builder';
import { dequantizeNBits, groupOrder, packForMatMulNBits } from '../../src/eval/onnx/matmul-nbits';
import { dequantizeGptq, packGptq, unpackGptq } from '../../src/native';

let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-nbits-')); });
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Deterministic pseudo-random numbers (xorshift32). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

interface Case { bits: number; k: number; n: number; group: number; actOrder: boolean }

async function gptqLinear(c: Case, seed: number) {
  const r = rng(seed);
  const G = c.k / c.group;
  const codes = Uint8Array.from({ length: c.n * c.k }, () => Math.floor(r() * (1 << c.bits)));
  // zeros in [1, 2^bits − 1]: every block gets its own, so a misplaced zero point shows
  const zeros = Int32Array.from({ length: G * c.n }, () => 1 + Math.floor(r() * ((1 << c.bits) - 1)));
  const scales = Uint16Array.from({ length: G * c.n }, () => f32ToF16Bits(0.001 + r() * 0.02));
  let perm: Int32Array | null = null;
  if (c.actOrder) {
    perm = Int32Array.from({ length: c.k }, (_, i) => i);
    for (let i = c.k - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [perm[i], perm[j]] = [perm[j], perm[i]]; }
  }
  const gIdx = refGIdx(c.k, c.group, perm, false);
  const { qweight, qzeros } = await packGptq(codes, zeros, c.bits, c.k, c.n);
  return { qweight, qzeros, scales, gIdx, G };
}

async function runNBits(c: Case, seed: number): Promise<{ got: Float32Array; want: Float64Array; scale: Float64Array }> {
  const q = await gptqLinear(c, seed);
  const un = await unpackGptq(q.qweight, q.qzeros, c.bits, c.k, c.n, q.G);
  const plan = packForMatMulNBits({ bits: c.bits, k: c.k, n: c.n, codes: un.codes, zeros: un.zeros, scales: q.scales, gIdx: q.gIdx });
  if (!plan.ok) throw new Error(plan.reason);
  const p = plan.packed;
  const file = path.join(tmp, `nbits-${c.bits}-${seed}.onnx`);
  const writer = await OnnxModelWriter.create(file);
  const b = new GraphBuilder(writer);
  let a = 'x';
  if (p.perm) {
    const order = await b.initializer({ name: 'order', dataType: OnnxType.INT64, dims: [c.k], bytes: new Uint8Array(BigInt64Array.from(p.perm, (v) => BigInt(v)).buffer) });
    a = b.node('Gather', ['x', order], { axis: { int: -1 } });
  }
  await b.initializer({ name: 'B', dataType: OnnxType.UINT8, dims: [c.n, p.nBlocks, (p.blockSize * c.bits) / 8], bytes: p.b });
  await b.initializer({ name: 's', dataType: OnnxType.FLOAT, dims: [c.n * p.nBlocks], bytes: new Uint8Array(p.scales.buffer) });
  await b.initializer({ name: 'zp', dataType: OnnxType.UINT8, dims: [p.zeroPoints.length], bytes: p.zeroPoints });
  const y = b.node('MatMulNBits', [a, 'B', 's', 'zp'], {
    K: { int: c.k }, N: { int: c.n }, bits: { int: c.bits }, block_size: { int: p.blockSize }, accuracy_level: { int: 0 },
  }, { domain: MS_DOMAIN });
  b.nodeTo('y', 'Identity', [y]);
  await writer.finish({
    irVersion: IR_VERSION, opsetImport: [{ domain: '', version: 17 }, { domain: MS_DOMAIN, version: 1 }],
    graph: { name: 't', node: b.nodes, input: [valueInfo('x', OnnxType.FLOAT, [3, c.k])], output: [valueInfo('y', OnnxType.FLOAT, [3, c.n])] },
  });
  const r = rng(seed + 7);
  const x = Float32Array.from({ length: 3 * c.k }, () => r() * 2 - 1);
  const session = await ort.InferenceSession.create(file, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  const got = (await session.run({ x: new ort.Tensor('float32', x, [3, c.k]) })).y.data as Float32Array;
  await session.release();
  const w = await dequantizeGptq(q.qweight, q.qzeros, q.scales, q.gIdx, c.bits, c.k, c.n, { round16: false });
  // The packed form itself dequantizes to the same weights, in original column order.
  expect(Array.from(dequantizeNBits(p, c.bits, c.k, c.n))).toEqual(Array.from(w));
  const want = new Float64Array(3 * c.n), scale = new Float64Array(3 * c.n);
  for (let m = 0; m < 3; m++) for (let j = 0; j < c.n; j++) {
    for (let i = 0; i < c.k; i++) {
      want[m * c.n + j] += x[m * c.k + i] * w[j * c.k + i];
      scale[m * c.n + j] += Math.abs(x[m * c.k + i] * w[j * c.k + i]);
    }
  }
  return { got, want, scale };
}

describe('MatMulNBits from AutoGPTQ tensors, run by onnxruntime', () => {
  const cases: Case[] = [
    { bits: 4, k: 96, n: 64, group: 32, actOrder: false }, // 3 blocks: zero points padded per row
    { bits: 4, k: 256, n: 32, group: 128, actOrder: true },
    { bits: 4, k: 384, n: 32, group: 384, actOrder: true }, // group −1: one group, blocks of 128
    { bits: 2, k: 192, n: 32, group: 64, actOrder: true },
    { bits: 8, k: 128, n: 32, group: 32, actOrder: true },
  ];
  test.each(cases)('%o', async (c) => {
    const { got, want, scale } = await runNBits(c, c.k + c.bits);
    for (let i = 0; i < want.length; i++) {
      // fp32 products summed over K terms: |error| ≤ K · 2^-24 · Σ|x·w| (plus the same again
      // for blocked partial sums); 4·K·2^-24 leaves room for MLAS's summation order.
      expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(4 * c.k * 2 ** -24 * scale[i] + 1e-30);
    }
  });

  test('act-order groups become contiguous in groupOrder', () => {
    const perm = Int32Array.from([3, 0, 2, 1]);
    const gIdx = refGIdx(4, 2, perm, false); // columns 3, 0 → group 0; 2, 1 → group 1
    expect(Array.from(groupOrder(gIdx))).toEqual([0, 3, 1, 2]);
  });

  test('refuses what MatMulNBits cannot hold, with a reason', async () => {
    const c = { bits: 4, k: 96, n: 32, group: 32, actOrder: false };
    const q = await gptqLinear(c, 1);
    const un = await unpackGptq(q.qweight, q.qzeros, 4, 96, 32, q.G);
    const base = { bits: 4, k: 96, n: 32, codes: un.codes, zeros: un.zeros, scales: q.scales, gIdx: q.gIdx };
    expect(packForMatMulNBits({ ...base, bits: 3 })).toEqual({ ok: false, reason: expect.stringMatching(/3-bit/) });
    const wrapped = Int32Array.from(un.zeros); wrapped[5] = 16;
    expect(packForMatMulNBits({ ...base, zeros: wrapped })).toEqual({ ok: false, reason: expect.stringMatching(/zero point 16/) });
    // groups of 24 columns (96 = 4 × 24) are not whole blocks of a power of two ≥ 16
    const odd = Int32Array.from({ length: 96 }, (_, i) => Math.floor(i / 24));
    expect(packForMatMulNBits({ ...base, gIdx: odd, scales: q.scales.subarray(0, 4 * 32), zeros: un.zeros.subarray(0, 4 * 32) }))
      .toEqual({ ok: false, reason: expect.stringMatching(/whole blocks/) });
  });
});
