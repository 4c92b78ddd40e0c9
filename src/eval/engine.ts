/**
 * The seam between the perplexity protocol and the engines that run the model's forward pass.
 * One driver (runEvalEngine) owns the protocol: the window count, the order of the stages
 * (embeddings → every decoder layer → final norm, lm_head and log-softmax), the progress, the
 * NaN/Inf errors and the perplexity of the per-window mean NLLs. An engine (the CPU one in
 * perplexity.ts, the CUDA one in perplexity-cuda.ts) only runs the stages.
 */
import { UserError } from '../errors';
import { perplexityFromWindowNll } from '../data/windows';
import { LlamaModel } from '../model/llama-model';

/** What the head stage hands back: −log p(next token) of every window's seqlen − 1 targets. */
export interface HeadOutput {
  /** Window w's target t is at nll[w · stride + t]. */
  nll: ArrayLike<number>;
  stride: number;
  /** How many of the NLLs are NaN/Inf (non-finite logits). */
  nonFinite: number;
  /** The most likely next token at every position [windows × seqlen], when the engine keeps it. */
  argmax?: Int32Array;
}

/**
 * One engine's forward pass over all windows of one model, stage by stage. The hidden states
 * stay inside the engine between calls; `tick` reports one unit of progress.
 */
export interface EvalEngine {
  /** Progress units the embedding, each decoder layer and the head take. */
  readonly units: { embed: number; layer: number; head: number };
  /** Appended to the "not finite after decoder layer" error (what the user can change). */
  readonly nonFiniteHint: string;
  embed(tick: () => void): Promise<void>;
  /** Decoder layer `layer` over every window; returns the NaN/Inf values of the hidden states after it. */
  layer(layer: number, tick: () => void): Promise<number>;
  head(tick: () => void): Promise<HeadOutput>;
  /** Releases what the engine holds (always called, also after an error). */
  close(): Promise<void>;
}

export interface PerplexityResult {
  perplexity: number;
  /** Mean NLL of each window's seqlen − 1 next-token targets. */
  windowNll: number[];
  /** Per-token NLL [windows × (seqlen − 1)] and argmax [windows × seqlen], when asked. */
  tokenNll?: Float32Array;
  argmax?: Int32Array;
  windows: number;
  seqlen: number;
}

/** The number of windows in `tokens` (a positive multiple of seqlen), or a RangeError. */
export function windowCount(tokens: Int32Array, seqlen: number): number {
  const windows = tokens.length / seqlen;
  if (!Number.isInteger(windows) || windows < 1) {
    throw new RangeError(`tokens: expected a positive multiple of seqlen ${seqlen}, got ${tokens.length}`);
  }
  return windows;
}

/**
 * The GPTQ reference's protocol (llama_eval) on `engine`: perplexity =
 * exp(Σ_w meanNLL_w · seqlen / (windows · seqlen)). `tokens` holds windows × seqlen ids.
 */
export async function runEvalEngine(
  model: LlamaModel, engine: EvalEngine, tokens: Int32Array, seqlen: number,
  opts: { keepTokens?: boolean; onProgress?: (done: number, total: number, label: string) => void } = {},
): Promise<PerplexityResult> {
  const c = model.config;
  const u = engine.units;
  const total = u.embed + c.numLayers * u.layer + u.head;
  let done = 0;
  const ticker = (label: string) => () => opts.onProgress?.(++done, total, label);
  try {
    const windows = windowCount(tokens, seqlen);
    await engine.embed(ticker('embeddings'));
    for (let layer = 0; layer < c.numLayers; layer++) {
      const nonFinite = await engine.layer(layer, ticker(`layer ${layer + 1}/${c.numLayers}`));
      if (nonFinite > 0) {
        throw new UserError(
          `${model.dir}: the hidden states are not finite after decoder layer ${layer} (${nonFinite} NaN/Inf values${engine.nonFiniteHint})`,
        );
      }
    }
    const out = await engine.head(ticker('lm_head'));
    if (out.nonFinite > 0) {
      throw new UserError(`${model.dir}: the logits are not finite for ${out.nonFinite} token(s) (after the final norm and lm_head)`);
    }
    const windowNll: number[] = [];
    const tokenNll = opts.keepTokens ? new Float32Array(windows * (seqlen - 1)) : undefined;
    for (let w = 0; w < windows; w++) {
      let sum = 0;
      for (let t = 0; t < seqlen - 1; t++) sum += out.nll[w * out.stride + t];
      windowNll.push(sum / (seqlen - 1));
      if (tokenNll) for (let t = 0; t < seqlen - 1; t++) tokenNll[w * (seqlen - 1) + t] = out.nll[w * out.stride + t];
    }
    const perplexity = perplexityFromWindowNll(windowNll);
    if (!Number.isFinite(perplexity)) {
      // Every NLL was finite, so only exp() of their mean can overflow here.
      const mean = windowNll.reduce((a, b) => a + b, 0) / windowNll.length;
      throw new UserError(`${model.dir}: the perplexity is not finite (exp of a mean NLL of ${mean.toPrecision(4)} overflows)`);
    }
    return { perplexity, windowNll, windows, seqlen, tokenNll, argmax: opts.keepTokens ? out.argmax : undefined };
  } finally {
    await engine.close();
  }
}
