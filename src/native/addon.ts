/**
 * The native addon's whole surface, typed in one place, its loader, and THE one path every
 * addon call takes (invoke, through callNative or nativeCallAt). test/native/boundary.test.ts
 * checks this list against the binary's exports and the enum tables against the addon's.
 *
 * Native errors carry the JavaScript stack of the call: the caller's stack is captured before
 * the call and appended to the error's stack when the call throws or its promise rejects (as
 * sharp's is.nativeError), so GPTQ_FORGE_DEBUG=1 shows where in JS a failing call came from.
 */
import * as path from 'node:path';
import type {
  GptqOptions, GptqSolve, LayerWeightsF32, NativeDims, PackedGptq, QepCorrection, UnpackedGptq, WindowNll,
} from './index';
import type { CpuLayerConfig, CpuLayerResult, CpuLayerWindows, NativeLayerPlan } from './cpu-layer';
import type {
  CudaInfo, CudaLayerConfig, CudaLayerDims, CudaLayerResult, CudaLayerShape, CudaSolveConfig, WeightEntry,
} from './cuda';
import type { CudaEvalDims, EvalEntry, EvalHeadResult, EvalLayerLayout, EvalLayerResult } from './cuda-eval';

/**
 * The enums that cross the boundary by name, in the addon's order (the C++ tables in
 * native/bindings/enums.h, cuda_session.h, host_read.h and cuda_eval.cc; exported as `enums`).
 */
export const NATIVE_ENUMS = {
  /** nonFinite's element types. */
  dtype: ['F16', 'BF16', 'F32'],
  gemmVariant: ['reference', 'tiled', 'parallel'],
  packVariant: ['reference', 'optimised'],
  /** CUDA: the parts of a layer's weights in a session slot. */
  weightPart: ['qkv', 'o', 'gateUp', 'down', 'inputNorm', 'postNorm'],
  /** CUDA: the dtypes of a session slot's entries, and of an eval slot's. */
  weightDtype: ['F16', 'BF16', 'F32'],
  evalDtype: ['F16', 'BF16', 'F32', 'I32'],
  /** CUDA: the order of EvalLayerLayout.linears (positional, not by name). */
  evalLinear: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
} as const;
export type NativeEnums = { -readonly [K in keyof typeof NATIVE_ENUMS]: string[] };

/** A CUDA quantizer session (cuda.cc): an external handle the addon type-tags. */
export interface CudaSessionHandle { readonly __nativeHandle: 'CudaSession' }
/** A CUDA eval session (cuda_eval.cc). */
export interface CudaEvalHandle { readonly __nativeHandle: 'CudaEvalSession' }

