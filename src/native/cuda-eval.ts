/**
 * The CUDA inference path's calls (native/bindings/cuda_eval.cc): hidden states of every window
 * on the GPU in fp16, each decoder layer's tensors streamed through two pinned slots mirrored by
 * device arenas. Every call goes through ./addon (the one loader and call path); arguments are
 * validated here first (name, expected, got).
 */
import { callNative, CudaEvalHandle, NATIVE_ENUMS, nativeCallAt } from './addon';
import { check, checkInteger, checkLength, checkObject, checkOneOf, checkString, checkType } from './check';
import { checkCudaDims, CudaLayerDims } from './cuda';

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

/** The linears of EvalLayerLayout.linears, in their (positional) order. */
export const EVAL_LINEARS = NATIVE_ENUMS.evalLinear;

const storedBytes = (dtype: EvalEntry['dtype']) => (dtype === 'I32' ? 4 : 2);
const sourceBytes = (dtype: EvalEntry['dtype']) => (dtype === 'I32' || dtype === 'F32' ? 4 : 2);

/**
 * One perplexity run on the GPU. Calls are queued one after another, except that load() of one
 * slot runs beside a compute call on the other (the caller never loads the slot in use).
 */
export class CudaEvalSession {
  private queue: Promise<unknown> = Promise.resolve();
  private loads = new Set<Promise<unknown>>();

  private constructor(private handle: CudaEvalHandle, readonly tokens: number, readonly slotBytes: number, readonly dims: CudaEvalDims) {}

  /** ids: windows × seqlen token ids; slotBytes: the largest slot content (a multiple of 256). */
  static async create(ids: Int32Array, dims: CudaEvalDims, seqlen: number, slotBytes: number, chunkWindows = 4): Promise<CudaEvalSession> {
    checkInteger(seqlen, 'seqlen', 2);
    checkType(ids, 'ids', 'Int32Array');
    check(ids.length > 0 && ids.length % seqlen === 0, 'ids.length', `a positive multiple of ${seqlen}`, ids.length);
    checkInteger(slotBytes, 'slotBytes', 1);
    check(slotBytes % 256 === 0, 'slotBytes', 'a positive multiple of 256', slotBytes);
    checkInteger(chunkWindows, 'chunkWindows', 1);
    checkCudaDims(dims);
    checkInteger(dims.vocab, 'dims.vocab', 1);
    check(dims.hidden % 8 === 0 && dims.ffn % 8 === 0 && dims.headDim % 8 === 0, 'dims', 'hidden, ffn and headDim multiples of 8', dims);
    const h = await callNative('cudaEvalCreate', ids, dims, seqlen, slotBytes, chunkWindows);
    return new CudaEvalSession(h, ids.length, slotBytes, dims);
  }

  private run<T>(job: () => Promise<T>): Promise<T> {
    const p = this.queue.then(job);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Fills `slot` with the entries' bytes; resolves to the entries with non-finite values, by name. */
  load(slot: number, entries: EvalEntry[]): Promise<{ name: string; nonFinite: number }[]> {
    checkInteger(slot, 'slot', 0, 1);
    check(Array.isArray(entries), 'entries', 'an array', entries);
    for (const e of entries) {
      checkObject(e, 'entries[]');
      checkOneOf(e.dtype, `${e.name}.dtype`, NATIVE_ENUMS.evalDtype);
      const end = e.at + e.count * storedBytes(e.dtype);
      check(Number.isInteger(e.at) && e.at >= 0 && e.at % 16 === 0 && Number.isInteger(e.count) && e.count > 0 && end <= this.slotBytes,
        `${e.name}: bytes [${e.at}, ${end})`, `16-byte aligned within the slot's ${this.slotBytes}`, e.at);
      if ('data' in e) {
        checkType(e.data, `${e.name}.data`, ['Uint16Array', 'Float32Array', 'Int32Array']);
        check(e.data.byteLength === e.count * sourceBytes(e.dtype), `${e.name}.data`, `${e.count * sourceBytes(e.dtype)} bytes`, e.data.byteLength);
      } else {
        checkString(e.file, `${e.name}.file`);
        checkInteger(e.offset, `${e.name}.offset`);
      }
    }
    const job = callNative('cudaEvalLoad', this.handle, slot, entries)
      .then((bad) => entries.map((e, i) => ({ name: e.name, nonFinite: e.dtype === 'I32' ? 0 : bad[i] })).filter((b) => b.nonFinite > 0));
    const settled = job.catch(() => undefined);
    this.loads.add(settled);
    void settled.then(() => this.loads.delete(settled));
    return job;
  }

  embed(slot: number, tableAt: number): Promise<{ badIds: number; seconds: number }> {
    checkInteger(slot, 'slot', 0, 1);
    this.checkOffset(tableAt, 'tableAt');
    const embed = nativeCallAt('cudaEvalEmbed'); // its errors show this caller, not the queue
    return this.run(() => embed(this.handle, slot, tableAt));
  }

  layer(slot: number, layout: EvalLayerLayout): Promise<EvalLayerResult> {
    checkInteger(slot, 'slot', 0, 1);
    checkObject(layout, 'layout');
    if (layout.bits !== undefined) check([2, 3, 4, 8].includes(layout.bits), 'layout.bits', '2, 3, 4 or 8', layout.bits);
    check(Array.isArray(layout.linears), 'layout.linears', 'an array', layout.linears);
    checkLength(layout.linears, 'layout.linears', EVAL_LINEARS.length);
    layout.linears.forEach((p, i) => {
      const what = `layout.linears[${i}] (${EVAL_LINEARS[i]})`;
      checkObject(p, what);
      if ('qweight' in p) {
        check(layout.bits !== undefined, 'layout.bits', 'the bits of the GPTQ linears', layout.bits);
        for (const key of ['qweight', 'qzeros', 'scales', 'gIdx'] as const) this.checkOffset(p[key], `${what}.${key}`);
        checkInteger(p.groups, `${what}.groups`, 1);
      } else {
        this.checkOffset(p.at, `${what}.at`);
      }
    });
    this.checkOffset(layout.inputNorm, 'layout.inputNorm');
    this.checkOffset(layout.postNorm, 'layout.postNorm');
    const layer = nativeCallAt('cudaEvalLayer');
    return this.run(() => layer(this.handle, slot, layout));
  }

  head(slot: number, normAt: number, headAt: number): Promise<EvalHeadResult> {
    checkInteger(slot, 'slot', 0, 1);
    this.checkOffset(normAt, 'normAt');
    this.checkOffset(headAt, 'headAt');
    const head = nativeCallAt('cudaEvalHead');
    return this.run(() => head(this.handle, slot, normAt, headAt));
  }

  /** A byte offset in a slot: 16-byte aligned, below slotBytes (the addon checks the extent). */
  private checkOffset(at: number, what: string): void {
    checkInteger(at, what, 0, this.slotBytes - 1);
    check(at % 16 === 0, what, 'a multiple of 16', at);
  }

  /** Releases the GPU and pinned memory once every load has settled (also done by GC). */
  free(): Promise<void> {
    const free = nativeCallAt('cudaEvalFree');
    return this.run(async () => {
      await Promise.all(this.loads);
      free(this.handle);
    });
  }
}
