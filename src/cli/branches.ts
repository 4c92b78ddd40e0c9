/**
 * `gptq branches`: every branch of a matrix file, built one after the other into DIR/<branch>/,
 * with per-layer checkpoints so that a killed run continues (`--resume`) where it stopped.
 */
import { Command, Option } from 'commander';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { chooseDevice } from '../device';
import { UserError } from '../errors';
import { Split } from '../data/datasets';
import { WORK_SUFFIX } from '../gptq/branch-work';
import { branchStatus, checkBranchesDir, matchesMatrix, resumeMismatch, settingsOf } from '../gptq/branches-dir';
import { buildBranch } from '../gptq/build-branch';
import { Device, MANIFEST_FORMAT } from '../gptq/manifest';
import { checkReplaceableFolder, modelInputs, refuseOverlap } from '../io/output-guard';
import { pickDevice } from '../gptq/device';
import { CalibrationSet, loadCalibration, readSharedCalibration } from '../gptq/calibration-set';
import { checkHostLimits } from '../gptq/host-limits';
import { loadMatrix, MatrixBranch, selectBranches } from '../gptq/matrix';
import { recipeContext } from '../gptq/recipes';
import { validateSettings } from '../gptq/settings';
import { resolveModel } from '../hub/resolve';
import { modelFingerprint } from '../model/fingerprint';
import { LlamaModel } from '../model/llama-model';
import { deviceOption, nonNegativeInt, nonNegativeNumber, positiveInt, recipeOption, recipesHelpText } from './options';
import { createProgress } from './progress';
import { buildOnWorkers, workerProgress } from './branches-workers';
import { checkDevicesFlags, devicesOption, DevicesFlags, devicesText, devicesWorkers, maxWorkersOption } from './devices';
import { sendToParent, watchParent } from './worker-channel';
import { stopWorkers } from './workers';

export interface BranchesFlags extends DevicesFlags {
  model?: string;
  revision?: string;
  matrix: string;
  out?: string;
  only?: string;
  resume?: boolean;
  force?: boolean;
  list?: boolean;
  dataset?: string;
  split?: Split;
  nsamples?: number;
  seqlen?: number;
  seed?: number;
  recipe?: string;
  checkpointEvery: number;
  json?: boolean;
  quiet?: boolean;
  device?: Device;
  /** Internal: this process is one worker of a --devices parent (see worker-channel.ts). */
  worker?: boolean;
  /** Internal, with --worker: the shared calibration file of the branch. */
  calibrationFrom?: string;
}

export interface BranchOutcome {
  name: string;
  status: 'built' | 'resumed' | 'skipped';
  seconds: number;
  dir: string;
}

export function registerBranches(program: Command): void {
  program
    .command('branches')
    .description('build every branch of a matrix file (resumable), one folder per branch')
    .requiredOption('--matrix <file>', 'branch matrix (JSON), e.g. configs/llama-2-70b-gptq.json')
    .option('--model <path-or-repo>', 'fp16 model: local folder or Hugging Face repo id')
    .option('--revision <rev>', 'Hub branch, tag or commit of --model')
    .option('--out <dir>', 'folder that receives one subfolder per branch')
    .option('--only <names>', 'comma-separated branch names to build (default: all)')
    .option('--resume', 'continue an interrupted run: skip finished branches, restart at the first unfinished layer')
    .option('--force', 'rebuild branches that are already finished')
    .option('--list', 'print the matrix\'s branch names as JSON and exit (for CI job matrices)')
    .option('--dataset <name-or-file>', 'override every branch\'s calibration dataset')
    .addOption(new Option('--split <split>', 'override the dataset split').choices(['train', 'validation', 'test']))
    .option('--nsamples <n>', 'override the calibration windows', positiveInt)
    .option('--seqlen <n>', 'override the tokens per calibration window', positiveInt)
    .option('--seed <n>', 'override the calibration seed', nonNegativeInt)
    .addOption(recipeOption('to every branch, in place of the matrix\'s "recipe"'))
    .option('--checkpoint-every <minutes>', 'keep the calibration activations for --resume at most this often (0: after every layer)', nonNegativeNumber, 10)
    .option('--json', 'print a JSON summary on stdout')
    .option('--quiet', 'no progress output')
    .addOption(deviceOption())
    .addOption(devicesOption('build branches in parallel, one worker process'))
    .addOption(maxWorkersOption())
    .addOption(new Option('--worker').hideHelp())
    .addOption(new Option('--calibration-from <file>').hideHelp())
    .addHelpText('after', recipesHelpText())
    .action(async (flags: BranchesFlags) => {
      const matrix = await loadMatrix(flags.matrix);
      const selected = selectBranches(matrix, flags.only);
      if (flags.list) {
        process.stdout.write(`${JSON.stringify(selected.map((b) => b.name))}\n`);
        return;
      }
      if (!flags.model) throw new UserError('--model is required (except with --list)');
      if (!flags.out) throw new UserError('--out is required (except with --list)');
      checkDevicesFlags(flags);
      if (flags.worker) watchParent();
      const branches = selected.map((b): MatrixBranch => ({
        ...b, dataset: flags.dataset ?? b.dataset, split: flags.split ?? b.split, nsamples: flags.nsamples ?? b.nsamples,
        seqlen: flags.seqlen ?? b.seqlen, seed: flags.seed ?? b.seed, ...(flags.recipe !== undefined ? { recipe: flags.recipe } : {}),
      }));
      const outcomes = await runBranches(flags.model, flags.out, branches, flags);
      if (flags.json) process.stdout.write(`${JSON.stringify(outcomes)}\n`);
      else for (const o of outcomes) process.stdout.write(`${o.status.padEnd(8)} ${o.dir}  ${o.seconds.toFixed(1)} s\n`);
    });
}

