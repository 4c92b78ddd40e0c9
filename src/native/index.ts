/**
 * The native calls of the CPU engine. Every function here validates its arguments (name,
 * expected, got; ./check) before the call, and every native call goes through ./addon (the one
 * loader and the one call path, which gives native errors the JS stack of the call) and is
 * asynchronous: it runs on libuv's thread pool (and the addon's own worker threads), never on
 * the event loop.
 */
import { callNative, NATIVE_ENUMS, nativeConstants } from './addon';
import {
  check, checkAlpha, checkBoolean, checkInteger, checkLength, checkNumber, checkObject, checkOneOf, checkOptionalBoolean, checkType,
  checkTypedArrays,
} from './check';

export { check, checkLength } from './check';

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

/**
 * The loaded addon's values: worker threads, whether it has the CUDA backend, its enum tables
 * (no functions: every call goes through ./addon's callNative).
 */
export function nativeAddon(): ReturnType<typeof nativeConstants> {
  return nativeConstants();
}

/** Worker threads the native kernels use (GPTQ_FORGE_THREADS or all cores). */
export function nativeThreads(): number {
  return nativeConstants().threads;
}

export function checkDims(d: NativeDims, what = 'dims'): void {
  checkObject(d, what);
  for (const key of ['hidden', 'ffn', 'heads', 'kvHeads', 'headDim'] as const) checkInteger(d[key], `${what}.${key}`, 1);
  check(d.heads % d.kvHeads === 0, `${what}.heads`, `a multiple of kvHeads (${d.kvHeads})`, d.heads);
  check(d.headDim % 2 === 0, `${what}.headDim`, 'an even number', d.headDim);
  checkNumber(d.eps, `${what}.eps`);
  checkNumber(d.ropeTheta, `${what}.ropeTheta`);
  checkOptionalBoolean(d.round16, `${what}.round16`);
}

export function checkSeqlen(seqlen: number): void {
  checkInteger(seqlen, 'seqlen', 2);
}

/** Converts fp16 bits to fp32 values (multi-threaded). */
export async function f16ToF32(src: Uint16Array): Promise<Float32Array> {
  return (await f16ToF32Checked(src)).values;
}

/** Converts fp16 bits to fp32 values and counts the NaN/Inf among them. */
export async function f16ToF32Checked(src: Uint16Array): Promise<{ values: Float32Array; nonFinite: number }> {
  checkType(src, 'src', 'Uint16Array');
  const values = new Float32Array(src.length);
  const nonFinite = await callNative('f16ToF32', src, values);
  return { values, nonFinite };
}

/** Converts bf16 bits to fp32 values and counts the NaN/Inf among them (native threads). */
export async function bf16ToF32Checked(src: Uint16Array): Promise<{ values: Float32Array; nonFinite: number }> {
  checkType(src, 'src', 'Uint16Array');
  const values = new Float32Array(src.length);
  const nonFinite = await callNative('bf16ToF32', src, values);
  return { values, nonFinite };
}

export type NonFiniteDtype = (typeof NATIVE_ENUMS.dtype)[number];

/** How many NaN/Inf values a tensor holds: fp16 or bf16 bits (Uint16Array), or fp32 values. */
export async function countNonFinite(src: Uint16Array | Float32Array, dtype: NonFiniteDtype): Promise<number> {
  checkOneOf(dtype, 'dtype', NATIVE_ENUMS.dtype);
  checkType(src, `src (${dtype})`, dtype === 'F32' ? 'Float32Array' : 'Uint16Array');
  return callNative('nonFinite', src, dtype);
}

/**
 * Converts fp32 values to fp16 bits (round to nearest even, multi-threaded); `inexact` counts
 * the values that fp16 does not hold exactly (0: the conversion lost nothing). The scalar
 * conversion of one number is io/dtypes' f32ToF16Bits.
 */
export async function f32ArrayToF16(src: Float32Array): Promise<{ bits: Uint16Array; inexact: number }> {
  checkType(src, 'src', 'Float32Array');
  const bits = new Uint16Array(src.length);
  const inexact = await callNative('f32ToF16', src, bits);
  return { bits, inexact };
}

