/**
 * Evaluation windows (../shared/README.md, the GPTQ paper's protocol): the test text tokenised
 * whole with one BOS, cut from the start into floor(n / seqlen) non-overlapping windows.
 */
import { UserError } from '../errors';

export interface EvalWindows {
  count: number;
  seqlen: number;
  /** The windows back to back, [count * seqlen]: a view of the start of `ids`, not a copy. */
  tokens: Int32Array;
}

/** The window arguments' rules (a UserError for a bad one), before any text is read. */
export function checkWindowArgs(seqlen: number, maxWindows?: number): void {
  if (!Number.isSafeInteger(seqlen) || seqlen <= 0) {
    throw new UserError(`--seqlen must be a positive integer (got ${seqlen})`);
  }
  if (maxWindows !== undefined && (!Number.isSafeInteger(maxWindows) || maxWindows <= 0)) {
    throw new UserError(`the maximum number of windows must be a positive integer (got ${maxWindows})`);
  }
}

export function evalWindows(ids: Int32Array, seqlen: number, maxWindows?: number): EvalWindows {
  checkWindowArgs(seqlen, maxWindows);
  if (ids.length < seqlen) {
    throw new UserError(`--seqlen ${seqlen} is larger than the text (${ids.length} tokens)`);
  }
  let count = Math.floor(ids.length / seqlen);
  if (maxWindows !== undefined) count = Math.min(count, maxWindows);
  return { count, seqlen, tokens: ids.subarray(0, count * seqlen) };
}

/**
 * Perplexity from each window's mean NLL over its seqlen - 1 next-token targets:
 * exp(sum_w mean_w * seqlen / (windows * seqlen)) = exp(mean over windows of mean_w).
 */
export function perplexityFromWindowNll(meanNllPerWindow: number[]): number {
  if (meanNllPerWindow.length === 0) throw new Error('perplexityFromWindowNll: no windows');
  let sum = 0;
  for (const v of meanNllPerWindow) sum += v;
  return Math.exp(sum / meanNllPerWindow.length);
}
