/**
 * Perplexity through onnxruntime-node (CPU execution provider) on a graph written by
 * exportLlamaOnnx: one session run per window, fetching only the `nll` output, reduced with
 * the same protocol as the native engine (src/eval/perplexity.ts).
 */
import type * as Ort from 'onnxruntime-node';
import { UserError } from '../../errors';
import { perplexityFromWindowNll } from '../../data/windows';
import type { PerplexityResult } from '../perplexity';

export interface OnnxPerplexityOptions {
  /** Intra-op threads of the CPU execution provider. */
  threads: number;
  keepTokens?: boolean;
  onProgress?: (done: number, total: number, label: string) => void;
}

/**
 * onnxruntime-node, loaded on first use: only `--engine onnx` needs it, and the offline bundle
 * for GPU hosts leaves out its 290 MB of binaries.
 */
function ortModule(): typeof Ort {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use (see above)
    return require('onnxruntime-node') as typeof Ort;
  } catch (e) {
    throw new UserError(`--engine onnx needs the onnxruntime-node package, which cannot be loaded here (${(e as Error).message.split('\n')[0]})`);
  }
}

export async function openOnnxSession(file: string, threads: number): Promise<Ort.InferenceSession> {
  const ort = ortModule();
  try {
    return await ort.InferenceSession.create(file, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
    });
  } catch (e) {
    throw new UserError(`${file}: onnxruntime cannot load the model (${(e as Error).message.split('\n')[0]})`);
  }
}

/** Per-token next-token NLL [windows × (seqlen − 1)] of `tokens` (window after window). */
export async function evaluatePerplexityOnnx(
  session: Ort.InferenceSession, tokens: Int32Array, seqlen: number, opts: OnnxPerplexityOptions,
): Promise<PerplexityResult> {
  const windows = tokens.length / seqlen;
  if (!Number.isInteger(windows) || windows < 1) {
    throw new RangeError(`tokens: expected a positive multiple of seqlen ${seqlen}, got ${tokens.length}`);
  }
  if (!session.outputNames.includes('nll')) {
    throw new UserError('the ONNX model has no "nll" output (was it written by gptq export-onnx?)');
  }
  const ort = ortModule();
  const windowMeans: number[] = [];
  const tokenNll = opts.keepTokens ? new Float32Array(windows * (seqlen - 1)) : undefined;
  for (let w = 0; w < windows; w++) {
    const ids = BigInt64Array.from(tokens.subarray(w * seqlen, (w + 1) * seqlen), (v) => BigInt(v));
    const out = await session.run({ input_ids: new ort.Tensor('int64', ids, [1, seqlen]) }, ['nll']);
    const nll = out.nll.data as Float32Array;
    if (nll.length !== seqlen - 1) throw new Error(`nll: expected ${seqlen - 1} values, got ${nll.length}`);
    tokenNll?.set(nll, w * (seqlen - 1));
    let s = 0;
    for (let t = 0; t < seqlen - 1; t++) s += nll[t];
    if (!Number.isFinite(s)) throw new UserError(`onnxruntime: the next-token NLL of window ${w + 1} is not finite (NaN/Inf logits)`);
    windowMeans.push(s / (seqlen - 1));
    out.nll.dispose();
    opts.onProgress?.(w + 1, windows, `window ${w + 1}/${windows}`);
  }
  const perplexity = perplexityFromWindowNll(windowMeans);
  if (!Number.isFinite(perplexity)) throw new UserError('onnxruntime: the perplexity is not finite (the mean NLL overflows exp)');
  return { perplexity, windowNll: windowMeans, windows, seqlen, tokenNll };
}
