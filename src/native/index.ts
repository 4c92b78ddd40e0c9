/**
 * The one module that loads the native addon. Every function here validates its arguments
 * (name, expected, got) before the call, and every native call is asynchronous: it runs on
 * libuv's thread pool (and the addon's own worker threads), never on the event loop.
 */
import * as path from 'node:path';

/** Llama dimensions the kernels need; `round16` stores activations as fp16 does. */
export interface NativeDims {
  hidden: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  ropeTheta: number;
  round16: boolean;
}

/** One decoder layer's weights in fp32, row-major [out, in] as in the checkpoint. */
export interface LayerWeightsF32 {
  inputNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  postNorm: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

interface Addon {
  threads: number;
  f16ToF32(src: Uint16Array, dst: Float32Array): Promise<number>;
  f32ToF16(src: Float32Array, dst: Uint16Array): Promise<number>;
  bf16ToF32(src: Uint16Array, dst: Float32Array): Promise<number>;
  nonFinite(src: Uint16Array | Float32Array, kind: number): Promise<number>;
  embed(ids: Int32Array, table: Float32Array, vocab: number, windows: Float32Array[]): Promise<void>;
  decoderLayer(windows: Float32Array[], w: LayerWeightsF32, dims: NativeDims, seqlen: number): Promise<number>;
  windowNll(
    windows: Float32Array[], ids: Int32Array, norm: Float32Array, lmHead: Float32Array,
    dims: NativeDims, seqlen: number,
  ): Promise<WindowNll>;
  gemmNt(a: Float32Array, b: Float32Array, m: number, n: number, k: number, variant: number): Promise<Float32Array>;
  peakFlops(seconds: number): Promise<number>;
  gptqQuantize(w: Float32Array, h: Float32Array | null, n: number, k: number, opts: GptqOptions): Promise<GptqSolve>;
  xtx(x: Float32Array, t: number, k: number, reference: boolean): Promise<Float32Array>;
  upperCholeskyOfInverse(h: Float64Array, k: number, reference: boolean): Promise<Float64Array | null>;
  packGptq(codes: Uint8Array, zeros: Int32Array, bits: number, k: number, n: number, variant: number): Promise<PackedGptq>;
  unpackGptq(qweight: Int32Array, qzeros: Int32Array, bits: number, k: number, n: number, g: number): Promise<UnpackedGptq>;
  dequantizeGptq(
    qweight: Int32Array, qzeros: Int32Array, scales: Uint16Array, gIdx: Int32Array,
    bits: number, k: number, n: number, round16: boolean, variant: number,
  ): Promise<Float32Array>;
}

let addon: Addon | undefined;
const calls = new Map<string, number>();

function load(): Addon {
  if (!addon) {
    const file = path.resolve(__dirname, '../../build/Release/gptq_forge.node');
    let raw: Record<string, unknown>;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      raw = require(file) as Record<string, unknown>;
    } catch (e) {
      throw new Error(
        `native addon not built (${file}): run \`npm run build:native\` (${(e as Error).message.split('\n')[0]})`,
      );
    }
    addon = counted(raw) as unknown as Addon;
  }
  return addon;
}

/**
 * The addon with every function wrapped once so that each call is counted (nativeCallCount):
 * the one point every native call of the process goes through, ./cuda and ./cuda-eval included.
 */
function counted(raw: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'function') {
      out[key] = value;
      continue;
    }
    const f = value as (...args: unknown[]) => unknown;
    out[key] = (...args: unknown[]) => {
      calls.set(key, (calls.get(key) ?? 0) + 1);
      return f.apply(raw, args);
    };
  }
  return out;
}

/** How many native addon calls this process has made so far, by function name. */
export function nativeCallCounts(): Record<string, number> {
  return Object.fromEntries(calls);
}

/** How many native addon calls this process has made so far. */
export function nativeCallCount(): number {
  let n = 0;
  for (const v of calls.values()) n += v;
  return n;
}

