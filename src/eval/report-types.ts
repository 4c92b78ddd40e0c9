/** `report.json` of a branches folder, written by `gptq report` (one row per model measured). */
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
  perplexity: number;
  /** Build time of the branch in seconds (null for fp16). */
  buildSeconds: number | null;
  /** What was measured: sha256 of the branch's weights file, or the base model's fingerprint. */
  weightsId: string;
}

export interface Report {
  format: typeof REPORT_FORMAT;
  base: { model: string; revision: string | null };
  eval: { dataset: string; source: string; seqlen: number; windows: number; tokens: number };
  rows: ReportRow[];
  createdAt: string;
}
