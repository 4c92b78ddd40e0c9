/** `gptq quantize`: one GPTQ branch of an fp16 Llama checkpoint, in the AutoGPTQ format. */
import { Command, InvalidArgumentError, Option } from 'commander';
import { UsageError, UserError } from '../errors';
import { Split } from '../data/datasets';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { checkReplaceableFolder, modelInputs, OutputLock, refuseOverlap, removeDeadPartials } from '../io/output-guard';
import { buildBranch } from '../gptq/build-branch';
import { Device, MANIFEST_FORMAT } from '../gptq/manifest';
import { pickDevice } from '../gptq/device';
import { loadCalibration } from '../gptq/calibration-set';
import { StageTimes } from '../gptq/engine';
import { applyRecipe, recipeContext } from '../gptq/recipes';
import { GPTAQ_DEFAULT_ALPHA, QEP_DEFAULT_ALPHA, QuantizeSettings, validateSettings } from '../gptq/settings';
import { resolveModel } from '../hub/resolve';
import { modelFingerprint } from '../model/fingerprint';
import { LlamaModel } from '../model/llama-model';
import { nativeThreads } from '../native';
import { deviceOption, nonNegativeInt, positiveInt, recipeOption, recipesHelpText } from './options';
import { createProgress } from './progress';

interface QuantizeFlags {
  model: string;
  revision?: string;
  out: string;
  bits: number;
  groupSize: number;
  actOrder: boolean;
  damp: number;
  sym: boolean;
  staticGroups?: boolean;
  mse?: boolean;
  qep?: number;
  recipe?: string;
  gptaq?: number;
  trueSequential: boolean;
  dataset: string;
  split: Split;
  nsamples: number;
  seqlen: number;
  seed: number;
  force?: boolean;
  rtn?: boolean;
  json?: boolean;
  quiet?: boolean;
  device?: Device;
}

function groupSize(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || (n !== -1 && n <= 0)) throw new InvalidArgumentError('expected -1 or a positive integer.');
  return n;
}

function integer(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n)) throw new InvalidArgumentError('expected an integer.');
  return n;
}

function fraction(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a number such as 0.01.');
  return n;
}