/** Whether GPTQ_FORGE_DEBUG (a comma-separated list of words) names `word`, e.g. native-calls. */
export function debugEnabled(word: string): boolean {
  return (process.env.GPTQ_FORGE_DEBUG ?? '').split(',').map((w) => w.trim()).includes(word);
}

/** The loaded addon, for the CUDA wrappers in ./cuda (which type its optional members). */
export function nativeAddon(): unknown {
  return load();
}

/** Worker threads the native kernels use (GPTQ_FORGE_THREADS or all cores). */
export function nativeThreads(): number {
  return load().threads;
}

export function check(cond: boolean, what: string, expected: string, got: unknown): void {
  if (!cond) throw new RangeError(`${what}: expected ${expected}, got ${String(got)}`);
}

export function checkLength(arr: ArrayLike<unknown>, what: string, expected: number): void {
  check(arr.length === expected, what, `${expected} elements`, arr.length);
}

export function checkDims(d: NativeDims): void {
  for (const key of ['hidden', 'ffn', 'heads', 'kvHeads', 'headDim'] as const) {
    check(Number.isInteger(d[key]) && d[key] > 0, `dims.${key}`, 'a positive integer', d[key]);
  }
  check(d.heads % d.kvHeads === 0, 'dims.heads', `a multiple of kvHeads (${d.kvHeads})`, d.heads);
  check(d.headDim % 2 === 0, 'dims.headDim', 'an even number', d.headDim);
}

export function checkSeqlen(seqlen: number): void {
  check(Number.isInteger(seqlen) && seqlen >= 2, 'seqlen', 'an integer ≥ 2', seqlen);
}

/** Converts fp16 bits to fp32 values (multi-threaded). */
export async function f16ToF32(src: Uint16Array): Promise<Float32Array> {
  return (await f16ToF32Checked(src)).values;
}

/** Converts fp16 bits to fp32 values and counts the NaN/Inf among them. */
export async function f16ToF32Checked(src: Uint16Array): Promise<{ values: Float32Array; nonFinite: number }> {
  const values = new Float32Array(src.length);
  const nonFinite = await load().f16ToF32(src, values);
  return { values, nonFinite };
}

/** Converts bf16 bits to fp32 values and counts the NaN/Inf among them (native threads). */
export async function bf16ToF32Checked(src: Uint16Array): Promise<{ values: Float32Array; nonFinite: number }> {
  const values = new Float32Array(src.length);
  const nonFinite = await load().bf16ToF32(src, values);
  return { values, nonFinite };
}

/** How many NaN/Inf values a tensor holds: fp16 or bf16 bits (Uint16Array), or fp32 values. */
export async function countNonFinite(src: Uint16Array | Float32Array, dtype: 'F16' | 'BF16' | 'F32'): Promise<number> {
  const tag = Object.prototype.toString.call(src).slice(8, -1);
  check(tag === (dtype === 'F32' ? 'Float32Array' : 'Uint16Array'), 'src', `${dtype === 'F32' ? 'a Float32Array' : 'a Uint16Array'} for ${dtype}`, tag);
  return load().nonFinite(src, dtype === 'F16' ? 0 : dtype === 'BF16' ? 1 : 2);
}

/**
 * Converts fp32 values to fp16 bits (round to nearest even, multi-threaded); `inexact` counts
 * the values that fp16 does not hold exactly (0: the conversion lost nothing).
 */
export async function f32ToF16(src: Float32Array): Promise<{ bits: Uint16Array; inexact: number }> {
  const bits = new Uint16Array(src.length);
  const inexact = await load().f32ToF16(src, bits);
  return { bits, inexact };
}

/** Fills each window [S×H] with the embedding rows (table [V×H]) of its S token ids. */
export async function embed(
  ids: Int32Array, table: Float32Array, vocab: number, windows: Float32Array[],
): Promise<void> {
  check(windows.length > 0 && ids.length % windows.length === 0, 'ids', 'windows × seqlen ids', ids.length);
  check(table.length % vocab === 0, 'table', `a multiple of vocab (${vocab})`, table.length);
  const hidden = table.length / vocab;
  const seqlen = ids.length / windows.length;
  windows.forEach((w, i) => checkLength(w, `windows[${i}]`, seqlen * hidden));
  await load().embed(ids, table, vocab, windows);
}

