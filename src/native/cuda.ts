/**
 * The CUDA engine's calls (native/bindings/cuda.cc), present when the addon was built where a
 * CUDA toolkit with cuBLAS and cuSOLVER was found. Loaded through ./index (the one loader);
 * arguments are validated here first (name, expected, got).
 */
import {
  check, checkGptqOptions, checkLength, GptqOptions, GptqSolve, nativeAddon, NativeDims,
} from './index';

export interface CudaInfo {
  /** The addon was built with the CUDA backend. */
  built: boolean;
  devices: number;
  name?: string;
  totalMemory?: number;
  error?: string;
}

/** Precision choices of the GPU solve (defaults: fp64 Cholesky, fp32 updates, as the CPU engine). */
export interface CudaSolveConfig {
  /** Trailing updates on the tensor cores in tf32 (~3e-4 relative error in the updates). */
  tf32?: boolean;
  /** Cholesky/inverse in fp32 (the authors' torch precision) instead of fp64. */
  cholFp32?: boolean;
}

export interface CudaLayerConfig extends CudaSolveConfig {
  /** Device memory (GB) the layer may use for keeping step-4 activations for step 5 (default 40). */
  memBudgetGb?: number;
  /** Return each linear's dequantized weights (fp16 bits) as q16. */
  wantQ?: boolean;
}

/** Layer dimensions the CUDA layer call needs: the CPU kernels' less round16 (fp16 activations throughout). */
export type CudaLayerDims = Omit<NativeDims, 'round16'>;

/** One decoder layer's fp16 weights (bits), row-major [out, in]; stacks as the GPU solves them. */
export interface CudaLayerWeights {
  /** [q; k; v] rows: [(heads + 2·kvHeads)·headDim, hidden] */
  qkv: Uint16Array;
  o: Uint16Array;
  /** [gate; up] rows: [2·ffn, hidden] */
  gateUp: Uint16Array;
  down: Uint16Array;
  inputNorm: Uint16Array;
  postNorm: Uint16Array;
}

export interface CudaLinear extends Omit<GptqSolve, 'q'> {
  name: string;
  n: number;
  k: number;
  /** The stack's Cholesky + solve seconds (shared by its members). */
  seconds: number;
  q16?: Uint16Array;
}

export interface CudaLayerResult {
  /** In the reference's order: k, v, q, o, up, gate, down. */
  linears: CudaLinear[];
  times: { forward: number; attention: number; hessian: number; cholesky: number; solve: number; copyOut: number; peakBuffersGb: number };
}

interface CudaAddon {
  cudaBuilt: boolean;
  cudaInfo?(): Omit<CudaInfo, 'built'>;
  cudaGptqQuantize?(w: Float32Array, h: Float32Array, n: number, k: number, o: GptqOptions, c: CudaSolveConfig): Promise<GptqSolve>;
  cudaSessionCreate?(x: Uint16Array, tokens: number, seqlen: number, hidden: number): Promise<object>;
  cudaSessionRead?(s: object): Promise<Uint16Array>;
  cudaQuantizeLayer?(s: object, w: CudaLayerWeights, d: CudaLayerDims, o: GptqOptions, c: CudaLayerConfig): Promise<CudaLayerResult>;
  cudaSessionFree?(s: object): void;
}

function cuda(): CudaAddon {
  return nativeAddon() as CudaAddon;
}

function required<K extends keyof CudaAddon>(key: K): NonNullable<CudaAddon[K]> {
  const f = cuda()[key];
  if (!f) throw new Error('the native addon was built without the CUDA backend (no nvcc/cuBLAS/cuSOLVER at build time)');
  return f as NonNullable<CudaAddon[K]>;
}

export function cudaInfo(): CudaInfo {
  const a = cuda();
  if (!a.cudaBuilt || !a.cudaInfo) return { built: false, devices: 0 };
  return { built: true, ...a.cudaInfo() };
}