/** Every export of build/Release/gptq_forge.node. The CUDA members exist only in a CUDA build. */
export interface Addon {
  threads: number;
  cudaBuilt: boolean;
  /** The enum tables the addon parses names with (the CUDA ones in a CUDA build only). */
  enums: Pick<NativeEnums, 'dtype' | 'gemmVariant' | 'packVariant'> & Partial<NativeEnums>;
  f16ToF32(src: Uint16Array, dst: Float32Array): Promise<number>;
  f32ToF16(src: Float32Array, dst: Uint16Array): Promise<number>;
  bf16ToF32(src: Uint16Array, dst: Float32Array): Promise<number>;
  nonFinite(src: Uint16Array | Float32Array, dtype: (typeof NATIVE_ENUMS.dtype)[number]): Promise<number>;
  embed(ids: Int32Array, table: Float32Array, vocab: number, windows: Float32Array[]): Promise<void>;
  decoderLayer(windows: Float32Array[], w: LayerWeightsF32, dims: NativeDims, seqlen: number): Promise<number>;
  windowNll(
    windows: Float32Array[], ids: Int32Array, norm: Float32Array, lmHead: Float32Array,
    dims: NativeDims, seqlen: number,
  ): Promise<WindowNll>;
  gemmNt(a: Float32Array, b: Float32Array, m: number, n: number, k: number,
    variant: (typeof NATIVE_ENUMS.gemmVariant)[number]): Promise<Float32Array>;
  peakFlops(seconds: number): Promise<number>;
  cpuQuantizeLayer(
    w: LayerWeightsF32, dims: NativeDims, windows: CpuLayerWindows | null, opts: GptqOptions,
    cfg: CpuLayerConfig, plan: NativeLayerPlan,
  ): Promise<CpuLayerResult>;
  gptqQuantize(w: Float32Array, h: Float32Array | null, n: number, k: number, opts: GptqOptions): Promise<GptqSolve>;
  xtx(x: Float32Array, t: number, k: number, reference: boolean): Promise<Float32Array>;
  upperCholeskyOfInverse(h: Float64Array, k: number, reference: boolean): Promise<Float64Array | null>;
  crossTerm(xf: Float32Array, x: Float32Array, t: number, k: number, reference: boolean): Promise<Float32Array>;
  qepCorrect(
    w: Float32Array, h: Float32Array, c: Float32Array, n: number, k: number, alpha: number, dampPercent: number, reference: boolean,
  ): Promise<QepCorrection>;
  packGptq(codes: Uint8Array, zeros: Int32Array, bits: number, k: number, n: number,
    variant: (typeof NATIVE_ENUMS.packVariant)[number]): Promise<PackedGptq>;
  unpackGptq(qweight: Int32Array, qzeros: Int32Array, bits: number, k: number, n: number, g: number): Promise<UnpackedGptq>;
  dequantizeGptq(
    qweight: Int32Array, qzeros: Int32Array, scales: Uint16Array, gIdx: Int32Array,
    bits: number, k: number, n: number, round16: boolean, variant: (typeof NATIVE_ENUMS.packVariant)[number],
  ): Promise<Float32Array>;
  // ---- CUDA engine (native/bindings/cuda.cc, cuda_weights.cc) ----
  cudaInfo?(): Omit<CudaInfo, 'built'>;
  cudaGptqQuantize?(w: Float32Array, h: Float32Array, n: number, k: number, o: GptqOptions, c: CudaSolveConfig): Promise<GptqSolve>;
  cudaSessionCreate?(x: Uint16Array, tokens: number, seqlen: number, hidden: number, xf?: Uint16Array | null): Promise<CudaSessionHandle>;
  cudaSessionRead?(s: CudaSessionHandle, dst: Uint16Array, firstToken: number, fp?: boolean): Promise<void>;
  cudaSessionLoad?(s: CudaSessionHandle, slot: number, shape: CudaLayerShape, entries: WeightEntry[]): Promise<number[]>;
  cudaQuantizeLayer?(
    s: CudaSessionHandle, slot: number, d: CudaLayerDims, o: GptqOptions, c: CudaLayerConfig, plan: NativeLayerPlan,
  ): Promise<CudaLayerResult>;
  cudaSessionFree?(s: CudaSessionHandle): void;
  // ---- CUDA inference path (native/bindings/cuda_eval.cc) ----
  cudaEvalCreate?(ids: Int32Array, dims: CudaEvalDims, seqlen: number, slotBytes: number, chunkWindows: number): Promise<CudaEvalHandle>;
  cudaEvalLoad?(s: CudaEvalHandle, slot: number, entries: EvalEntry[]): Promise<number[]>;
  cudaEvalEmbed?(s: CudaEvalHandle, slot: number, tableAt: number): Promise<{ badIds: number; seconds: number }>;
  cudaEvalLayer?(s: CudaEvalHandle, slot: number, layout: EvalLayerLayout): Promise<EvalLayerResult>;
  cudaEvalHead?(s: CudaEvalHandle, slot: number, normAt: number, headAt: number): Promise<EvalHeadResult>;
  cudaEvalFree?(s: CudaEvalHandle): void;
}

/**
 * Every member of Addon, by build: 'always' ones every binary exports, 'cuda' ones only a CUDA
 * build. (A Record over keyof Addon: the compiler rejects a missing or an extra key.)
 */
export const ADDON_MEMBERS: Record<keyof Addon, 'always' | 'cuda'> = {
  threads: 'always', cudaBuilt: 'always', enums: 'always',
  f16ToF32: 'always', f32ToF16: 'always', bf16ToF32: 'always', nonFinite: 'always', embed: 'always',
  decoderLayer: 'always', windowNll: 'always', gemmNt: 'always', peakFlops: 'always', cpuQuantizeLayer: 'always',
  gptqQuantize: 'always', xtx: 'always', upperCholeskyOfInverse: 'always', crossTerm: 'always', qepCorrect: 'always',
  packGptq: 'always',
  unpackGptq: 'always', dequantizeGptq: 'always',
  cudaInfo: 'cuda', cudaGptqQuantize: 'cuda', cudaSessionCreate: 'cuda', cudaSessionRead: 'cuda',
  cudaSessionLoad: 'cuda', cudaQuantizeLayer: 'cuda', cudaSessionFree: 'cuda',
  cudaEvalCreate: 'cuda', cudaEvalLoad: 'cuda', cudaEvalEmbed: 'cuda', cudaEvalLayer: 'cuda',
  cudaEvalHead: 'cuda', cudaEvalFree: 'cuda',
};

/** The addon's file (tests load it directly to compare its exports with ADDON_MEMBERS). */
export const ADDON_FILE = path.resolve(__dirname, '../../build/Release/gptq_forge.node');

