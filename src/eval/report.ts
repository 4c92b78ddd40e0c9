/**
 * The report of a branches folder: one row per model measured (fp16 base, every finished
 * branch, round-to-nearest baselines when asked) with perplexity, size on disk, bits per weight
 * and build time; rendered as report.md (a "Provided files" table) beside report.json.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Manifest } from '../gptq/manifest';
import { SafetensorsFile } from '../io/safetensors-reader';
import { LINEARS, linearWeight } from '../model/weights';
import { LlamaConfig } from '../model/config';
import { quantizedTensorNames } from '../gptq/format';
import { Report, ReportEval, ReportRow } from './report-types';

/**
 * A byte count for people, in decimal units as the Hub and TheBloke's tables show sizes: 2
 * decimals in B, kB, MB or GB (the report, its chart and the model card).
 */
export function formatSize(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(2)} MB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(2)} kB`;
  return `${bytes} B`;
}

/**
 * The "ExLlama" column of TheBloke's tables (the report and the model card): ExLlama loads
 * 4-bit GPTQ Llama checkpoints only, so "Yes" for 4 bits and "No" otherwise.
 */
export function exllamaCompatible(bits: number): 'Yes' | 'No' {
  return bits === 4 ? 'Yes' : 'No';
}

/** Bytes on disk of the files of a folder (recursively). */
export async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await folderBytes(p);
    else if (e.isFile()) total += (await fsp.stat(p)).size;
  }
  return total;
}

/**
 * Stored bits per weight of the decoder linears: every byte of their qweight, qzeros, scales and
 * g_idx tensors, over the number of weights they encode (Σ N·K). 4-bit with group 128 gives
 * 4 + (16 + 4)/128 + 32·K/(N·K) ≈ 4.16 plus the g_idx term.
 */
export async function bitsPerWeight(weightsFile: string, c: LlamaConfig, shapes: (name: (typeof LINEARS)[number]) => { n: number; k: number }): Promise<number> {
  const f = await SafetensorsFile.open(weightsFile);
  try {
    let bytes = 0, weights = 0;
    for (let layer = 0; layer < c.numLayers; layer++) {
      for (const name of LINEARS) {
        const names = quantizedTensorNames(linearWeight(layer, name).replace(/\.weight$/, ''));
        for (const t of [names.qweight, names.qzeros, names.scales, names.g_idx]) bytes += f.info(t).byteLength;
        const { n, k } = shapes(name);
        weights += n * k;
      }
    }
    return (8 * bytes) / weights;
  } finally {
    await f.close();
  }
}

export function gptqRowBase(m: Manifest): Omit<ReportRow, 'sizeBytes' | 'bitsPerWeight' | 'perplexity' | 'weightsId'> {
  const s = m.settings;
  return {
    name: m.branch, kind: s.rtn ? 'rtn' : 'gptq', bits: s.bits, groupSize: s.groupSize, actOrder: s.rtn ? null : s.actOrder,
    dampPercent: s.rtn ? null : s.dampPercent, dataset: m.calibration?.dataset ?? null, seqlen: m.calibration?.seqlen ?? null,
    buildSeconds: m.timings.seconds,
  };
}

/** A perplexity column of a report: the first `--dataset` (`perplexity`), then each further one. */
export interface PerplexityColumn {
  eval: ReportEval;
  /** "Perplexity" with one dataset, "Perplexity (name)" with more. */
  title: string;
  value(row: ReportRow): number | undefined;
}

export function perplexityColumns(report: Pick<Report, 'eval' | 'extraEvals'>): PerplexityColumn[] {
  const evals = [report.eval, ...(report.extraEvals ?? [])];
  const title = (e: ReportEval) => (evals.length === 1 ? 'Perplexity' : `Perplexity (${path.basename(e.dataset)})`);
  return evals.map((e, k) => ({
    eval: e,
    title: title(e),
    value: (r: ReportRow) => {
      const v = k === 0 ? r.perplexity : r.extraPerplexity?.[e.dataset];
      return typeof v === 'number' ? v : undefined;
    },
  }));
}

const fmt = (x: number | null | undefined, digits: number) => (x === null || x === undefined ? '' : x.toFixed(digits));

function describe(r: ReportRow): string {
  if (r.kind === 'fp16') return 'Unquantized base model.';
  if (r.kind === 'rtn') return `Round-to-nearest baseline on the same grid (no GPTQ), ${r.bits}-bit.`;
  const g = r.groupSize === -1 ? 'no group size' : `group size ${r.groupSize}`;
  return `${r.bits}-bit, ${g}, act-order ${r.actOrder ? 'on' : 'off'}.`;
}

/** report.md: the table, the protocol, and the chart. */
export function renderMarkdown(report: Report, chartFile: string): string {
  const fp16 = report.rows.find((r) => r.kind === 'fp16');
  const columns = perplexityColumns(report);
  const lines: string[] = [];
  lines.push(`# GPTQ branches of ${report.base.model}${report.base.revision ? ` (revision ${report.base.revision})` : ''}`, '');
  for (const c of columns) {
    lines.push(
      `${c.title} on ${c.eval.source}: ${c.eval.windows} windows of ${c.eval.seqlen} tokens ` +
        `(${c.eval.tokens} tokens in the text), the GPTQ paper's protocol; lower is better.`, '',
    );
  }
  const pplHead = columns.map((c) => ` ${c.title} | vs fp16 |`).join('');
  const pplRule = columns.map((c) => ` ${'-'.repeat(c.title.length - 1)}: | ------: |`).join('');
  lines.push(`| Branch | Bits | GS | Act Order | Damp % | GPTQ Dataset | Seq Len | Size | ExLlama | Bits/weight |${pplHead} Build time | Desc |`);
  lines.push(`| ------ | ---: | -: | --------- | -----: | ------------ | ------: | ---: | ------- | ----------: |${pplRule} ---------: | ---- |`);
  for (const r of report.rows) {
    const ppl = columns.map((c) => {
      const v = c.value(r);
      const base = fp16 ? c.value(fp16) : undefined;
      const rel = v !== undefined && base !== undefined && r !== fp16 ? `${((v / base - 1) * 100).toFixed(2)} %` : '';
      return ` ${fmt(v, 3)} | ${rel} |`;
    }).join('');
    const gs = r.groupSize === null ? '' : r.groupSize === -1 ? 'None' : String(r.groupSize);
    const act = r.actOrder === null ? '' : r.actOrder ? 'Yes' : 'No';
    const damp = r.dampPercent === null ? '' : String(r.dampPercent);
    const build = r.buildSeconds === null ? '' : `${r.buildSeconds.toFixed(0)} s`;
    const exllama = r.kind === 'fp16' ? '' : exllamaCompatible(r.bits);
    lines.push(
      `| ${r.name} | ${r.bits} | ${gs} | ${act} | ${damp} | ${r.dataset ?? ''} | ${r.seqlen ?? ''} | ${formatSize(r.sizeBytes)} | ${exllama} | ` +
        `${fmt(r.bitsPerWeight, 2)} |${ppl} ${build} | ${describe(r)} |`,
    );
  }
  lines.push('', `![size on disk against perplexity](${chartFile})`, '');
  lines.push(`Generated by gptq-forge on ${report.createdAt}.`, '');
  return lines.join('\n');
}
