/**
 * `gptq eval`: perplexity of a model on a dataset, with the native engine on the GPU
 * (`--device cuda`, the default where one is visible) or the CPU, or through
 * onnxruntime-node (`--engine onnx`: the model is exported with export-onnx, or `--onnx FILE`
 * names an existing export).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { UsageError } from '../errors';
import { loadEvalSet } from '../data/eval-set';
import { PerplexityResult, evaluatePerplexity } from '../eval/perplexity';
import { CudaEvalStats } from '../eval/perplexity-cuda';
import { chooseDevice, Device } from '../device';
import { checkOnnxExportOf } from '../eval/onnx/onnx-identity';
import { evaluatePerplexityOnnx, openOnnxSession } from '../eval/onnx/perplexity-onnx';
import { checkBranchSettings } from '../gptq/settings-branch';
import { resolveModel } from '../hub/resolve';
import { LlamaModel } from '../model/llama-model';
import { nativeThreads } from '../native';
import { describe, exportModel } from './export-onnx';
import { deviceOption, positiveInt } from './options';
import { createProgress } from './progress';

interface EvalFlags {
  model: string;
  revision?: string;
  dataset: string;
  split?: 'train' | 'validation' | 'test';
  seqlen: number;
  maxWindows?: number;
  json?: boolean;
  fp32Activations?: boolean;
  quiet?: boolean;
  engine: 'native' | 'onnx';
  onnx?: string;
  device?: Device;
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('perplexity of an fp16 Llama model or GPTQ branch (local folder or Hub repo) on a dataset')
    .requiredOption('--model <path-or-repo>', 'local model folder or Hugging Face repo id')
    .option('--revision <rev>', 'Hub branch, tag or commit (with a repo id)')
    .requiredOption('--dataset <name-or-file>', 'wikitext2, wikitext2-v1, c4 (the get_c4 eval), c4-new (the get_c4_new eval), or a .txt/.raw/.parquet file')
    .addOption(
      new Option('--split <split>', 'split of a named dataset (default: test; validation for c4 and c4-new)').choices(['train', 'validation', 'test']),
    )
    .option('--seqlen <n>', 'tokens per evaluation window', positiveInt, 4096)
    .option('--max-windows <k>', 'evaluate only the first k windows', positiveInt)
    .option('--json', 'print one JSON object on stdout')
    .option('--fp32-activations', 'keep activations in fp32 (default: stored as fp16, as transformers does)')
    .addOption(new Option('--engine <engine>', 'native CPU engine, or onnxruntime-node (CPU)').choices(['native', 'onnx']).default('native'))
    .addOption(deviceOption('native engine'))
    .option('--onnx <file.onnx>', 'with --engine onnx: an existing export of --model (default: export to a temporary folder)')
    .option('--quiet', 'no progress output')
    .action(async (flags: EvalFlags) => {
      const result = await runEval(flags);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
      } else {
        const rate = result.tflops !== undefined ? `, ${result.tflops.toFixed(0)} TFLOP/s on ${result.device}` : '';
        process.stdout.write(
          `perplexity ${result.perplexity.toFixed(4)}  (${result.windows} windows × ${result.seqlen} tokens ` +
            `of ${result.tokens}; ${result.seconds.toFixed(1)} s, ${result.tokensPerSecond.toFixed(0)} tokens/s${rate})\n`,
        );
      }
    });
}

export interface EvalResult {
  model: string;
  dataset: string;
  perplexity: number;
  tokens: number;
  windows: number;
  seqlen: number;
  evaluatedTokens: number;
  seconds: number;
  tokensPerSecond: number;
  engine: string;
  /** The GPU's name with --device cuda, else "cpu". */
  device: string;
  threads: number;
  activations: 'fp16' | 'fp32';
  /** Peak resident memory of the process (GB). */
  maxRssGb: number;
  /** --device cuda: achieved TFLOP/s (the counted FLOPs over `seconds`) and where the time went. */
  tflops?: number;
  cuda?: CudaEvalStats & { readGBps: number };
}

async function runEval(flags: EvalFlags): Promise<EvalResult> {
  if (flags.onnx !== undefined && flags.engine !== 'onnx') throw new UsageError('--onnx needs --engine onnx');
  if (flags.engine === 'onnx' && flags.device === 'cuda') throw new UsageError('--engine onnx runs on the CPU; --device cuda is for the native engine');
  const device = flags.engine === 'onnx' ? 'cpu' : chooseDevice(flags.device);
  if (device === 'cuda' && flags.fp32Activations) throw new UsageError('--fp32-activations is for --device cpu (the GPU keeps fp16 activations, as transformers)');
  const dir = await resolveModel(flags.model, { revision: flags.revision });
  await checkBranchSettings(dir);
  const model = await LlamaModel.open(dir);
  let tmpDir: string | undefined;
  try {
    if (!flags.quiet) process.stderr.write('tokenizing (cached after the first run)…\n');
    const { ids, windows, source } = await loadEvalSet(dir, flags.dataset, { split: flags.split, seqlen: flags.seqlen, maxWindows: flags.maxWindows });
    let onnxFile = flags.onnx;
    if (flags.engine === 'onnx' && onnxFile === undefined) {
      tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'gptq-eval-onnx-'));
      onnxFile = path.join(tmpDir, 'model.onnx');
      const t = process.hrtime.bigint();
      const res = await exportModel(dir, onnxFile, { quiet: flags.quiet });
      if (!flags.quiet) {
        const s = Number(process.hrtime.bigint() - t) / 1e9;
        process.stderr.write(`exported to ONNX in ${s.toFixed(1)} s: ${describe(res.linears)}\n`);
      }
    }
    const progress = createProgress('eval', { quiet: flags.quiet });
    const onProgress = (done: number, total: number, label: string) => progress.update(done, total, label);
    const threads = nativeThreads();
    const t0 = process.hrtime.bigint();
    let res: PerplexityResult;
    let stats: CudaEvalStats | undefined;
    if (onnxFile !== undefined) {
      const session = await openOnnxSession(onnxFile, threads);
      try {
        // an existing export must be one of --model (not of another model or branch)
        if (flags.onnx !== undefined) await checkOnnxExportOf(flags.onnx, model, flags.model);
        res = await evaluatePerplexityOnnx(session, windows.tokens, flags.seqlen, { threads, onProgress });
      } finally {
        await session.release();
      }
    } else {
      const r = await evaluatePerplexity(model, windows.tokens, flags.seqlen, { device, round16: !flags.fp32Activations, onProgress });
      res = r;
      stats = r.stats;
    }
    progress.stop();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const evaluated = res.windows * res.seqlen;
    return {
      model: flags.model, dataset: source, perplexity: res.perplexity, tokens: ids.length,
      windows: res.windows, seqlen: res.seqlen, evaluatedTokens: evaluated, seconds,
      tokensPerSecond: evaluated / seconds, engine: onnxFile !== undefined ? 'onnxruntime-cpu' : `native-${device}`,
      device: stats?.device ?? 'cpu',
      threads,
      // the ONNX graph computes in fp32 throughout
      activations: onnxFile !== undefined || flags.fp32Activations ? 'fp32' : 'fp16',
      maxRssGb: process.resourceUsage().maxRSS / 1e6,
      ...(stats ? { tflops: stats.flops.total / seconds / 1e12, cuda: { ...stats, readGBps: stats.bytesRead / stats.stages.read / 1e9 } } : {}),
    };
  } finally {
    await model.close();
    if (tmpDir) await fs.rm(tmpDir, { recursive: true, force: true });
  }
}