let addon: Addon | undefined;

function load(): Addon {
  if (!addon) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = require(ADDON_FILE) as Addon;
    } catch (e) {
      throw new Error(
        `native addon not built (${ADDON_FILE}): run \`npm run build:native\` (${(e as Error).message.split('\n')[0]})`,
      );
    }
  }
  return addon;
}

/** The addon's values (no functions: every call goes through callNative). */
export interface NativeConstants {
  threads: number;
  cudaBuilt: boolean;
  enums: Addon['enums'];
}

export function nativeConstants(): NativeConstants {
  const a = load();
  return { threads: a.threads, cudaBuilt: a.cudaBuilt, enums: a.enums };
}

type AnyFn = (...args: never[]) => unknown;
/** The names of the addon's functions. */
export type NativeFunction = { [K in keyof Addon]-?: NonNullable<Addon[K]> extends AnyFn ? K : never }[keyof Addon];
type NativeFn<K extends NativeFunction> = NonNullable<Addon[K]> extends (...args: infer A) => infer R ? (...args: A) => R : never;

export const NO_CUDA = 'the native addon was built without the CUDA backend (no nvcc/cuBLAS/cuSOLVER at build time)';

const calls = new Map<string, number>();

/** How many native addon calls this process has made so far, by function name. */
export function nativeCallCounts(): Record<string, number> {
  return Object.fromEntries(calls);
}

/** Whether GPTQ_FORGE_DEBUG (a comma-separated list of words) names `word`, e.g. native-calls. */
export function debugEnabled(word: string): boolean {
  return (process.env.GPTQ_FORGE_DEBUG ?? '').split(',').map((w) => w.trim()).includes(word);
}

/** The caller's stack, captured now (formatted only if an error needs it). */
interface CallSite { stack?: string }

function callSite(above: AnyFn): CallSite {
  const site: CallSite = {};
  Error.captureStackTrace(site, above);
  return site;
}

/** Appends the JS frames of the call site to a native error's stack; the message is kept. */
function withJsStack(e: unknown, name: string, site: CallSite): unknown {
  if (typeof e !== 'object' || e === null) return e;
  const err = e as { stack?: unknown; message?: unknown };
  const frames = (site.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
  const head = typeof err.stack === 'string' ? err.stack : `Error: ${String(err.message)}`;
  try {
    err.stack = `${head}\n    at <native ${name}> (gptq_forge.node)\n${frames.join('\n')}`;
  } catch {
    // a frozen error keeps its own stack
  }
  return e;
}

/**
 * THE one place every addon call passes through (callNative, nativeCallAt): looks the function
 * up (a missing CUDA member is a clear error), calls it, and gives any error, thrown or as a
 * rejection, the JS stack of the call site; counts the call (nativeCallCounts).
 */
function invoke<K extends NativeFunction>(name: K, args: unknown[], site: CallSite): ReturnType<NativeFn<K>> {
  const a = load();
  calls.set(name, (calls.get(name) ?? 0) + 1);
  const fn = a[name] as unknown as ((...xs: unknown[]) => unknown) | undefined;
  if (typeof fn !== 'function') throw withJsStack(new Error(`${NO_CUDA}: ${name}`), name, site);
  let result: unknown;
  try {
    result = fn.apply(a, args);
  } catch (e) {
    throw withJsStack(e, name, site);
  }
  // A promise of the addon (its realm's Promise, not necessarily ours: tested by shape).
  if (typeof (result as { then?: unknown } | null)?.then === 'function') {
    return (result as Promise<unknown>).then(undefined, (e: unknown) => {
      throw withJsStack(e, name, site);
    }) as ReturnType<NativeFn<K>>;
  }
  return result as ReturnType<NativeFn<K>>;
}

/** Calls the addon's function `name` now, with the caller's stack attached to any error. */
export function callNative<K extends NativeFunction>(name: K, ...args: Parameters<NativeFn<K>>): ReturnType<NativeFn<K>> {
  return invoke(name, args, callSite(callNative));
}

/**
 * The addon's function `name` bound to the caller's stack as of now, for a call made later
 * (a job queued behind others): its errors show where it was asked for.
 */
export function nativeCallAt<K extends NativeFunction>(name: K): (...args: Parameters<NativeFn<K>>) => ReturnType<NativeFn<K>> {
  const site = callSite(nativeCallAt);
  return (...args) => invoke(name, args, site);
}

/** Whether the loaded addon has function `name` (the CUDA members in a CUDA build only). */
export function nativeHas(name: NativeFunction): boolean {
  return typeof load()[name] === 'function';
}