/** Fills each window [S×H] with the embedding rows (table [V×H]) of its S token ids. */
export async function embed(
  ids: Int32Array, table: Float32Array, vocab: number, windows: Float32Array[],
): Promise<void> {
  checkType(ids, 'ids', 'Int32Array');
  checkType(table, 'table', 'Float32Array');
  checkInteger(vocab, 'vocab', 1);
  checkTypedArrays(windows, 'windows', 'Float32Array');
  check(windows.length > 0 && ids.length % windows.length === 0, 'ids', 'windows × seqlen ids', ids.length);
  check(table.length % vocab === 0, 'table', `a multiple of vocab (${vocab})`, table.length);
  const hidden = table.length / vocab;
  const seqlen = ids.length / windows.length;
  windows.forEach((w, i) => checkLength(w, `windows[${i}]`, seqlen * hidden));
  await callNative('embed', ids, table, vocab, windows);
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
  checkTypedArrays(windows, 'windows', 'Float32Array', seqlen * dims.hidden);
  return callNative('decoderLayer', windows, w, dims, seqlen);
}

/** A decoder layer's nine fp32 weights, each of its shape for `dims`. */
export function checkLayerWeights(w: LayerWeightsF32, dims: NativeDims): void {
  checkObject(w, 'weights');
  const { hidden: H, ffn: F } = dims;
  const qd = dims.heads * dims.headDim;
  const kvd = dims.kvHeads * dims.headDim;
  const expected: Record<keyof LayerWeightsF32, number> = {
    inputNorm: H, q: qd * H, k: kvd * H, v: kvd * H, o: H * qd,
    postNorm: H, gate: F * H, up: F * H, down: H * F,
  };
  for (const key of Object.keys(expected) as (keyof LayerWeightsF32)[]) checkType(w[key], `weights.${key}`, 'Float32Array', expected[key]);
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
  checkTypedArrays(windows, 'windows', 'Float32Array', seqlen * dims.hidden);
  checkType(ids, 'ids', 'Int32Array', windows.length * seqlen);
  checkType(norm, 'norm', 'Float32Array', dims.hidden);
  checkType(lmHead, 'lmHead', 'Float32Array');
  check(lmHead.length > 0 && lmHead.length % dims.hidden === 0, 'lmHead', `a multiple of hidden (${dims.hidden})`, lmHead.length);
  return callNative('windowNll', windows, ids, norm, lmHead, dims, seqlen);
}

export type GemmVariant = (typeof NATIVE_ENUMS.gemmVariant)[number];

/** C[M×N] = A[M×K] · B[N×K]ᵀ with one of the kernel variants (used by tests and benchmarks). */
export async function gemmNt(
  a: Float32Array, b: Float32Array, m: number, n: number, k: number, variant: GemmVariant,
): Promise<Float32Array> {
  checkInteger(m, 'M');
  checkInteger(n, 'N');
  checkInteger(k, 'K');
  checkOneOf(variant, 'variant', NATIVE_ENUMS.gemmVariant);
  checkType(a, 'A', 'Float32Array', m * k);
  checkType(b, 'B', 'Float32Array', n * k);
  return callNative('gemmNt', a, b, m, n, k, variant);
}

/** Measured fp32 FMA throughput (FLOP/s) of all worker threads together. */
export async function peakFlops(seconds = 1): Promise<number> {
  checkNumber(seconds, 'seconds');
  check(seconds > 0 && seconds <= 60, 'seconds', 'a duration in (0, 60]', seconds);
  return callNative('peakFlops', seconds);
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
  checkObject(o, 'options');
  check([2, 3, 4, 8].includes(o.bits), 'bits', '2, 3, 4 or 8', o.bits);
  for (const key of ['actOrder', 'staticGroups', 'sym', 'mse'] as const) checkOptionalBoolean(o[key], key);
  check(o.groupSize === -1 || (Number.isInteger(o.groupSize) && o.groupSize > 0 && k % o.groupSize === 0),
    'groupSize', `-1 or a divisor of ${k}`, o.groupSize);
  check(Number.isFinite(o.dampPercent) && o.dampPercent >= 0, 'dampPercent', 'a number ≥ 0', o.dampPercent);
  check(Number.isInteger(o.blockSize) && o.blockSize > 0, 'blockSize', 'a positive integer', o.blockSize);
}

