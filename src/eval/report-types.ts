/** `report.json` of a branches folder, written by `gptq report` (one row per model measured). */
import type { FileStamp } from './report-content';

export const REPORT_FILE = 'report.json';
export const REPORT_FORMAT = 'gptq-forge/report@1';

export interface ReportRow {
  /** Branch name (folder name), `fp16` for the base model, `rtn-<bits>bit-<g>g` for baselines. */
  name: string;
  kind: 'fp16' | 'gptq' | 'rtn';
  bits: number;
  groupSize: number | null;
  actOrder: boolean | null;
  dampPercent: number | null;
  dataset: string | null;
  seqlen: number | null;
  /** Bytes on disk of the branch folder (the weights for fp16). */
  sizeBytes: number;
  /** Stored bits per quantizable weight of the decoder linears (codes, scales, zeros, g_idx). */
  bitsPerWeight: number;
  /** Perplexity on `Report.eval` (the first `--dataset`). */
  perplexity: number;
  /** Perplexity on each of `Report.extraEvals`, keyed by its `dataset`; absent with one dataset. */
  extraPerplexity?: Record<string, number>;
  /** Build time of the branch in seconds (null for fp16). */
  buildSeconds: number | null;
  /**
   * What was measured, by content: sha256 over the sha256 of every file of the model folder
   * that the perplexity depends on (src/eval/report-content.ts); a row is reused only when the
   * folder's content still has this id.
   */
  weightsId: string;
  /** The files behind weightsId, with the size and mtime that let the next report skip re-hashing them. */
  files?: FileStamp[];
}

/** What a perplexity column was measured on. */
export interface ReportEval {
  /** The `--dataset` argument (a registry name or a file). */
  dataset: string;
  source: string; seqlen: number; windows: number; tokens: number;
  /** sha256 of the evaluated token ids (the text and tokenizer by content; absent in older reports). */
  idsSha256?: string;
}

export interface Report {
  format: typeof REPORT_FORMAT;
  base: { model: string; revision: string | null };
  /** The first `--dataset`: rows' `perplexity`, the chart. */
  eval: ReportEval;
  /** Further `--dataset`s, in order: rows' `extraPerplexity`; absent with one dataset. */
  extraEvals?: ReportEval[];
  rows: ReportRow[];
  createdAt: string;
}