/**
 * Runs one decoder layer over every window, in place; returns how many values of the windows
 * are NaN/Inf after it (counted natively; 0 when all is well).
 */
export async function decoderLayer(
  windows: Float32Array[], w: LayerWeightsF32, dims: NativeDims, seqlen: number,
): Promise<number> {
  checkDims(dims);
  checkSeqlen(seqlen);
  checkLayerWeights(w, dims);
  windows.forEach((x, i) => checkLength(x, `windows[${i}]`, seqlen * dims.hidden));
  return load().decoderLayer(windows, w, dims, seqlen);
}

export function checkLayerWeights(w: LayerWeightsF32, dims: NativeDims): void {
  const { hidden: H, ffn: F } = dims;
  const qd = dims.heads * dims.headDim;
  const kvd = dims.kvHeads * dims.headDim;
  const expected: Record<keyof LayerWeightsF32, number> = {
    inputNorm: H, q: qd * H, k: kvd * H, v: kvd * H, o: H * qd,
    postNorm: H, gate: F * H, up: F * H, down: H * F,
  };
  for (const key of Object.keys(expected) as (keyof LayerWeightsF32)[]) {
    check(w[key] instanceof Float32Array, `weights.${key}`, 'a Float32Array', w[key]);
    checkLength(w[key], `weights.${key}`, expected[key]);
  }
}

export interface WindowNll {
  /** −log p(next token) for each window's seqlen − 1 targets: [windows × (seqlen − 1)]. */
  nll: Float32Array;
  /** The most likely next token at every position: [windows × seqlen]. */
  argmax: Int32Array;
  /** How many of `nll` are NaN/Inf (non-finite logits after the final norm and lm_head). */
  nonFinite: number;
}

/** Final norm, lm_head and log-softmax of every window. */
export async function windowNll(
  windows: Float32Array[], ids: Int32Array, norm: Float32Array, lmHead: Float32Array,
  dims: NativeDims, seqlen: number,
): Promise<WindowNll> {
  checkDims(dims);
  checkSeqlen(seqlen);
  windows.forEach((x, i) => checkLength(x, `windows[${i}]`, seqlen * dims.hidden));
  checkLength(ids, 'ids', windows.length * seqlen);
  checkLength(norm, 'norm', dims.hidden);
  check(lmHead.length > 0 && lmHead.length % dims.hidden === 0, 'lmHead', `a multiple of hidden (${dims.hidden})`, lmHead.length);
  return load().windowNll(windows, ids, norm, lmHead, dims, seqlen);
}

export type GemmVariant = 'reference' | 'tiled' | 'parallel';

/** C[M×N] = A[M×K] · B[N×K]ᵀ with one of the kernel variants (used by tests and benchmarks). */
export async function gemmNt(
  a: Float32Array, b: Float32Array, m: number, n: number, k: number, variant: GemmVariant,
): Promise<Float32Array> {
  checkLength(a, 'A', m * k);
  checkLength(b, 'B', n * k);
  return load().gemmNt(a, b, m, n, k, ['reference', 'tiled', 'parallel'].indexOf(variant));
}

/** Measured fp32 FMA throughput (FLOP/s) of all worker threads together. */
export async function peakFlops(seconds = 1): Promise<number> {
  check(seconds > 0 && seconds <= 60, 'seconds', 'a duration in (0, 60]', seconds);
  return load().peakFlops(seconds);
}

// ---- GPTQ ----------------------------------------------------------------------------------

export interface GptqOptions {
  bits: number;
  /** −1: one group of all input columns. */
  groupSize: number;
  actOrder: boolean;
  staticGroups: boolean;
  sym: boolean;
  /** Shrink each grid to minimise Σ|q − w|^2.4 (the reference Quantizer's mse option). */
  mse?: boolean;
  dampPercent: number;
  blockSize: number;
}