/** The GPTQ solve of one linear W [N×K] with Hessian H [K×K]; H = null gives round-to-nearest. */
export async function gptqQuantize(
  w: Float32Array, h: Float32Array | null, n: number, k: number, opts: GptqOptions,
): Promise<GptqSolve> {
  checkInteger(n, 'N', 1);
  checkInteger(k, 'K', 1);
  checkGptqOptions(opts, k);
  checkType(w, 'W', 'Float32Array', n * k);
  if (h !== null) checkType(h, 'H', 'Float32Array', k * k);
  return callNative('gptqQuantize', w, h, n, k, opts);
}

/** XᵀX of X [T×K]: blocked symmetric kernel, or the fp64 reference loop. */
export async function xtx(x: Float32Array, t: number, k: number, reference: boolean): Promise<Float32Array> {
  checkInteger(t, 'T');
  checkInteger(k, 'K');
  checkBoolean(reference, 'reference');
  checkType(x, 'X', 'Float32Array', t * k);
  return callNative('xtx', x, t, k, reference);
}

/** Upper Cholesky factor of H⁻¹ (fast route or the reference's three steps); null if H is not PD. */
export async function upperCholeskyOfInverse(h: Float64Array, k: number, reference: boolean): Promise<Float64Array | null> {
  checkInteger(k, 'K');
  checkBoolean(reference, 'reference');
  checkType(h, 'H', 'Float64Array', k * k);
  return callNative('upperCholeskyOfInverse', h, k, reference);
}

/** QEP's cross term (Xf − X)ᵀ X of X, Xf [T×K]: blocked fp32 kernel, or the fp64 reference loop. */
export async function crossTerm(xf: Float32Array, x: Float32Array, t: number, k: number, reference: boolean): Promise<Float32Array> {
  checkInteger(t, 'T');
  checkInteger(k, 'K');
  checkBoolean(reference, 'reference');
  checkType(xf, 'Xf', 'Float32Array', t * k);
  checkType(x, 'X', 'Float32Array', t * k);
  return callNative('crossTerm', xf, x, t, k, reference);
}

/** QEP's corrected weights W* = W + α W C (H + λI)⁻¹ (fp32, before the layer's fp16 rounding). */
export interface QepCorrection {
  w: Float32Array;
  /** λ's damp_percent as used (raised while H + λI was not positive definite). */
  dampPercent: number;
  dampRaises: number;
}

/**
 * QEP's weight correction of W [N×K] from H, C [K×K] (native/kernels/cpu/qep.h): the optimised
 * route (fp32 W·C, fp64 Cholesky solves) or the fp64 reference (Gaussian elimination).
 */
export async function qepCorrect(
  w: Float32Array, h: Float32Array, c: Float32Array, n: number, k: number, alpha: number, dampPercent: number, reference: boolean,
): Promise<QepCorrection> {
  checkInteger(n, 'N', 1);
  checkInteger(k, 'K', 1);
  checkAlpha(alpha, 'alpha');
  check(typeof dampPercent === 'number' && dampPercent >= 0 && dampPercent < 1, 'dampPercent', 'a number in [0, 1)', dampPercent);
  checkBoolean(reference, 'reference');
  checkType(w, 'W', 'Float32Array', n * k);
  checkType(h, 'H', 'Float32Array', k * k);
  checkType(c, 'C', 'Float32Array', k * k);
  return callNative('qepCorrect', w, h, c, n, k, alpha, dampPercent, reference);
}

export * from './pack';
export * from './cpu-layer';
export { debugEnabled, nativeCallCounts } from './addon';
export * from './cuda';
export * from './cuda-eval';
