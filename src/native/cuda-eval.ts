/**
 * The CUDA inference path's calls (native/bindings/cuda_eval.cc): hidden states of every window
 * on the GPU in fp16, each decoder layer's tensors streamed through two pinned slots mirrored by
 * device arenas. Loaded through ./index (the one loader); arguments are validated here first
 * (name, expected, got).
 */
import { CudaLayerDims } from './cuda';
import { check, checkLength, nativeAddon } from './index';

/** What the eval session needs of the model: the layer dims plus the vocabulary. */
export type CudaEvalDims = CudaLayerDims & { vocab: number };

/** One tensor's bytes placed at byte `at` of a slot: floats land as fp16, I32 as is. */
export type EvalEntry = { name: string; at: number; count: number; dtype: 'F16' | 'BF16' | 'F32' | 'I32' } & (
  { file: string; offset: number } | { data: Uint16Array | Float32Array | Int32Array }
);

/** Where a decoder linear lies in a slot: an fp16 weight [N, K], or an AutoGPTQ v1 quadruple. */
export type EvalLinearPlace = { at: number } | { qweight: number; qzeros: number; scales: number; gIdx: number; groups: number };

export interface EvalLayerLayout {
  /** Bits of the GPTQ linears (absent for an fp16 layer). */
  bits?: number;
  /** q, k, v, o, gate, up, down. */
  linears: EvalLinearPlace[];
  inputNorm: number;
  postNorm: number;
}

export interface EvalLayerResult {
  /** NaN/Inf entries of the hidden states after the layer. */
  nonFinite: number;
  /** g_idx entries outside [0, groups) (read as group 0). */
  badGroups: number;
  /** Dequantized weights that came out NaN/Inf. */
  nonFiniteWeights: number;
  times: { gemm: number; attention: number; other: number; dequant: number };
  flops: { gemm: number; attention: number };
  deviceUsedGb: number;
}

export interface EvalHeadResult {
  /** −log p(next token) of every token; 0 at the last position of each window. */
  nll: Float64Array;
  nonFinite: number;
  seconds: number;
  flops: number;
  deviceUsedGb: number;
}

interface EvalAddon {
  cudaEvalCreate?(ids: Int32Array, dims: CudaEvalDims, seqlen: number, slotBytes: number, chunkWindows: number): Promise<object>;
  cudaEvalLoad?(s: object, slot: number, entries: object[]): Promise<number[]>;
  cudaEvalEmbed?(s: object, slot: number, tableAt: number): Promise<{ badIds: number; seconds: number }>;
  cudaEvalLayer?(s: object, slot: number, layout: EvalLayerLayout): Promise<EvalLayerResult>;
  cudaEvalHead?(s: object, slot: number, normAt: number, headAt: number): Promise<EvalHeadResult>;
  cudaEvalFree?(s: object): void;
}

function required<K extends keyof EvalAddon>(key: K): NonNullable<EvalAddon[K]> {
  const f = (nativeAddon() as EvalAddon)[key];
  if (!f) throw new Error('the native addon was built without the CUDA backend (no nvcc/cuBLAS/cuSOLVER at build time)');
  return f as NonNullable<EvalAddon[K]>;
}

const storedBytes = (dtype: EvalEntry['dtype']) => (dtype === 'I32' ? 4 : 2);
const sourceBytes = (dtype: EvalEntry['dtype']) => (dtype === 'I32' || dtype === 'F32' ? 4 : 2);

/**
 * One perplexity run on the GPU. Calls are queued one after another, except that load() of one
 * slot runs beside a compute call on the other (the caller never loads the slot in use).
 */
export class CudaEvalSession {
  private queue: Promise<unknown> = Promise.resolve();
  private loads = new Set<Promise<unknown>>();

  private constructor(private handle: object, readonly tokens: number, readonly slotBytes: number, readonly dims: CudaEvalDims) {}

