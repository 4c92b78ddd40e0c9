/**
 * The CUDA engine's calls (native/bindings/cuda.cc), present when the addon was built where a
 * CUDA toolkit with cuBLAS and cuSOLVER was found. Every call goes through ./addon (the one
 * loader and call path); arguments are validated here first (name, expected, got).
 */
import { callNative, CudaSessionHandle, NATIVE_ENUMS, nativeCallAt, nativeConstants, nativeHas } from './addon';
import {
  check, checkAlpha, checkInteger, checkNames, checkNumber, checkObject, checkOneOf, checkOptionalBoolean, checkString, checkType,
} from './check';
import { checkPlanShape, NativeLayerPlan } from './cpu-layer';
import { checkGptqOptions, GptqOptions, GptqSolve, NativeDims } from './index';

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
  /** Return each linear's codes, fp32 scales and zeros (default true). */
  wantCodes?: boolean;
  /** Return each linear's AutoGPTQ tensors packed on the GPU. */
  wantPacked?: boolean;
  /**
   * QEP (docs/gptq.md, "QEP"; native/kernels/cuda/qep.h): α in [0, 1] and the linears whose W
   * becomes W* = W + α W C (H + λI)⁻¹ (not mlp.down_proj on the GPU). Exactly when the session
   * was created with the fp16 path (xf); the layer call then also carries it through the layer.
   */
  qep?: { alpha: number; linears: readonly string[] } | null;
  /**
   * GPTAQ (docs/gptq.md, "GPTAQ"; native/kernels/cuda/gptq.h GptaqDevice): α in [0, 1]; every
   * stack's solve takes its group's cross term (down_proj's included). Not with qep; exactly when
   * the session was created with the fp16 path (xf), as qep.
   */
  gptaq?: { alpha: number } | null;
}

/** Linears the CUDA engine cannot correct with QEP (its ffn × ffn cross term is never formed). */
export const CUDA_QEP_UNCORRECTED: readonly string[] = Object.freeze(['mlp.down_proj']);

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

/** The parts of a layer's weights in a session slot (they cross by name; cuda_session.h). */
export const WEIGHT_PARTS = NATIVE_ENUMS.weightPart;
export type WeightPart = (typeof WEIGHT_PARTS)[number];

/** The shape of one layer's weights: the layer dims less what only the forward needs. */
export type CudaLayerShape = Pick<CudaLayerDims, 'hidden' | 'ffn' | 'heads' | 'kvHeads' | 'headDim'>;

/**
 * One tensor's place in a slot: `count` values land, as fp16, from element `at` of `part`.
 * From a file: `bytes` at absolute byte `offset` (a safetensors shard); or from memory: `data`.
 */
export type WeightEntry = { name: string; part: WeightPart; at: number; count: number; dtype: 'F16' | 'BF16' | 'F32' } & (
  { file: string; offset: number } | { data: Uint16Array | Float32Array }
);

/** The element count of each part for a layer shape. */
export function weightPartCounts(d: CudaLayerShape): Record<WeightPart, number> {
  const qd = d.heads * d.headDim, kvd = d.kvHeads * d.headDim;
  return {
    qkv: (qd + 2 * kvd) * d.hidden, o: d.hidden * qd, gateUp: 2 * d.ffn * d.hidden, down: d.hidden * d.ffn,
    inputNorm: d.hidden, postNorm: d.hidden,
  };
}

/** The GPU-packed AutoGPTQ tensors of one linear (qweight, qzeros, fp16 scales as bits). */
export interface PackedLinear {
  qweight: Int32Array;
  qzeros: Int32Array;
  scales: Uint16Array;
}

export interface CudaLinear extends Omit<GptqSolve, 'q' | 'codes' | 'scales' | 'zeros'> {
  name: string;
  n: number;
  k: number;
  /** The stack's Cholesky + solve seconds (shared by its members). */
  seconds: number;
  /** With wantCodes (the default). */
  codes?: Uint8Array;
  scales?: Float32Array;
  zeros?: Int32Array;
  /** With wantPacked. */
  packed?: PackedLinear;
}

