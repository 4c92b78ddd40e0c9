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

/** Resolves, opens and exports `model` to `out` (used by `gptq eval --engine onnx` too). */
export async function exportModel(
  model: string, out: string, opts: { revision?: string; force?: boolean; quiet?: boolean },
): Promise<ExportResult> {
  if (!opts.force) {
    for (const f of [out, `${out}.data`]) {
      if (await fs.stat(f).then(() => true, () => false)) {
        throw new UserError(`${f} already exists (use --force to overwrite)`);
      }
    }
  }
  const st = await fs.stat(path.dirname(path.resolve(out))).catch(() => null);
  if (!st?.isDirectory()) throw new UserError(`--out ${out}: folder ${path.dirname(path.resolve(out))} does not exist`);
  const dir = await resolveModel(model, { revision: opts.revision });
  const llama = await LlamaModel.open(dir);
  try {
    const progress = createProgress('export-onnx', { quiet: opts.quiet });
    const res = await exportLlamaOnnx(llama, out, (d, t, l) => progress.update(d, t, l));
    progress.stop();
    return res;
  } finally {
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
