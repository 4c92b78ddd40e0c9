/**
 * Perplexity with the native CPU engine, layer by layer: the hidden states of every window
 * stay in memory while one decoder layer's weights at a time are loaded, applied, dropped —
 * the same shape of computation the quantizer runs.
 */
import { UserError } from '../errors';
import { perplexityFromWindowNll } from '../data/windows';
import { decoderLayer, embed, windowNll } from '../native';
import { LlamaModel } from '../model/llama-model';

export interface PerplexityOptions {
  /** Store activations as fp16 between ops, as an fp16 model in transformers does. */
  round16: boolean;
  /** Windows per native call: the granularity of progress reports. */
  windowsPerCall?: number;
  /** Keep per-token NLL and argmax in the result (for golden comparisons). */
  keepTokens?: boolean;
  /** Called after each unit of work: done / total, with a short label. */
  onProgress?: (done: number, total: number, label: string) => void;
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

/**
 * `tokens` holds `windows × seqlen` ids, window after window. Perplexity follows the GPTQ
 * reference (llama_eval): exp(Σ_w meanNLL_w · seqlen / (windows · seqlen)).
 */
export async function evaluatePerplexity(
  model: LlamaModel, tokens: Int32Array, seqlen: number, opts: PerplexityOptions,
): Promise<PerplexityResult> {
  const c = model.config;
  const windows = tokens.length / seqlen;
  if (!Number.isInteger(windows) || windows < 1) {
    throw new RangeError(`tokens: expected a positive multiple of seqlen ${seqlen}, got ${tokens.length}`);
  }
  const dims = model.dims(opts.round16);
  const per = Math.max(1, opts.windowsPerCall ?? 4);
  const chunks: number[][] = [];
  for (let w = 0; w < windows; w += per) {
    chunks.push(Array.from({ length: Math.min(per, windows - w) }, (_, k) => w + k));
  }
  const total = (c.numLayers + 1) * chunks.length + 1;
  let done = 0;
  const tick = (label: string) => opts.onProgress?.(++done, total, label);

  const hidden = Array.from({ length: windows }, () => new Float32Array(seqlen * c.hiddenSize));
  await embed(tokens, await model.embedding(), c.vocabSize, hidden);
  tick('embeddings');

  for (let layer = 0; layer < c.numLayers; layer++) {
    const weights = await model.layer(layer);
    for (const chunk of chunks) {
      const nonFinite = await decoderLayer(chunk.map((w) => hidden[w]), weights, dims, seqlen);
      if (nonFinite > 0) {
        throw new UserError(
          `${model.dir}: the hidden states are not finite after decoder layer ${layer} (${nonFinite} NaN/Inf values` +
          `${opts.round16 ? '; activations are stored in fp16, see --fp32-activations' : ''})`,
        );
      }
      tick(`layer ${layer + 1}/${c.numLayers}`);
    }
  }

  const norm = await model.finalNorm();
  const head = await model.lmHead();
  const windowMeans: number[] = [];
  const tokenNll = opts.keepTokens ? new Float32Array(windows * (seqlen - 1)) : undefined;
  const argmax = opts.keepTokens ? new Int32Array(windows * seqlen) : undefined;
  for (const chunk of chunks) {
    const ids = tokens.subarray(chunk[0] * seqlen, (chunk[chunk.length - 1] + 1) * seqlen);
    const out = await windowNll(chunk.map((w) => hidden[w]), ids, norm, head, dims, seqlen);
    if (out.nonFinite > 0) {
      throw new UserError(`${model.dir}: the logits are not finite for ${out.nonFinite} token(s) (after the final norm and lm_head)`);
    }
    const nll = out.nll;
    tokenNll?.set(nll, chunk[0] * (seqlen - 1));
    argmax?.set(out.argmax, chunk[0] * seqlen);
    for (let k = 0; k < chunk.length; k++) {
      let s = 0;
      for (let t = 0; t < seqlen - 1; t++) s += nll[k * (seqlen - 1) + t];
      windowMeans.push(s / (seqlen - 1));
    }
    tick('lm_head');
  }
  const perplexity = perplexityFromWindowNll(windowMeans);
  if (!Number.isFinite(perplexity)) {
    // Every NLL was finite, so only exp() of their mean can overflow here.
    const mean = windowMeans.reduce((a, b) => a + b, 0) / windowMeans.length;
    throw new UserError(`${model.dir}: the perplexity is not finite (exp of a mean NLL of ${mean.toPrecision(4)} overflows)`);
  }
  return { perplexity, windowNll: windowMeans, windows, seqlen, tokenNll, argmax };
}