export interface CudaLayerResult {
  /** In the plan's order (the reference's: k, v, q, o, up, gate, down). */
  linears: CudaLinear[];
  times: { forward: number; attention: number; hessian: number; cholesky: number; solve: number; copyOut: number; peakBuffersGb: number;
    /** QEP's corrections (the cross terms are in hessian, the fp16 path's forward in forward). */
    qep: number };
}

export function cudaInfo(): CudaInfo {
  if (!nativeConstants().cudaBuilt || !nativeHas('cudaInfo')) return { built: false, devices: 0 };
  return { built: true, ...callNative('cudaInfo') };
}

function checkSolveConfig(c: CudaSolveConfig, what = 'config'): void {
  checkObject(c, what);
  for (const key of ['tf32', 'cholFp32'] as const) checkOptionalBoolean(c[key], `${what}.${key}`);
}

/** A CUDA layer call's config (exported for tests): solve precision, memBudgetGb, wantCodes/wantPacked, qep, gptaq. */
export function checkLayerConfig(c: CudaLayerConfig): void {
  checkSolveConfig(c);
  for (const key of ['wantCodes', 'wantPacked'] as const) checkOptionalBoolean(c[key], `config.${key}`);
  if (c.memBudgetGb !== undefined) {
    checkNumber(c.memBudgetGb, 'config.memBudgetGb');
    check(c.memBudgetGb >= 0, 'config.memBudgetGb', 'a number ≥ 0', c.memBudgetGb);
  }
  const qep = c.qep ?? null;
  if (qep !== null) {
    checkObject(qep, 'config.qep');
    checkAlpha(qep.alpha, 'config.qep.alpha');
    checkNames(qep.linears, 'config.qep.linears');
    const bad = qep.linears.find((l) => CUDA_QEP_UNCORRECTED.includes(l));
    check(bad === undefined, 'config.qep.linears', 'linears the CUDA engine corrects (not mlp.down_proj)', bad);
  }
  const gptaq = c.gptaq ?? null;
  if (gptaq !== null) {
    checkObject(gptaq, 'config.gptaq');
    check(qep === null, 'config.gptaq', 'null with config.qep (one correction toward the fp16 path at a time)', gptaq);
    checkAlpha(gptaq.alpha, 'config.gptaq.alpha');
  }
}

/** The shape fields of layer dims: positive integers, heads a multiple of kvHeads. */
function checkShape(d: CudaLayerShape, what: string): void {
  checkObject(d, what);
  for (const key of ['hidden', 'ffn', 'heads', 'kvHeads', 'headDim'] as const) checkInteger(d[key], `${what}.${key}`, 1);
  check(d.heads % d.kvHeads === 0, `${what}.heads`, `a multiple of kvHeads (${d.kvHeads})`, d.heads);
}

/** Layer dims of a CUDA call: the shape, eps and ropeTheta. */
export function checkCudaDims(d: CudaLayerDims, what = 'dims'): void {
  checkShape(d, what);
  checkNumber(d.eps, `${what}.eps`);
  checkNumber(d.ropeTheta, `${what}.ropeTheta`);
}

/** Why the CUDA engine cannot run here, in words for an error line; null when it can. */
export function cudaUnavailableReason(): string | null {
  const i = cudaInfo();
  if (!i.built) return 'the native addon was built without CUDA (no nvcc/cuBLAS/cuSOLVER at build time)';
  if (i.devices === 0) return `no CUDA device is visible (${i.error ?? 'none found'})`;
  return null;
}

/** The CUDA engine can run here: built with it, and a device is visible. */
export function cudaAvailable(): boolean {
  const i = cudaInfo();
  return i.built && i.devices > 0;
}

/** The GPTQ solve of one linear on the GPU: same inputs and result as gptqQuantize (H required; block size 128). */
export async function cudaGptqQuantize(
  w: Float32Array, h: Float32Array, n: number, k: number, opts: GptqOptions, cfg: CudaSolveConfig = {},
): Promise<GptqSolve> {
  checkInteger(n, 'N', 1);
  checkInteger(k, 'K', 1);
  checkGptqOptions(opts, k);
  check(opts.blockSize === 128, 'blockSize', '128 on the GPU', opts.blockSize);
  checkSolveConfig(cfg);
  checkType(w, 'W', 'Float32Array', n * k);
  checkType(h, 'H', 'Float32Array', k * k);
  return callNative('cudaGptqQuantize', w, h, n, k, opts, cfg);
}