async function runBranches(modelSpec: string, out: string, branches: MatrixBranch[], flags: BranchesFlags): Promise<BranchOutcome[]> {
  const dir = await resolveModel(modelSpec, { revision: flags.revision });
  const model = await LlamaModel.open(dir);
  // Killed or interrupted: the work folders stay for --resume.
  let current: string | null = null;
  let parallel = false;
  const interrupted = () => {
    stopWorkers();
    if (parallel) process.stderr.write('\ninterrupted; the workers were stopped: rerun with --resume to continue each branch from its last checkpoint\n');
    if (current) process.stderr.write(`\ninterrupted during ${current}; rerun with --resume to continue from its last finished layer\n`);
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    if (model.quantization) throw new UserError(`${modelSpec} is already a GPTQ branch; build branches from the fp16 model`);
    // --devices: each device checked before anything else; the workers are chosen once the
    // branches left to build are known (no idle worker, none for one branch on this device).
    const workersFor = devicesWorkers(flags, flags.device ?? chooseDevice(undefined));
    const devices = new Map<string, Device>();
    for (const b of branches) {
      try {
        validateSettings(settingsOf(b), model.config);
        devices.set(b.name, pickDevice(flags.device, settingsOf(b)));
      } catch (e) {
        throw e instanceof UserError ? new UserError(`branch ${b.name}: ${e.message.replace(/^--/, '')}${recipeContext(b.recipe)}`) : e;
      }
    }
    const fingerprint = await modelFingerprint(dir, model.checkpoint);
    // Every check before any work, so that a refusal never comes hours into a run: the output
    // folder, each branch's place in it, and each branch's calibration text.
    await checkBranchesDir(out, fingerprint, modelSpec);
    await refuseOverlap('--out', out, await modelInputs(dir, modelSpec));
    const plan: { b: MatrixBranch; resume: boolean; skip: boolean; replace: boolean }[] = [];
    const statuses = new Map<string, Awaited<ReturnType<typeof branchStatus>>>();
    for (const b of branches) {
      const where = path.join(out, b.name);
      let st: Awaited<ReturnType<typeof branchStatus>>;
      try {
        st = await branchStatus(out, b.name);
      } catch (e) {
        throw e instanceof UserError ? new UserError(`branch ${b.name}: ${e.message}`) : e;
      }
      statuses.set(b.name, st);
      if (st.kind === 'foreign') {
        throw new UserError(`${where} holds ${st.what} and is not a branch of this tool; it is never replaced, even with --force: remove it or use another --out`);
      }
      if (st.kind === 'partial' && !flags.resume) {
        throw new UserError(`${where}${WORK_SUFFIX} holds an interrupted build (${st.layersDone}/${st.numLayers} layers done); rerun with --resume`);
      }
      if (st.kind === 'finished') {
        if (flags.force) {
          // Replaced only when it is wholly a branch of this tool (nothing its manifest does not list).
          await checkReplaceableFolder('branch folder', where, true, MANIFEST_FORMAT);
        } else {
          if (!flags.resume) throw new UserError(`${where} is already built; use --resume to skip finished branches or --force to rebuild`);
          if (!matchesMatrix(st.manifest, b)) throw new UserError(`${where} was built with other settings or calibration than the matrix says; use --force to rebuild it`);
        }
      }
      plan.push({ b, resume: !!flags.resume && !flags.force, skip: st.kind === 'finished' && !flags.force, replace: st.kind === 'finished' });
    }

    const toBuild = plan.filter((p) => !p.skip).map((p) => p.b);
    const slots = workersFor(toBuild.length);
    if (slots) {
      const footprints = toBuild.map((b) => ({ device: devices.get(b.name)!, nsamples: b.nsamples, seqlen: b.seqlen, settings: settingsOf(b) }));
      await checkHostLimits(`--devices ${devicesText(flags.devices!)}`, slots.length, model.config, footprints, out);
    }

    const base = { model: modelSpec, revision: flags.revision ?? null, fingerprint };
    // Calibration of every recipe (each once), before the first branch: a missing or unreadable
    // dataset of any branch is reported now. Skipped branches are checked too: a finished branch
    // calibrated on text that has since changed is not taken as done.
    const calibrations = new Map<string, CalibrationSet>();
    const keyOf = (b: MatrixBranch) => JSON.stringify([b.dataset, b.split, b.nsamples, b.seqlen, b.seed]);
    for (const { b } of plan) {
      const key = keyOf(b);
      if (calibrations.has(key)) continue;
      try {
        const recipe = { split: b.split, nsamples: b.nsamples, seqlen: b.seqlen, seed: b.seed, revision: undefined };
        calibrations.set(key, flags.worker && flags.calibrationFrom ? await readSharedCalibration(flags.calibrationFrom, recipe) : await loadCalibration(dir, b.dataset, recipe));
      } catch (e) {
        throw e instanceof UserError ? new UserError(`branch ${b.name}: ${e.message}`) : e;
      }
    }
    const calibration = (b: MatrixBranch) => calibrations.get(keyOf(b))!;
    for (const { b, skip } of plan) {
      const where = path.join(out, b.name);
      const st = statuses.get(b.name)!;
      const digest = calibration(b).digest;
      if (skip && st.kind === 'finished' && st.manifest.calibration?.digest !== digest) {
        throw new UserError(
          `branch ${b.name}: ${where} was calibrated on other text than ${b.dataset} gives now (calibration digest ` +
            `${String(st.manifest.calibration?.digest).slice(0, 12)}… in its manifest, ${digest.slice(0, 12)}… now); use --force to rebuild it`,
        );
      }
      if (st.kind === 'partial') {
        const why = resumeMismatch(st.state, {
          branch: b.name, settings: settingsOf(b), fingerprint, digest, device: devices.get(b.name)!, numLayers: model.config.numLayers,
        });
        if (why) {
          const work = `${where}${WORK_SUFFIX}`;
          throw new UserError(
            `branch ${b.name}: ${work} holds a build (${st.layersDone}/${st.numLayers} layers done) that this run cannot continue: ${why}; ` +
              `remove ${work} to build ${b.name} again from the start`,
          );
        }
      }
    }
    try {
      await fsp.mkdir(out, { recursive: true });
    } catch (e) {
      throw new UserError(`--out ${out}: cannot create the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }

    parallel = slots !== null;
    if (slots) return await buildOnWorkers(plan, slots, (b) => calibration(b), modelSpec, out, flags);

    const outcomes: BranchOutcome[] = [];
    for (const [i, { b, resume, skip, replace }] of plan.entries()) {
      const branchDir = path.join(out, b.name);
      const tag = `[${i + 1}/${plan.length}] ${b.name}`;
      if (skip) {
        if (!flags.quiet) process.stderr.write(`${tag}: already built, skipped\n`);
        outcomes.push({ name: b.name, status: 'skipped', seconds: 0, dir: branchDir });
        continue;
      }
      current = b.name;
      const t0 = Date.now();
      const calib = calibration(b);
      const progress = flags.worker ? workerProgress(b.name) : createProgress(tag, { quiet: flags.quiet });
      let resumedAt = 0;
      await buildBranch({
        model, base, branch: b.name, settings: settingsOf(b), device: devices.get(b.name)!, calib, dataset: b.dataset, split: b.split,
        out: branchDir, workDir: branchDir + WORK_SUFFIX, resume, resumable: true, checkpointEvery: flags.checkpointEvery * 60,
        // Right before the rename: nothing appeared there meanwhile that may not be replaced.
        beforeSwap: async () => {
          await checkReplaceableFolder('branch folder', branchDir, replace, MANIFEST_FORMAT);
        },
        events: {
          onProgress: (d, t, label) => progress.update(d, t, label),
          onWarning: (m) => process.stderr.write(`warning: ${b.name}: ${m}\n`),
          onResume: (done, total) => {
            resumedAt = done;
            if (flags.worker) sendToParent({ t: 'resume', branch: b.name, done, total });
            if (!flags.quiet) process.stderr.write(`${tag}: resuming after ${done}/${total} finished layers\n`);
          },
          onStage: (what) => {
            progress.stop();
            if (!flags.quiet) process.stderr.write(`${tag}: ${what}\n`);
          },
        },
      });
      progress.stop();
      current = null;
      outcomes.push({ name: b.name, status: resumedAt > 0 ? 'resumed' : 'built', seconds: (Date.now() - t0) / 1000, dir: branchDir });
    }
    return outcomes;
  } catch (e) {
    if (current && e instanceof UserError) {
      throw new UserError(`${e.message} (while building ${current}; what is finished is kept: rerun with --resume after fixing it)`);
    }
    throw e;
  } finally {
    process.removeListener('SIGINT', interrupted);
    process.removeListener('SIGTERM', interrupted);
    await model.close();
  }
}
