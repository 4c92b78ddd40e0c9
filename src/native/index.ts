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
  f16ToF32(src: Uint16Array, dst: Float32Array): Promise<void>;
  embed(ids: Int32Array, table: Float32Array, vocab: number, windows: Float32Array[]): Promise<void>;
  decoderLayer(windows: Float32Array[], w: LayerWeightsF32, dims: NativeDims, seqlen: number): Promise<void>;
  windowNll(
    windows: Float32Array[], ids: Int32Array, norm: Float32Array, lmHead: Float32Array,
    dims: NativeDims, seqlen: number,
  ): Promise<WindowNll>;
  gemmNt(a: Float32Array, b: Float32Array, m: number, n: number, k: number, variant: number): Promise<Float32Array>;
  peakFlops(seconds: number): Promise<number>;
}

let addon: Addon | undefined;

function load(): Addon {
  if (!addon) {
    const file = path.resolve(__dirname, '../../build/Release/gptq_forge.node');
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = require(file) as Addon;
    } catch (e) {
      throw new Error(
        `native addon not built (${file}): run \`npm run build:native\` (${(e as Error).message.split('\n')[0]})`,
      );
    }
  }
  return addon;
}

/** Worker threads the native kernels use (GPTQ_FORGE_THREADS or all cores). */
export function nativeThreads(): number {
  return load().threads;
}

function check(cond: boolean, what: string, expected: string, got: unknown): void {
  if (!cond) throw new RangeError(`${what}: expected ${expected}, got ${String(got)}`);
}

function checkLength(arr: ArrayLike<unknown>, what: string, expected: number): void {
  check(arr.length === expected, what, `${expected} elements`, arr.length);
}

function checkDims(d: NativeDims): void {
  for (const key of ['hidden', 'ffn', 'heads', 'kvHeads', 'headDim'] as const) {
    check(Number.isInteger(d[key]) && d[key] > 0, `dims.${key}`, 'a positive integer', d[key]);
  }
  check(d.heads % d.kvHeads === 0, 'dims.heads', `a multiple of kvHeads (${d.kvHeads})`, d.heads);
  check(d.headDim % 2 === 0, 'dims.headDim', 'an even number', d.headDim);
}

function checkSeqlen(seqlen: number): void {
  check(Number.isInteger(seqlen) && seqlen >= 2, 'seqlen', 'an integer ≥ 2', seqlen);
}

/** Converts fp16 bits to fp32 values (multi-threaded). */
export async function f16ToF32(src: Uint16Array): Promise<Float32Array> {
  const dst = new Float32Array(src.length);
  await load().f16ToF32(src, dst);
  return dst;
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

/** Runs one decoder layer over every window, in place. */
export async function decoderLayer(
  windows: Float32Array[], w: LayerWeightsF32, dims: NativeDims, seqlen: number,
): Promise<void> {
  checkDims(dims);
  checkSeqlen(seqlen);
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
  windows.forEach((x, i) => checkLength(x, `windows[${i}]`, seqlen * H));
  await load().decoderLayer(windows, w, dims, seqlen);
}

export interface WindowNll {
  /** −log p(next token) for each window's seqlen − 1 targets: [windows × (seqlen − 1)]. */
  nll: Float32Array;
  /** The most likely next token at every position: [windows × seqlen]. */
  argmax: Int32Array;
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
