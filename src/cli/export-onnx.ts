/**
 * `gptq export-onnx`: an fp16 model or a GPTQ branch as an ONNX graph that onnxruntime-node
 * runs (FILE.onnx plus FILE.onnx.data with the weights).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { UserError } from '../errors';
import { ExportResult, LinearExport, exportLlamaOnnx } from '../eval/onnx/llama-graph';
import { resolveModel } from '../hub/resolve';
import { readOnnxModel } from '../io/onnx-file';
import { modelInputs, OutputLock, refuseOverlap } from '../io/output-guard';
import { LlamaModel } from '../model/llama-model';
import { createProgress } from './progress';

interface ExportFlags {
  out: string;
  revision?: string;
  force?: boolean;
  json?: boolean;
  quiet?: boolean;
}

export function registerExportOnnx(program: Command): void {
  program
    .command('export-onnx')
    .description('write an fp16 Llama model or a GPTQ branch as an ONNX graph (MatMulNBits where ORT supports it)')
    .argument('<model-or-branch>', 'local model / branch folder or Hugging Face repo id')
    .requiredOption('--out <file.onnx>', 'model file to write (weights go to <file.onnx>.data)')
    .option('--revision <rev>', 'Hub branch, tag or commit (with a repo id)')
    .option('--force', 'overwrite an existing --out')
    .option('--json', 'print one JSON object on stdout')
    .option('--quiet', 'no progress output')
    .action(async (model: string, flags: ExportFlags) => {
      const t0 = process.hrtime.bigint();
      const res = await exportModel(model, flags.out, flags);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (flags.json) {
        const { linears, ...rest } = res;
        process.stdout.write(`${JSON.stringify({ model, ...rest, seconds, summary: summarize(linears) })}\n`);
      } else {
        process.stdout.write(
          `wrote ${res.file} (${kib(res.modelBytes)} KiB) and ${path.basename(res.dataFile)} ` +
            `(${(res.dataBytes / 2 ** 20).toFixed(1)} MiB) in ${seconds.toFixed(1)} s\n${describe(res.linears)}\n`,
        );
      }
    });
}

/** Model files of this tool's exports are graphs only (the weights are in .data): a bigger file is not one. */
const MAX_EXPORT_MODEL_BYTES = 1 << 30;

/** Is `file` (a regular file) an ONNX model written by gptq-forge? */
async function isOurExport(file: string): Promise<boolean> {
  const st = await fs.stat(file).catch(() => null);
  if (!st?.isFile() || st.size > MAX_EXPORT_MODEL_BYTES) return false;
  try {
    const m = await readOnnxModel(file);
    return m.producerName === 'gptq-forge';
  } catch {
    return false;
  }
}

/**
 * Checks both outputs (FILE.onnx, FILE.onnx.data) before anything is written: each is absent,
 * or a regular file that --force may replace because it is this tool's export (the data file
 * goes with an export of ours beside it). Folders, links and foreign files are never replaced.
 */
async function checkOnnxOutputs(out: string, force: boolean): Promise<void> {
  const folder = path.dirname(path.resolve(out));
  const st = await fs.stat(folder).catch(() => null);
  if (!st?.isDirectory()) throw new UserError(`--out ${out}: folder ${folder} does not exist`);
  const data = `${out}.data`;
  let ours: boolean | undefined;
  for (const f of [out, data]) {
    const l = await fs.lstat(f).catch(() => null);
    if (l === null) continue;
    if (l.isSymbolicLink()) throw new UserError(`${f} is a symbolic link; it is never replaced, even with --force: give another --out`);
    if (!l.isFile()) throw new UserError(`${f} exists and is not a file; it is never replaced, even with --force: give another --out`);
    ours ??= await isOurExport(out);
    if (!ours) {
      const why = f === out ? 'it is not an ONNX export of this tool' : `${path.basename(out)} beside it is not an ONNX export of this tool`;
      throw new UserError(`${f} already exists (use --force only to overwrite an export of gptq-forge: ${why}, so it is never replaced)`);
    }
    if (!force) throw new UserError(`${f} already exists (use --force to overwrite)`);
  }
}

/** Resolves, opens and exports `model` to `out` (used by `gptq eval --engine onnx` too). */
export async function exportModel(
  model: string, out: string, opts: { revision?: string; force?: boolean; quiet?: boolean },
): Promise<ExportResult> {
  // Everything is checked before anything is written.
  await checkOnnxOutputs(out, !!opts.force);
  const dir = await resolveModel(model, { revision: opts.revision });
  const inputs = await modelInputs(dir, model);
  await refuseOverlap('--out', out, inputs);
  await refuseOverlap('--out', `${out}.data`, inputs);
  const llama = await LlamaModel.open(dir);
  let lock: OutputLock | undefined;
  try {
    // One writer per output; checked again under the lock.
    lock = await OutputLock.acquire('--out', out);
    await checkOnnxOutputs(out, !!opts.force);
    const progress = createProgress('export-onnx', { quiet: opts.quiet });
    const res = await exportLlamaOnnx(llama, out, (d, t, l) => progress.update(d, t, l));
    progress.stop();
    return res;
  } finally {
    await lock?.release();
    await llama.close();
  }
}

export interface LinearSummary {
  matMul: number;
  matMulNBits: number;
  actOrderGathers: number;
  dequantized: { count: number; reasons: string[] };
}

export function summarize(linears: LinearExport[]): LinearSummary {
  const deq = linears.filter((l) => l.reason !== undefined);
  return {
    matMul: linears.filter((l) => l.op === 'MatMul').length,
    matMulNBits: linears.filter((l) => l.op === 'MatMulNBits').length,
    actOrderGathers: linears.filter((l) => l.permuted).length,
    dequantized: { count: deq.length, reasons: [...new Set(deq.map((l) => l.reason!))] },
  };
}

/** One line saying how the linears were exported (and why any quantized one was not). */
export function describe(linears: LinearExport[]): string {
  const s = summarize(linears);
  if (s.matMulNBits === 0 && s.dequantized.count === 0) return `${s.matMul} linears as MatMul (fp16 weights, fp32 compute)`;
  const parts = [];
  if (s.matMulNBits > 0) {
    const blocks = [...new Set(linears.filter((l) => l.blockSize).map((l) => l.blockSize))].join('/');
    parts.push(`${s.matMulNBits} linears as com.microsoft MatMulNBits (block ${blocks}` +
      `${s.actOrderGathers ? `, ${s.actOrderGathers} with act-order K permutation` : ''})`);
  }
  if (s.dequantized.count > 0) {
    parts.push(`${s.dequantized.count} as dequantized fp16 MatMul: ${s.dequantized.reasons.join('; ')}`);
  }
  return parts.join('; ');
}

function kib(n: number): string {
  return (n / 1024).toFixed(0);
}
