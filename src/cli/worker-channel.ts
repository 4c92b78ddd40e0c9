/**
 * The channel between a `--devices` parent and its worker processes (children started with
 * child_process.fork running the same CLI with the hidden `--worker` flag). Workers send JSON
 * messages over the IPC channel; stdout and stderr stay what they are for a plain run (the
 * parent reads the one error line from stderr). A worker exits as soon as the channel closes:
 * the parent is gone (even SIGKILLed, when it cannot tell anyone), so no worker outlives it.
 * What it leaves is what a killed sequential run leaves: its work folder and lock, which the next
 * run takes over (the lock's process is dead) with --resume.
 */

export type WorkerMessage =
  | { t: 'progress'; branch: string; done: number; total: number; label: string }
  | { t: 'resume'; branch: string; done: number; total: number };

/** The exit code of a worker whose parent went away. */
export const ORPHAN_EXIT_CODE = 129;

/** In a worker: exit when the parent's channel closes (checked at once: it may already be gone). */
export function watchParent(): void {
  if (!process.send || !process.connected) {
    process.stderr.write('gptq: error: --worker is internal to --devices (its parent is gone)\n');
    process.exit(ORPHAN_EXIT_CODE);
  }
  process.on('disconnect', () => process.exit(ORPHAN_EXIT_CODE));
  // The channel alone does not keep the worker alive: it ends when its work does.
  process.channel?.unref();
}

/** In a worker: one message to the parent (dropped when the parent is gone: the worker is exiting). */
export function sendToParent(m: WorkerMessage): void {
  if (process.send && process.connected) process.send(m);
}

export function isWorkerMessage(v: unknown): v is WorkerMessage {
  return typeof v === 'object' && v !== null && typeof (v as { t?: unknown }).t === 'string';
}