/**
 * Calibration activations held on the GPU across layers: each quantizeLayer call quantizes one
 * decoder layer (true-sequential) and replaces the activations by the layer's outputs. Layer
 * weights go through two pinned host slots: load() fills one (read from disk on native threads)
 * while quantizeLayer works from the other. Layer calls are queued one after another; loads run
 * beside them (never load the slot of a pending layer call). free() releases the GPU and pinned
 * memory once every load has settled (also done by GC).
 */
export class CudaSession {
  private queue: Promise<unknown> = Promise.resolve();
  private loads = new Set<Promise<unknown>>();

  private constructor(
    private handle: CudaSessionHandle, readonly tokens: number, readonly seqlen: number, readonly hidden: number,
    /** Whether the session holds the fp16 path of QEP or GPTAQ (created with xf). */
    readonly fpPath: boolean,
  ) {}

  /**
   * x: fp16 bits [tokens × hidden], tokens a whole number of windows of seqlen. xf (QEP, GPTAQ):
   * the fp16 model's activations at the same point, the same size (its layer calls need
   * config.qep or config.gptaq).
   */
  static async create(x: Uint16Array, tokens: number, seqlen: number, hidden: number, xf: Uint16Array | null = null): Promise<CudaSession> {
    check(Number.isInteger(seqlen) && seqlen >= 2, 'seqlen', 'an integer ≥ 2', seqlen);
    check(Number.isInteger(tokens) && tokens > 0 && tokens % seqlen === 0, 'tokens', `a positive multiple of ${seqlen}`, tokens);
    check(Number.isInteger(hidden) && hidden > 0 && hidden % 8 === 0, 'hidden', 'a positive multiple of 8', hidden);
    checkType(x, 'x', 'Uint16Array', tokens * hidden);
    if (xf !== null) checkType(xf, 'xf', 'Uint16Array', tokens * hidden);
    const h = await callNative('cudaSessionCreate', x, tokens, seqlen, hidden, xf);
    return new CudaSession(h, tokens, seqlen, hidden, xf !== null);
  }