export function registerQuantize(program: Command): void {
  program
    .command('quantize')
    .description('quantize an fp16 Llama checkpoint with GPTQ into one AutoGPTQ-format branch')
    .requiredOption('--model <path-or-repo>', 'local model folder or Hugging Face repo id')
    .option('--revision <rev>', 'Hub branch, tag or commit (with a repo id)')
    .requiredOption('--out <dir>', 'output folder of the branch')
    .option('--bits <b>', 'bits per weight: 2, 3, 4 or 8', integer, 4)
    .option('--group-size <g>', 'columns per quantization group, -1 for none', groupSize, 128)
    .option('--act-order', 'quantize columns by decreasing Hessian diagonal (desc_act)', true)
    .option('--no-act-order', 'quantize columns in natural order')
    .option('--damp <fraction>', 'damp_percent: damping as a fraction of the mean Hessian diagonal', fraction, 0.01)
    .option('--sym', 'symmetric grid (default)', true)
    .option('--no-sym', 'asymmetric grid')
    .option('--static-groups', 'fix group grids before the solve (with act-order)')
    .option('--mse', 'shrink each grid to minimise Σ|q − w|^2.4 (the GPTQ reference Quantizer\'s mse option; AutoGPTQ does not use it)')
    .addOption(new Option('--qep [alpha]', `quantization error propagation (QEP): quantize each linear toward the fp16 model's outputs, W* = W + α·W·C·H⁻¹; α in (0, 1], ${QEP_DEFAULT_ALPHA} without a value (twice the activation memory)`)
      .preset(String(QEP_DEFAULT_ALPHA)).argParser(fraction))
    .addOption(new Option('--gptaq [alpha]', `GPTAQ asymmetric calibration: each GPTQ solve fits the fp16 model's outputs W·X̃ (a term α·triu(ΔX·Xᵀ·Uᵀ)·U in its column updates); α in (0, 1], ${GPTAQ_DEFAULT_ALPHA} without a value (CPU and CUDA engines; twice the activation memory; not with --qep; more than 2× the cost of plain GPTQ: 2.5× on a 70B-shaped layer, H200)`)
      .preset(String(GPTAQ_DEFAULT_ALPHA)).argParser(fraction))
    .addOption(recipeOption('on top of --bits, --group-size and --act-order'))
    .option('--no-true-sequential', 'gather all Hessians of a layer before quantizing any of it')
    .requiredOption('--dataset <name-or-file>', 'calibration text: wikitext2, wikitext2-v1, c4 (or c4-new, the same), or a .txt/.raw/.parquet file')
    .addOption(new Option('--split <split>', 'split of a named dataset').choices(['train', 'validation', 'test']).default('train'))
    .option('--nsamples <n>', 'calibration windows', positiveInt, 128)
    .option('--seqlen <n>', 'tokens per calibration window', positiveInt, 4096)
    .option('--seed <n>', 'seed of the calibration sampler (Python random)', nonNegativeInt, 0)
    .option('--force', 'replace an output folder that already holds files')
    .option('--rtn', 'round-to-nearest on the same grid instead of GPTQ (baseline; no calibration)')
    .option('--json', 'print a JSON summary on stdout')
    .option('--quiet', 'no progress output')
    .addOption(deviceOption())
    .addHelpText('after', recipesHelpText())
    .action(async (flags: QuantizeFlags, command: Command) => {
      // A recipe's value where the flag was not given on the command line (a default is not explicit).
      const summary = await runQuantize(flags, (key) => command.getOptionValueSource(key) === 'cli');
      if (flags.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else printSummary(summary);
    });
}

export interface QuantizeSummary {
  out: string;
  settings: QuantizeSettings;
  seconds: number;
  times: StageTimes;
  loss: number;
  linears: number;
  calibration: { source: string; nsamples: number; seqlen: number; seed: number; digest: string } | null;
  threads: number;
}

async function runQuantize(flags: QuantizeFlags, explicit: (key: string) => boolean): Promise<QuantizeSummary> {
  const own: QuantizeSettings = {
    // Round-to-nearest has no column order: its branch is written with desc_act false.
    bits: flags.bits, groupSize: flags.groupSize, actOrder: flags.actOrder && !flags.rtn, staticGroups: !!flags.staticGroups,
    sym: flags.sym, mse: !!flags.mse, dampPercent: flags.damp, trueSequential: flags.trueSequential, rtn: !!flags.rtn,
    ...(flags.qep !== undefined ? { qep: flags.qep } : {}),
    ...(flags.gptaq !== undefined ? { gptaq: flags.gptaq } : {}),
  };
  // The recipe keys are the quantize flags' attribute names (mse, qep, damp, staticGroups).
  const settings = applyRecipe(flags.recipe, own, explicit);
  const dir = await resolveModel(flags.model, { revision: flags.revision });
  const model = await LlamaModel.open(dir);
  const t0 = Date.now();
  const out = flags.out.replace(/(.)\/+$/, '$1');
  const workDir = `${out}.partial-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  let lock: OutputLock | null = null;
  // Ctrl-C / kill: remove the work folder and the lock, then exit as an interrupted process does.
  const cleanup = () => {
    void fsp.rm(workDir, { recursive: true, force: true })
      .then(() => lock?.release())
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', cleanup);
  process.once('SIGTERM', cleanup);
  try {
    if (model.quantization) throw new UserError(`${flags.model} is already a GPTQ branch; quantize the fp16 model`);
    let device: Device;
    try {
      validateSettings(settings, model.config);
      device = pickDevice(flags.device, settings);
    } catch (e) {
      const why = recipeContext(settings.recipe);
      if (why === '' || !(e instanceof UserError)) throw e;
      throw e instanceof UsageError ? new UsageError(`${e.message}${why}`) : new UserError(`${e.message}${why}`);
    }
    // Every check before any work: the output is not the model (nor holds it, nor lies in it),
    // and is absent, empty or (with --force) a finished branch of this tool.
    await refuseOverlap('--out', out, await modelInputs(dir, flags.model));
    const force = !!flags.force;
    await checkReplaceableFolder('--out', out, force, MANIFEST_FORMAT);
    const calib = settings.rtn
      ? null
      : await loadCalibration(dir, flags.dataset, {
        split: flags.split, nsamples: flags.nsamples, seqlen: flags.seqlen, seed: flags.seed,
      });
    const base = { model: flags.model, revision: flags.revision ?? null, fingerprint: await modelFingerprint(dir, model.checkpoint) };
    // One writer per output: the lock beside it, then the check again under the lock.
    lock = await OutputLock.acquire('--out', out);
    await checkReplaceableFolder('--out', out, force, MANIFEST_FORMAT);
    for (const r of await removeDeadPartials(out)) {
      if (!flags.quiet) process.stderr.write(`removed ${r.dir}, left by a gptq quantize that was killed (pid ${r.pid})\n`);
    }
    const held = lock;
    const progress = createProgress('quantize', { quiet: flags.quiet });
    const res = await buildBranch({
      model, base, branch: path.basename(out), settings, device, calib, dataset: flags.dataset, split: flags.split,
      out, workDir, resume: false, resumable: false,
      // Right before the rename: still ours, and still nothing there that may not be replaced.
      beforeSwap: async () => {
        await held.assertHeld();
        await checkReplaceableFolder('--out', out, force, MANIFEST_FORMAT);
      },
      events: {
        onProgress: (d, t, label) => progress.update(d, t, label),
        onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
        onStage: () => progress.stop(),
      },
    });
    progress.stop();
    const t = res.manifest.timings;
    return {
      out: flags.out, settings, seconds: (Date.now() - t0) / 1000,
      times: { load: t.load, forward: t.forward, hessian: t.hessian, solve: t.solve, sink: t.sink + t.assemble },
      loss: res.loss, linears: res.linears,
      calibration: calib && { source: calib.source, nsamples: calib.nsamples, seqlen: calib.seqlen, seed: calib.seed, digest: calib.digest },
      threads: nativeThreads(),
    };
  } catch (e) {
    await fsp.rm(workDir, { recursive: true, force: true });
    throw e;
  } finally {
    await lock?.release();
    process.removeListener('SIGINT', cleanup);
    process.removeListener('SIGTERM', cleanup);
    await model.close();
  }
}

function printSummary(s: QuantizeSummary): void {
  const t = s.times;
  const g = s.settings;
  process.stdout.write(
    `wrote ${s.out}: ${g.bits}-bit, group ${g.groupSize}, act-order ${g.actOrder}, damp ${g.dampPercent}` +
      `${g.mse ? ', mse grid' : ''}${g.qep !== undefined ? `, QEP α ${g.qep}` : ''}${g.gptaq !== undefined ? `, GPTAQ α ${g.gptaq}` : ''}${g.rtn ? ' (round-to-nearest)' : ''}` +
      `${g.recipe !== undefined ? `, recipe ${g.recipe}${g.recipeSkipped !== undefined ? ` (skipped: ${g.recipeSkipped})` : ''}` : ''}\n` +
      `${s.linears} linears${g.rtn ? '' : `, summed loss ${s.loss.toPrecision(6)}`}, ${s.seconds.toFixed(1)} s ` +
      `(load ${t.load.toFixed(1)}, forward ${t.forward.toFixed(1)}, hessian ${t.hessian.toFixed(1)}, ` +
      `solve ${t.solve.toFixed(1)}, pack+write ${t.sink.toFixed(1)})\n`,
  );
}
