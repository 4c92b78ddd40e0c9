/** `gptq eval`: perplexity of a model on a dataset with the native CPU engine. */
import { Command, Option } from 'commander';
import { loadDatasetText } from '../data/datasets';
import { tokenizeCached } from '../data/tokenizer';
import { evalWindows } from '../data/windows';
import { evaluatePerplexity } from '../eval/perplexity';
import { resolveModel } from '../hub/resolve';
import { LlamaModel } from '../model/llama-model';
import { nativeThreads } from '../native';
import { positiveInt } from './options';
import { createProgress } from './progress';

interface EvalFlags {
  model: string;
  revision?: string;
  dataset: string;
  split: 'train' | 'validation' | 'test';
  seqlen: number;
  maxWindows?: number;
  json?: boolean;
  fp32Activations?: boolean;
  quiet?: boolean;
}

export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('perplexity of an fp16 Llama model (local folder or Hub repo) on a dataset')
    .requiredOption('--model <path-or-repo>', 'local model folder or Hugging Face repo id')
    .option('--revision <rev>', 'Hub branch, tag or commit (with a repo id)')
    .requiredOption('--dataset <name-or-file>', 'wikitext2, wikitext2-v1, or a .txt/.raw/.parquet file')
    .addOption(
      new Option('--split <split>', 'split of a named dataset').choices(['train', 'validation', 'test']).default('test'),
    )
    .option('--seqlen <n>', 'tokens per evaluation window', positiveInt, 4096)
    .option('--max-windows <k>', 'evaluate only the first k windows', positiveInt)
    .option('--json', 'print one JSON object on stdout')
    .option('--fp32-activations', 'keep activations in fp32 (default: stored as fp16, as transformers does)')
    .option('--quiet', 'no progress output')
    .action(async (flags: EvalFlags) => {
      const result = await runEval(flags);
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
      } else {
        process.stdout.write(
          `perplexity ${result.perplexity.toFixed(4)}  (${result.windows} windows × ${result.seqlen} tokens ` +
            `of ${result.tokens}; ${result.seconds.toFixed(1)} s, ${result.tokensPerSecond.toFixed(0)} tokens/s)\n`,
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
  threads: number;
  activations: 'fp16' | 'fp32';
}

async function runEval(flags: EvalFlags): Promise<EvalResult> {
  const dir = await resolveModel(flags.model, { revision: flags.revision });
  const model = await LlamaModel.open(dir);
  try {
    const { text, source } = await loadDatasetText(flags.dataset, {
      split: flags.split, revision: undefined,
    });
    if (!flags.quiet) process.stderr.write('tokenizing (cached after the first run)…\n');
    const ids = await tokenizeCached(dir, text, { addBos: true });
    const windows = evalWindows(ids, flags.seqlen, flags.maxWindows);
    const progress = createProgress('eval', { quiet: flags.quiet });
    const t0 = process.hrtime.bigint();
    const res = await evaluatePerplexity(model, windows.tokens, flags.seqlen, {
      round16: !flags.fp32Activations,
      onProgress: (done, total, label) => progress.update(done, total, label),
    });
    progress.stop();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const evaluated = res.windows * res.seqlen;
    return {
      model: flags.model, dataset: source, perplexity: res.perplexity, tokens: ids.length,
      windows: res.windows, seqlen: res.seqlen, evaluatedTokens: evaluated, seconds,
      tokensPerSecond: evaluated / seconds, engine: 'native-cpu', threads: nativeThreads(),
      activations: flags.fp32Activations ? 'fp32' : 'fp16',
    };
  } finally {
    await model.close();
  }
}