/** The CUDA engine can run here: built with it, and a device is visible. */
export function cudaAvailable(): boolean {
  const i = cudaInfo();
  return i.built && i.devices > 0;
}

/** The GPTQ solve of one linear on the GPU: same inputs and result as gptqQuantize (H required; no mse). */
export async function cudaGptqQuantize(
  w: Float32Array, h: Float32Array, n: number, k: number, opts: GptqOptions, cfg: CudaSolveConfig = {},
): Promise<GptqSolve> {
  checkGptqOptions(opts, k);
  check(opts.blockSize === 128, 'blockSize', '128 on the GPU', opts.blockSize);
  check(!opts.mse, 'mse', 'false on the GPU', opts.mse);
  checkLength(w, 'W', n * k);
  checkLength(h, 'H', k * k);
  return required('cudaGptqQuantize')(w, h, n, k, opts, cfg);
}

/**
 * Calibration activations held on the GPU across layers: each quantizeLayer call quantizes one
 * decoder layer (true-sequential) and replaces the activations by the layer's outputs. Calls
 * are queued one after another; free() releases the GPU memory (also done by GC).
 */
export class CudaSession {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(private handle: object, readonly tokens: number, readonly seqlen: number, readonly hidden: number) {}

  /** x: fp16 bits [tokens × hidden], tokens a whole number of windows of seqlen. */
  static async create(x: Uint16Array, tokens: number, seqlen: number, hidden: number): Promise<CudaSession> {
    check(Number.isInteger(seqlen) && seqlen >= 2, 'seqlen', 'an integer ≥ 2', seqlen);
    check(Number.isInteger(tokens) && tokens > 0 && tokens % seqlen === 0, 'tokens', `a positive multiple of ${seqlen}`, tokens);
    check(Number.isInteger(hidden) && hidden > 0 && hidden % 8 === 0, 'hidden', 'a positive multiple of 8', hidden);
    checkLength(x, 'x', tokens * hidden);
    const h = await required('cudaSessionCreate')(x, tokens, seqlen, hidden);
    return new CudaSession(h, tokens, seqlen, hidden);
  }

  private run<T>(job: () => Promise<T>): Promise<T> {
    const p = this.queue.then(job);
    this.queue = p.catch(() => undefined);
    return p;
  }

  quantizeLayer(w: CudaLayerWeights, d: CudaLayerDims, opts: GptqOptions, cfg: CudaLayerConfig = {}): Promise<CudaLayerResult> {
    check(d.hidden === this.hidden, 'dims.hidden', `${this.hidden} (the session's)`, d.hidden);
    check(d.heads % d.kvHeads === 0, 'dims.heads', `a multiple of kvHeads (${d.kvHeads})`, d.heads);
    checkGptqOptions(opts, d.hidden);
    checkGptqOptions(opts, d.ffn);
    check(opts.blockSize === 128, 'blockSize', '128 on the GPU', opts.blockSize);
    check(!opts.mse, 'mse', 'false on the GPU', opts.mse);
    const qd = d.heads * d.headDim, kvd = d.kvHeads * d.headDim;
    checkLength(w.qkv, 'weights.qkv', (qd + 2 * kvd) * d.hidden);
    checkLength(w.o, 'weights.o', d.hidden * qd);
    checkLength(w.gateUp, 'weights.gateUp', 2 * d.ffn * d.hidden);
    checkLength(w.down, 'weights.down', d.hidden * d.ffn);
    checkLength(w.inputNorm, 'weights.inputNorm', d.hidden);
    checkLength(w.postNorm, 'weights.postNorm', d.hidden);
    return this.run(() => required('cudaQuantizeLayer')(this.handle, w, d, opts, cfg));
  }

  /** The activations now held (fp16 bits [tokens × hidden]). */
  read(): Promise<Uint16Array> {
    return this.run(() => required('cudaSessionRead')(this.handle));
  }

  free(): Promise<void> {
    return this.run(async () => required('cudaSessionFree')(this.handle));
  }
}
