/**
 * The CUDA engine of the perplexity driver (engine.ts; `--device cuda`), the same numbers as the
 * CPU engine (perplexity.ts): the hidden states of every window stay on the GPU in fp16; decoder layers
 * stream through two pinned slots, layer i + 1 read from disk on native threads while layer i
 * computes; a GPTQ branch's linears are dequantized on the GPU per layer; attention is a fused
 * flash-style kernel; final norm, lm_head and the log-softmax run in chunks of rows, the
 * per-token NLL in fp64.
 */
import { UserError } from '../errors';
import { LlamaModel } from '../model/llama-model';
import { CudaEvalSession, cudaInfo, EvalEntry } from '../native';
import { embeddingPlan, headPlan, layerPlan } from './cuda-plan';
import { EvalEngine, HeadOutput } from './engine';

/** Where the time went (seconds) and how much work was done. */
export interface CudaEvalStats {
  device: string;
  stages: {
    /** Reading tensors from disk into the pinned slots (overlapped with compute). */
    read: number;
    /** The part of `read` the GPU waited for. */
    readWait: number;
    embed: number;
    dequant: number;
    gemm: number;
    attention: number;
    /** RMSNorm, RoPE, SwiGLU, residual adds. */
    other: number;
    head: number;
  };
  flops: { gemm: number; attention: number; head: number; total: number };
  bytesRead: number;
  peakGpuGb: number;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** The embedding is in slot 0, decoder layer i in slot (i + 1) % 2, the head after the last layer. */
const slotOf = (layer: number) => (layer + 1) % 2;

/**
 * The GPU engine: the hidden states of every window stay on the device; each stage waits for
 * its weights (read while the previous stage computed) and starts reading the next stage's.
 */
export class CudaEvalEngine implements EvalEngine {
  readonly units = { embed: 1, layer: 1, head: 1 };
  readonly nonFiniteHint = '';
  readonly stats: CudaEvalStats;
  /** The load of the next stage's weights, started while this one computes. */
  private next: Promise<void> | null = null;

  private constructor(
    private readonly model: LlamaModel, private readonly session: CudaEvalSession,
    private readonly emb: ReturnType<typeof embeddingPlan>, private readonly headSlot: ReturnType<typeof headPlan>,
    private readonly layers: ReturnType<typeof layerPlan>[], private readonly seqlen: number,
  ) {
    this.stats = {
      device: cudaInfo().name ?? 'cuda',
      stages: { read: 0, readWait: 0, embed: 0, dequant: 0, gemm: 0, attention: 0, other: 0, head: 0 },
      flops: { gemm: 0, attention: 0, head: 0, total: 0 }, bytesRead: 0, peakGpuGb: 0,
    };
  }

  /** Plans every stage's slot layout and allocates the device memory up front (a UserError when it does not fit). */
  static async open(model: LlamaModel, tokens: Int32Array, seqlen: number, chunkWindows: number): Promise<CudaEvalEngine> {
    const c = model.config;
    const emb = embeddingPlan(model);
    const head = headPlan(model);
    const layers = Array.from({ length: c.numLayers }, (_, i) => layerPlan(model, i));
    const slotBytes = Math.max(emb.bytes, head.bytes, ...layers.map((l) => l.bytes));
    const dims = {
      hidden: c.hiddenSize, ffn: c.intermediateSize, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim,
      eps: c.rmsNormEps, ropeTheta: c.ropeTheta, vocab: c.vocabSize,
    };
    const session = await CudaEvalSession.create(tokens, dims, seqlen, slotBytes, chunkWindows).catch((e: Error) => {
      throw new UserError(e.message);
    });
    return new CudaEvalEngine(model, session, emb, head, layers, seqlen);
  }

  /** Starts reading `entries` into `slot`; a failure is reported where it is awaited. */
  private load(slot: number, entries: EvalEntry[], what: string): Promise<void> {
    const t0 = now();
    const p = this.session.load(slot, entries).then(
      (bad) => {
        this.stats.stages.read += now() - t0;
        this.stats.bytesRead += entries.reduce((s, e) => s + e.count * (e.dtype === 'F32' || e.dtype === 'I32' ? 4 : 2), 0);
        if (bad.length > 0) throw new UserError(`${this.model.dir}: weight ${bad[0].name} has ${bad[0].nonFinite} NaN/Inf value(s)`);
      },
      (e: Error) => {
        throw e instanceof UserError ? e : new UserError(`reading ${what}: ${e.message}`);
      },
    );
    p.catch(() => undefined); // handled where it is awaited
    return p;
  }

  /** Waits for the weights of the stage about to run, then starts reading those of the stage after it. */
  private async advance(first: Promise<void> | null, nextStage: number): Promise<void> {
    const t0 = now();
    await (first ?? this.next);
    this.stats.stages.readWait += now() - t0;
    const n = this.layers.length;
    this.next = nextStage < n
      ? this.load(slotOf(nextStage), this.layers[nextStage].entries, `decoder layer ${nextStage}`)
      : nextStage === n ? this.load(slotOf(n), this.headSlot.entries, 'the head') : null;
  }

  async embed(tick: () => void): Promise<void> {
    await this.advance(this.load(0, this.emb.entries, 'the embedding'), 0);
    const e = await this.session.embed(0, this.emb.tableAt);
    if (e.badIds > 0) throw new UserError(`${e.badIds} token id(s) are outside the vocabulary of ${this.model.config.vocabSize}`);
    this.stats.stages.embed += e.seconds;
    tick();
  }

  async layer(i: number, tick: () => void): Promise<number> {
    await this.advance(null, i + 1);
    const r = await this.session.layer(slotOf(i), this.layers[i].layout);
    const dir = this.model.dir;
    if (r.badGroups > 0) throw new UserError(`${dir}: decoder layer ${i}: a g_idx entry lies outside [0, groups) of its linear (${r.badGroups} reads)`);
    if (r.nonFiniteWeights > 0) throw new UserError(`${dir}: decoder layer ${i}: ${r.nonFiniteWeights} dequantized weight(s) are NaN/Inf (scales too large for fp16)`);
    const s = this.stats.stages;
    s.dequant += r.times.dequant;
    s.gemm += r.times.gemm;
    s.attention += r.times.attention;
    s.other += r.times.other;
    this.stats.flops.gemm += r.flops.gemm;
    this.stats.flops.attention += r.flops.attention;
    this.stats.peakGpuGb = Math.max(this.stats.peakGpuGb, r.deviceUsedGb);
    tick();
    return r.nonFinite;
  }

  async head(tick: () => void): Promise<HeadOutput> {
    await this.advance(null, this.layers.length + 1);
    const h = await this.session.head(slotOf(this.layers.length), this.headSlot.normAt, this.headSlot.headAt);
    this.stats.stages.head += h.seconds;
    this.stats.flops.head += h.flops;
    this.stats.peakGpuGb = Math.max(this.stats.peakGpuGb, h.deviceUsedGb);
    this.stats.flops.total = this.stats.flops.gemm + this.stats.flops.attention + this.stats.flops.head;
    tick();
    // one NLL per position, the last of each window unused
    return { nll: h.nll, stride: this.seqlen, nonFinite: h.nonFinite };
  }

  async close(): Promise<void> {
    await this.next?.catch(() => undefined);
    await this.session.free();
  }
}
