/**
 * `gptq branches --devices`: the branches to build go to worker processes, one per device, each
 * running `gptq branches --only <branch>` (the hidden `--worker` mode: progress over IPC, the
 * calibration read from the file the parent sampled it into once). Each branch keeps its own
 * work folder, lock and --resume, so its files are those of a sequential run.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CalibrationSet, SHARED_CALIBRATION_DIR, writeSharedCalibration } from '../gptq/calibration-set';
import { MatrixBranch } from '../gptq/matrix';
import type { BranchesFlags, BranchOutcome } from './branches';
import { WorkerSlot } from './devices';
import { Progress } from './progress';
import { createWorkersProgress } from './progress-workers';
import { sendToParent } from './worker-channel';
import { runPool } from './workers';

/** The flags of `gptq branches` that each worker is started with. */
export type WorkerFlags = Pick<
  BranchesFlags,
  'revision' | 'matrix' | 'dataset' | 'split' | 'nsamples' | 'seqlen' | 'seed' | 'recipe' | 'checkpointEvery' | 'device' | 'resume' | 'force' | 'quiet'
>;

/** In a worker: the driver's progress of `branch`, sent to the parent. */
export function workerProgress(branch: string): Progress {
  return { update: (done, total, label) => sendToParent({ t: 'progress', branch, done, total, label }), stop() {} };
}

/** The command line of the worker that builds `b`: the user's flags, one branch, the shared calibration. */
function workerArgs(model: string, out: string, b: MatrixBranch, calibration: string, f: WorkerFlags): string[] {
  const opt = (flag: string, v: string | number | undefined) => (v === undefined ? [] : [flag, String(v)]);
  return [
    'branches', '--model', model, ...opt('--revision', f.revision), '--matrix', f.matrix, '--out', out, '--only', b.name,
    ...opt('--dataset', f.dataset), ...opt('--split', f.split), ...opt('--nsamples', f.nsamples), ...opt('--seqlen', f.seqlen),
    ...opt('--seed', f.seed), ...opt('--recipe', f.recipe), '--checkpoint-every', String(f.checkpointEvery), ...opt('--device', f.device),
    ...(f.resume ? ['--resume'] : []), ...(f.force ? ['--force'] : []), '--worker', '--calibration-from', calibration, '--json', '--quiet',
  ];
}

export async function buildOnWorkers(
  plan: { b: MatrixBranch; skip: boolean }[], slots: WorkerSlot[], calibration: (b: MatrixBranch) => CalibrationSet,
  model: string, out: string, flags: WorkerFlags,
): Promise<BranchOutcome[]> {
  const outcomes = new Map<string, BranchOutcome>();
  plan.forEach(({ b, skip }, i) => {
    if (!skip) return;
    if (!flags.quiet) process.stderr.write(`[${i + 1}/${plan.length}] ${b.name}: already built, skipped\n`);
    outcomes.set(b.name, { name: b.name, status: 'skipped', seconds: 0, dir: path.join(out, b.name) });
  });
  const toBuild = plan.filter((p) => !p.skip).map((p) => p.b);
  // Each calibration once, for every worker that builds a branch with it.
  const files = new Map<string, string>();
  for (const b of toBuild) {
    const c = calibration(b);
    if (!files.has(c.digest)) files.set(c.digest, await writeSharedCalibration(out, c));
  }
  const jobs = toBuild.map((b) => ({ what: `branch ${b.name}`, args: workerArgs(model, out, b, files.get(calibration(b).digest)!, flags) }));
  const progress = createWorkersProgress(toBuild.length, { quiet: flags.quiet });
  try {
    const results = await runPool(slots, jobs, {
      onStart: (slot, job, pid) => progress.start(slot, slots[slot].label, toBuild[job].name, pid),
      onMessage: (slot, _job, m) => {
        if (m.t === 'progress') progress.update(slot, m.done, m.total, m.label);
        else if (m.t === 'resume' && !flags.quiet) progress.line(`${slots[slot].label}: ${m.branch}: resuming after ${m.done}/${m.total} finished layers`);
      },
      onLine: (_slot, _job, line) => progress.line(line),
      onEnd: (slot, _job, ok) => progress.finish(slot, ok ? 'done' : 'failed'),
    });
    for (const r of results) for (const o of JSON.parse(r.stdout) as BranchOutcome[]) outcomes.set(o.name, o);
  } finally {
    progress.stop();
  }
  await fsp.rm(path.join(out, SHARED_CALIBRATION_DIR), { recursive: true, force: true });
  return plan.map(({ b }) => outcomes.get(b.name)!);
}