  private run<T>(job: () => Promise<T>): Promise<T> {
    const p = this.queue.then(job);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /**
   * Fills `slot` (0 or 1) with one layer's weights; every part must be covered. Resolves to
   * the entries whose values were not finite (after conversion to fp16), by name.
   */
  load(slot: number, shape: CudaLayerShape, entries: WeightEntry[]): Promise<{ name: string; nonFinite: number }[]> {
    checkInteger(slot, 'slot', 0, 1);
    checkShape(shape, 'shape');
    check(shape.hidden === this.hidden, 'shape.hidden', `${this.hidden} (the session's)`, shape.hidden);
    check(Array.isArray(entries), 'entries', 'an array', entries);
    const counts = weightPartCounts(shape);
    const covered = Object.fromEntries(WEIGHT_PARTS.map((p) => [p, 0])) as Record<WeightPart, number>;
    for (const e of entries) {
      checkObject(e, 'entries[]');
      checkOneOf(e.part, `${e.name}.part`, WEIGHT_PARTS);
      checkOneOf(e.dtype, `${e.name}.dtype`, NATIVE_ENUMS.weightDtype);
      check(Number.isInteger(e.at) && Number.isInteger(e.count) && e.at >= 0 && e.count > 0 && e.at + e.count <= counts[e.part],
        `${e.name}: elements [${e.at}, ${e.at + e.count})`, `within ${e.part}'s ${counts[e.part]}`, e.at + e.count);
      if ('data' in e) {
        const bytes = e.dtype === 'F32' ? 4 : 2;
        checkType(e.data, `${e.name}.data`, e.dtype === 'F32' ? 'Float32Array' : 'Uint16Array');
        check(e.data.byteLength === e.count * bytes, `${e.name}.data`, `${e.count * bytes} bytes`, e.data.byteLength);
      } else {
        checkString(e.file, `${e.name}.file`);
        checkInteger(e.offset, `${e.name}.offset`);
      }
      covered[e.part] += e.count;
    }
    for (const p of WEIGHT_PARTS) check(covered[p] === counts[p], `weights of ${p}`, `${counts[p]} values`, covered[p]);
    const job = callNative('cudaSessionLoad', this.handle, slot, shape, entries)
      .then((bad) => entries.map((e, i) => ({ name: e.name, nonFinite: bad[i] })).filter((b) => b.nonFinite > 0));
    const settled = job.catch(() => undefined);
    this.loads.add(settled);
    void settled.then(() => this.loads.delete(settled));
    return job;
  }

  /**
   * Quantizes one layer whose weights are in `slot` (see load), or given here (they go
   * through slot 0 first), in the order of `plan` (src/model/layer-plan.ts; checked natively).
   */
  async quantizeLayer(
    w: CudaLayerWeights | number, d: CudaLayerDims, opts: GptqOptions, cfg: CudaLayerConfig, plan: NativeLayerPlan,
  ): Promise<CudaLayerResult> {
    const quantize = nativeCallAt('cudaQuantizeLayer'); // its errors show this caller, not the queue
    checkPlanShape(plan);
    checkCudaDims(d);
    check(d.hidden === this.hidden, 'dims.hidden', `${this.hidden} (the session's)`, d.hidden);
    checkLayerConfig(cfg);
    const key = (cfg.gptaq ?? null) !== null ? 'gptaq' : 'qep';
    const fpPath = (cfg[key] ?? null) !== null;
    if (this.fpPath) check(fpPath, 'config.qep', 'QEP or GPTAQ settings (the session holds the fp16 path)', cfg.qep);
    else check(!fpPath, `config.${key}`, 'null (the session has no fp16 path)', cfg[key]);
    checkGptqOptions(opts, d.hidden);
    checkGptqOptions(opts, d.ffn);
    check(opts.blockSize === 128, 'blockSize', '128 on the GPU', opts.blockSize);
    let slot: number;
    if (typeof w === 'number') {
      slot = w;
      checkInteger(slot, 'slot', 0, 1);
    } else {
      checkObject(w, 'weights');
      const counts = weightPartCounts(d);
      for (const p of WEIGHT_PARTS) checkType(w[p], `weights.${p}`, 'Uint16Array', counts[p]);
      slot = 0;
      await this.run(() => this.load(0, d, WEIGHT_PARTS.map((p) => ({ name: p, part: p, at: 0, count: counts[p], dtype: 'F16', data: w[p] }))));
    }
    return this.run(() => quantize(this.handle, slot, d, opts, cfg, plan));
  }

  /**
   * The activations now held of `count` windows from window `first` (fp16 bits [count·seqlen ×
   * hidden]); with fp, the fp16 path's (QEP, GPTAQ: the session must hold it).
   */
  read(first = 0, count = this.tokens / this.seqlen, fp = false): Promise<Uint16Array> {
    const windows = this.tokens / this.seqlen;
    check(Number.isInteger(first) && first >= 0 && first < windows, 'first', `a window index below ${windows}`, first);
    check(Number.isInteger(count) && count > 0 && first + count <= windows, 'count', `1 to ${windows - first} windows`, count);
    check(typeof fp === 'boolean' && (!fp || this.fpPath), 'fp', this.fpPath ? 'a boolean' : 'false (the session has no fp16 path)', fp);
    const read = nativeCallAt('cudaSessionRead');
    return this.run(async () => {
      const dst = new Uint16Array(count * this.seqlen * this.hidden);
      await read(this.handle, dst, first * this.seqlen, fp);
      return dst;
    });
  }

  free(): Promise<void> {
    const free = nativeCallAt('cudaSessionFree');
    return this.run(async () => {
      await Promise.all(this.loads);
      free(this.handle);
    });
  }
}