export interface GptqSolve {
  /** Dequantized weights [N×K], original column order, rounded to fp16 (the layer's new weight). */
  q: Float32Array;
  /** Integer codes [N×K], original column order. */
  codes: Uint8Array;
  /** Per group and output row: scales [G×N] and integer zero points [G×N]. */
  scales: Float32Array;
  zeros: Int32Array;
  gIdx: Int32Array;
  perm: Int32Array;
  /** Σ (w − q)² / d² / 2, as the reference reports it (0 for round-to-nearest). */
  loss: number;
  /** Damping used; dampRaises > 0 when H was not positive definite at the asked damping. */
  dampPercent: number;
  dampRaises: number;
  deadColumns: number;
}

export function checkGptqOptions(o: GptqOptions, k: number): void {
  check([2, 3, 4, 8].includes(o.bits), 'bits', '2, 3, 4 or 8', o.bits);
  check(o.groupSize === -1 || (Number.isInteger(o.groupSize) && o.groupSize > 0 && k % o.groupSize === 0),
    'groupSize', `-1 or a divisor of ${k}`, o.groupSize);
  check(Number.isFinite(o.dampPercent) && o.dampPercent >= 0, 'dampPercent', 'a number ≥ 0', o.dampPercent);
  check(Number.isInteger(o.blockSize) && o.blockSize > 0, 'blockSize', 'a positive integer', o.blockSize);
}

/** The GPTQ solve of one linear W [N×K] with Hessian H [K×K]; H = null gives round-to-nearest. */
export async function gptqQuantize(
  w: Float32Array, h: Float32Array | null, n: number, k: number, opts: GptqOptions,
): Promise<GptqSolve> {
  checkGptqOptions(opts, k);
  checkLength(w, 'W', n * k);
  if (h) checkLength(h, 'H', k * k);
  return load().gptqQuantize(w, h, n, k, opts);
}

/** XᵀX of X [T×K]: blocked symmetric kernel, or the fp64 reference loop. */
export async function xtx(x: Float32Array, t: number, k: number, reference: boolean): Promise<Float32Array> {
  checkLength(x, 'X', t * k);
  return load().xtx(x, t, k, reference);
}

/** Upper Cholesky factor of H⁻¹ (fast route or the reference's three steps); null if H is not PD. */
export async function upperCholeskyOfInverse(h: Float64Array, k: number, reference: boolean): Promise<Float64Array | null> {
  checkLength(h, 'H', k * k);
  return load().upperCholeskyOfInverse(h, k, reference);
}

// ---- AutoGPTQ v1 packing ---------------------------------------------------------------------

export interface PackedGptq {
  /** int32 [K·bits/32, N]: column n is the little-endian bit stream of row n's K codes. */
  qweight: Int32Array;
  /** int32 [G, N·bits/32]: row g is the bit stream of the N values (zero − 1) mod 2^bits. */
  qzeros: Int32Array;
  /**
   * How many zero points were 0: v1 stores them as 2^bits − 1 and every reader adds 1 without
   * wrapping, so they read back as 2^bits (the AutoGPTQ v1 format cannot hold zero = 0).
   */
  wrappedZeros: number;
}

export interface UnpackedGptq {
  /** [N·K] row-major by output row: codes[n·K + k]. */
  codes: Uint8Array;
  /** [G·N]: stored zero + 1, as readers use it (1 … 2^bits). */
  zeros: Int32Array;
}

export type PackVariant = 'reference' | 'optimised';

function checkPackLayout(bits: number, k: number, n: number): void {
  check([2, 3, 4, 8].includes(bits), 'bits', '2, 3, 4 or 8', bits);
  check(Number.isInteger(k) && k > 0 && k % 32 === 0, 'K', 'a positive multiple of 32', k);
  check(Number.isInteger(n) && n > 0 && n % 32 === 0, 'N', 'a positive multiple of 32', n);
}

