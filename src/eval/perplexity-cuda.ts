/**
 * Perplexity on the GPU (`--device cuda`), the same protocol and numbers as the CPU engine
 * (perplexity.ts): the hidden states of every window stay on the GPU in fp16; decoder layers
 * stream through two pinned slots, layer i + 1 read from disk on native threads while layer i
 * computes; a GPTQ branch's linears are dequantized on the GPU per layer; attention is a fused
 * flash-style kernel; final norm, lm_head and the log-softmax run in chunks of rows, the
 * per-token NLL in fp64.
 */
import { UserError } from '../errors';
import { perplexityFromWindowNll } from '../data/windows';
import { LlamaModel } from '../model/llama-model';
import { cudaAvailable, CudaEvalSession, cudaInfo, cudaUnavailableReason, EvalEntry } from '../native';
import { embeddingPlan, headPlan, layerPlan } from './cuda-plan';
import { PerplexityResult } from './perplexity';

export interface CudaPerplexityOptions {
  /** Windows per chunk of the forward (activations of one chunk at a time); default 4. */
  chunkWindows?: number;
  onProgress?: (done: number, total: number, label: string) => void;
}

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

export type EvalDevice = 'cpu' | 'cuda';

/** The engine for an evaluation: the one asked for (cuda is checked here), or cuda where a GPU is visible. */
export function pickEvalDevice(asked?: EvalDevice): EvalDevice {
  if (asked === 'cuda') {
    const why = cudaUnavailableReason();
    if (why) throw new UserError(`--device cuda: ${why}`);
  }
  return asked ?? (cudaAvailable() ? 'cuda' : 'cpu');
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** The whole protocol on the GPU; `tokens` holds windows × seqlen ids, window after window. */
export async function evaluatePerplexityCuda(
  model: LlamaModel, tokens: Int32Array, seqlen: number, opts: CudaPerplexityOptions = {},
): Promise<PerplexityResult & { stats: CudaEvalStats }> {
  const c = model.config;
  const windows = tokens.length / seqlen;
  if (!Number.isInteger(windows) || windows < 1) {
    throw new RangeError(`tokens: expected a positive multiple of seqlen ${seqlen}, got ${tokens.length}`);
  }
  const emb = embeddingPlan(model);
  const head = headPlan(model);
  const layers = Array.from({ length: c.numLayers }, (_, i) => layerPlan(model, i));
  const slotBytes = Math.max(emb.bytes, head.bytes, ...layers.map((l) => l.bytes));
  const dims = {
    hidden: c.hiddenSize, ffn: c.intermediateSize, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim,
    eps: c.rmsNormEps, ropeTheta: c.ropeTheta, vocab: c.vocabSize,
  };
  const stats: CudaEvalStats = {
    device: cudaInfo().name ?? 'cuda',
    stages: { read: 0, readWait: 0, embed: 0, dequant: 0, gemm: 0, attention: 0, other: 0, head: 0 },
    flops: { gemm: 0, attention: 0, head: 0, total: 0 }, bytesRead: 0, peakGpuGb: 0,
  };
  const total = c.numLayers + 2;
  let done = 0;
  const tick = (label: string) => opts.onProgress?.(++done, total, label);

  const session = await CudaEvalSession.create(tokens, dims, seqlen, slotBytes, opts.chunkWindows ?? 4).catch((e: Error) => {
    throw new UserError(e.message);
  });
  // A load runs while the previous layer computes; its failure is reported when it is awaited.
  const load = (slot: number, entries: EvalEntry[], what: string): Promise<void> => {
    const t0 = now();
    const p = session.load(slot, entries).then(
      (bad) => {
        stats.stages.read += now() - t0;
        stats.bytesRead += entries.reduce((s, e) => s + e.count * (e.dtype === 'F32' || e.dtype === 'I32' ? 4 : 2), 0);
        if (bad.length > 0) throw new UserError(`${model.dir}: weight ${bad[0].name} has ${bad[0].nonFinite} NaN/Inf value(s)`);
      },
      (e: Error) => {
        throw e instanceof UserError ? e : new UserError(`reading ${what}: ${e.message}`);
      },
    );
    p.catch(() => undefined);  // handled where it is awaited
    return p;
  };
  const wait = async (p: Promise<void>) => {
    const t0 = now();
    await p;
    stats.stages.readWait += now() - t0;
  };
  const slotOf = (layer: number) => (layer + 1) % 2;  // the embedding is in slot 0, layer 0 in slot 1
  try {
    await wait(load(0, emb.entries, 'the embedding'));
    let next = load(slotOf(0), layers[0]?.entries ?? head.entries, c.numLayers > 0 ? 'decoder layer 0' : 'the head');
    const e = await session.embed(0, emb.tableAt);
    if (e.badIds > 0) throw new UserError(`${e.badIds} token id(s) are outside the vocabulary of ${c.vocabSize}`);
    stats.stages.embed += e.seconds;
    tick('embeddings');
    for (let i = 0; i < c.numLayers; i++) {
      await wait(next);
      next = i + 1 < c.numLayers
        ? load(slotOf(i + 1), layers[i + 1].entries, `decoder layer ${i + 1}`)
        : load(slotOf(c.numLayers), head.entries, 'the head');
      const r = await session.layer(slotOf(i), layers[i].layout);
      if (r.badGroups > 0) throw new UserError(`${model.dir}: decoder layer ${i}: a g_idx entry lies outside [0, groups) of its linear (${r.badGroups} reads)`);
      if (r.nonFiniteWeights > 0) throw new UserError(`${model.dir}: decoder layer ${i}: ${r.nonFiniteWeights} dequantized weight(s) are NaN/Inf (scales too large for fp16)`);
      if (r.nonFinite > 0) throw new UserError(`the hidden states are not finite after decoder layer ${i} (${r.nonFinite} NaN/Inf values)`);
      const s = stats.stages;
      s.dequant += r.times.dequant;
      s.gemm += r.times.gemm;
      s.attention += r.times.attention;
      s.other += r.times.other;
      stats.flops.gemm += r.flops.gemm;
      stats.flops.attention += r.flops.attention;
      stats.peakGpuGb = Math.max(stats.peakGpuGb, r.deviceUsedGb);
      tick(`layer ${i + 1}/${c.numLayers}`);
    }
    await wait(next);
    const h = await session.head(slotOf(c.numLayers), head.normAt, head.headAt);
    if (h.nonFinite > 0) throw new UserError(`the logits are not finite for ${h.nonFinite} token(s) (after the final norm and lm_head)`);
    stats.stages.head += h.seconds;
    stats.flops.head += h.flops;
    stats.peakGpuGb = Math.max(stats.peakGpuGb, h.deviceUsedGb);
    stats.flops.total = stats.flops.gemm + stats.flops.attention + stats.flops.head;
    tick('lm_head');
    const windowNll: number[] = [];
    for (let w = 0; w < windows; w++) {
      let sum = 0;
      for (let t = 0; t < seqlen - 1; t++) sum += h.nll[w * seqlen + t];
      windowNll.push(sum / (seqlen - 1));
    }
    const perplexity = perplexityFromWindowNll(windowNll);
    if (!Number.isFinite(perplexity)) throw new UserError(`${model.dir}: the perplexity is not finite (the mean NLL overflows exp)`);
    return { perplexity, windowNll, windows, seqlen, stats };
  } finally {
    await session.free();
  }
}