  /** ids: windows × seqlen token ids; slotBytes: the largest slot content (a multiple of 256). */
  static async create(ids: Int32Array, dims: CudaEvalDims, seqlen: number, slotBytes: number, chunkWindows = 4): Promise<CudaEvalSession> {
    check(Number.isInteger(seqlen) && seqlen >= 2, 'seqlen', 'an integer ≥ 2', seqlen);
    check(ids.length > 0 && ids.length % seqlen === 0, 'ids.length', `a positive multiple of ${seqlen}`, ids.length);
    check(Number.isInteger(slotBytes) && slotBytes > 0 && slotBytes % 256 === 0, 'slotBytes', 'a positive multiple of 256', slotBytes);
    check(Number.isInteger(chunkWindows) && chunkWindows > 0, 'chunkWindows', 'a positive integer', chunkWindows);
    for (const k of ['hidden', 'ffn', 'heads', 'kvHeads', 'headDim', 'vocab'] as const) {
      check(Number.isInteger(dims[k]) && dims[k] > 0, `dims.${k}`, 'a positive integer', dims[k]);
    }
    check(dims.hidden % 8 === 0 && dims.ffn % 8 === 0 && dims.headDim % 8 === 0, 'dims', 'hidden, ffn and headDim multiples of 8', dims);
    check(dims.heads % dims.kvHeads === 0, 'dims.heads', `a multiple of kvHeads (${dims.kvHeads})`, dims.heads);
    const h = await required('cudaEvalCreate')(ids, dims, seqlen, slotBytes, chunkWindows);
    return new CudaEvalSession(h, ids.length, slotBytes, dims);
  }

  private run<T>(job: () => Promise<T>): Promise<T> {
    const p = this.queue.then(job);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Fills `slot` with the entries' bytes; resolves to the entries with non-finite values, by name. */
  load(slot: number, entries: EvalEntry[]): Promise<{ name: string; nonFinite: number }[]> {
    check(slot === 0 || slot === 1, 'slot', '0 or 1', slot);
    for (const e of entries) {
      const end = e.at + e.count * storedBytes(e.dtype);
      check(Number.isInteger(e.at) && e.at % 16 === 0 && Number.isInteger(e.count) && e.count > 0 && end <= this.slotBytes,
        `${e.name}: bytes [${e.at}, ${end})`, `16-byte aligned within the slot's ${this.slotBytes}`, e.at);
      if ('data' in e) check(e.data.byteLength === e.count * sourceBytes(e.dtype), `${e.name}.data`, `${e.count * sourceBytes(e.dtype)} bytes`, e.data.byteLength);
    }
    const job = required('cudaEvalLoad')(this.handle, slot, entries)
      .then((bad) => entries.map((e, i) => ({ name: e.name, nonFinite: e.dtype === 'I32' ? 0 : bad[i] })).filter((b) => b.nonFinite > 0));
    const settled = job.catch(() => undefined);
    this.loads.add(settled);
    void settled.then(() => this.loads.delete(settled));
    return job;
  }

  embed(slot: number, tableAt: number): Promise<{ badIds: number; seconds: number }> {
    check(slot === 0 || slot === 1, 'slot', '0 or 1', slot);
    return this.run(() => required('cudaEvalEmbed')(this.handle, slot, tableAt));
  }

  layer(slot: number, layout: EvalLayerLayout): Promise<EvalLayerResult> {
    check(slot === 0 || slot === 1, 'slot', '0 or 1', slot);
    checkLength(layout.linears, 'layout.linears', 7);
    return this.run(() => required('cudaEvalLayer')(this.handle, slot, layout));
  }

  head(slot: number, normAt: number, headAt: number): Promise<EvalHeadResult> {
    check(slot === 0 || slot === 1, 'slot', '0 or 1', slot);
    return this.run(() => required('cudaEvalHead')(this.handle, slot, normAt, headAt));
  }

  /** Releases the GPU and pinned memory once every load has settled (also done by GC). */
  free(): Promise<void> {
    return this.run(async () => {
      await Promise.all(this.loads);
      required('cudaEvalFree')(this.handle);
    });
  }
}