/** By tag, not instanceof: arrays made by the addon or another realm (jest's vm) still pass. */
function checkType(arr: unknown, what: string, type: 'Uint8Array' | 'Uint16Array' | 'Int32Array'): void {
  const tag = Object.prototype.toString.call(arr).slice(8, -1);
  check(tag === type, what, `${type === 'Int32Array' ? 'an' : 'a'} ${type}`, tag);
}

/**
 * Packs a layer's integer codes (codes[n·K + k] = code of W[n, k]) and integer zero points
 * (zeros[g·N + n], NOT minus one; each in [0, 2^bits]) into AutoGPTQ v1 qweight / qzeros.
 */
export async function packGptq(
  codes: Uint8Array, zeros: Int32Array, bits: number, k: number, n: number,
  variant: PackVariant = 'optimised',
): Promise<PackedGptq> {
  checkPackLayout(bits, k, n);
  checkType(codes, 'codes', 'Uint8Array');
  checkType(zeros, 'zeros', 'Int32Array');
  checkLength(codes, 'codes', n * k);
  check(zeros.length > 0 && zeros.length % n === 0, 'zeros', `G × N elements (N = ${n})`, zeros.length);
  return load().packGptq(codes, zeros, bits, k, n, variant === 'reference' ? 0 : 1);
}

/** The inverse of packGptq (zeros come back as stored + 1, see UnpackedGptq). */
export async function unpackGptq(
  qweight: Int32Array, qzeros: Int32Array, bits: number, k: number, n: number, g: number,
): Promise<UnpackedGptq> {
  checkPackLayout(bits, k, n);
  check(Number.isInteger(g) && g > 0, 'G', 'a positive integer', g);
  checkType(qweight, 'qweight', 'Int32Array');
  checkType(qzeros, 'qzeros', 'Int32Array');
  checkLength(qweight, 'qweight', (k * bits / 32) * n);
  checkLength(qzeros, 'qzeros', g * (n * bits / 32));
  return load().unpackGptq(qweight, qzeros, bits, k, n, g);
}

/**
 * The Linear weight [N, K] (row-major) an AutoGPTQ v1 reader sees:
 * w[n, k] = scales[g, n] · (code[k, n] − (stored_zero[g, n] + 1)) with g = gIdx[k], computed
 * exactly in fp32; `round16` rounds it to fp16 as AutoGPTQ's torch dequantization does.
 * scales: fp16 bits [G·N]; G = scales.length / N.
 */
export async function dequantizeGptq(
  qweight: Int32Array, qzeros: Int32Array, scales: Uint16Array, gIdx: Int32Array,
  bits: number, k: number, n: number,
  opts: { round16?: boolean; variant?: PackVariant } = {},
): Promise<Float32Array> {
  checkPackLayout(bits, k, n);
  checkType(qweight, 'qweight', 'Int32Array');
  checkType(qzeros, 'qzeros', 'Int32Array');
  checkType(scales, 'scales', 'Uint16Array');
  checkType(gIdx, 'gIdx', 'Int32Array');
  check(scales.length > 0 && scales.length % n === 0, 'scales', `G × N elements (N = ${n})`, scales.length);
  const g = scales.length / n;
  checkLength(qweight, 'qweight', (k * bits / 32) * n);
  checkLength(qzeros, 'qzeros', g * (n * bits / 32));
  checkLength(gIdx, 'gIdx', k);
  for (let i = 0; i < k; i++) {
    if (!(gIdx[i] >= 0 && gIdx[i] < g)) check(false, `gIdx[${i}]`, `a group in [0, ${g})`, gIdx[i]);
  }
  return load().dequantizeGptq(
    qweight, qzeros, scales, gIdx, bits, k, n, opts.round16 ?? false, opts.variant === 'reference' ? 0 : 1,
  );
}

export * from './cpu-layer';
export * from './cuda';
export * from './cuda-eval';
