/**
 * The worker pool of `--devices`: jobs (whole branches, or whole evaluations) are taken in order,
 * a free worker takes the next one; each job is one child process running the same CLI
 * (child_process.fork of bin/gptq.js, so its work is exactly a plain run's code) pinned to the
 * worker's device by its environment. After a failed job no new job starts; those running finish,
 * then the first failure is thrown as the one error line of the run (its worker's own line).
 */
import { ChildProcess, fork } from 'node:child_process';
import * as path from 'node:path';
import { UsageError, UserError, USAGE_EXIT_CODE } from '../errors';
import { WorkerSlot } from './devices';
import { isWorkerMessage, WorkerMessage } from './worker-channel';

const BIN = path.resolve(__dirname, '../../bin/gptq.js');

export interface PoolJob {
  /** What the job is, for error lines (`branch main`). */
  what: string;
  args: string[];
}

export interface PoolEvents {
  onStart?(slot: number, job: number, pid: number): void;
  onMessage?(slot: number, job: number, m: WorkerMessage): void;
  /** A stderr line of a worker that is not its error line (warnings, notes). */
  onLine?(slot: number, job: number, line: string): void;
  onEnd?(slot: number, job: number, ok: boolean): void;
}

export interface JobResult {
  /** The worker's stdout (its --json output). */
  stdout: string;
}

/** Live workers, killed (SIGTERM) when the parent is interrupted. */
const live = new Set<ChildProcess>();

/** Stops every live worker (SIGINT/SIGTERM of the parent); each leaves its work folder for --resume. */
export function stopWorkers(): void {
  for (const c of live) c.kill('SIGTERM');
}

function runJob(slot: WorkerSlot, index: number, job: PoolJob, ev: PoolEvents, slotNo: number): Promise<{ code: number | null; error?: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = fork(BIN, job.args, { env: { ...process.env, ...slot.env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [] });
    live.add(child);
    let stdout = '', rest = '', error: string | undefined;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      rest += d;
      const lines = rest.split('\n');
      rest = lines.pop()!;
      for (const l of lines) {
        if (l.startsWith('gptq: error: ')) error ??= l.slice('gptq: error: '.length);
        else if (l.trim() !== '') ev.onLine?.(slotNo, index, l);
      }
    });
    child.on('message', (m: unknown) => {
      if (isWorkerMessage(m)) ev.onMessage?.(slotNo, index, m);
    });
    child.on('error', (e) => {
      live.delete(child);
      reject(e);
    });
    child.on('spawn', () => ev.onStart?.(slotNo, index, child.pid!));
    child.on('close', (code, signal) => {
      live.delete(child);
      if (rest.startsWith('gptq: error: ')) error ??= rest.slice('gptq: error: '.length);
      resolve({ code: code ?? (signal ? 128 : 1), error, stdout });
    });
  });
}

/** Runs `jobs` on `slots` (job k's result at index k); throws the first failure after the running jobs end. */
export async function runPool(slots: WorkerSlot[], jobs: PoolJob[], ev: PoolEvents = {}): Promise<JobResult[]> {
  const results: JobResult[] = new Array<JobResult>(jobs.length);
  let next = 0;
  let failure: Error | undefined;
  const worker = async (slotNo: number) => {
    while (failure === undefined && next < jobs.length) {
      const index = next++;
      const job = jobs[index];
      const r = await runJob(slots[slotNo], index, job, ev, slotNo);
      ev.onEnd?.(slotNo, index, r.code === 0);
      if (r.code === 0) {
        results[index] = { stdout: r.stdout };
        continue;
      }
      const why = r.error ?? `its worker exited with code ${r.code} and no error line`;
      const msg = `${why} (${job.what}, on ${slots[slotNo].label})`;
      failure ??= r.code === USAGE_EXIT_CODE ? new UsageError(msg) : new UserError(msg);
    }
  };
  await Promise.all(slots.map((_, k) => worker(k)));
  if (failure) throw failure;
  return results;
}
