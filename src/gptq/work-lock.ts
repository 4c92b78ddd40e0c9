/**
 * The lock of a branch's work folder (`lock`: {pid, host} of the building process): one run
 * builds in a folder at a time; the lock of a process that is gone is taken over.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { processAlive } from '../io/output-guard';

/** Held by the process building in the folder: {pid, host}. */
export const LOCK_FILE = 'lock';

/**
 * Takes the folder's lock, or fails naming the live process that holds it (two runs writing one
 * work folder would corrupt it). A lock whose process is gone (killed, crashed) is taken over.
 */
export async function acquireLock(dir: string): Promise<void> {
  const file = path.join(dir, LOCK_FILE);
  const host = os.hostname();
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fsp.writeFile(file, `${JSON.stringify({ pid: process.pid, host })}\n`, { flag: 'wx' });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let held: { pid?: unknown; host?: unknown } = {};
    try {
      const v: unknown = JSON.parse(await fsp.readFile(file, 'utf8'));
      if (typeof v === 'object' && v !== null) held = v;
    } catch {
      // unreadable (a run killed while writing it): stale
    }
    const pid = typeof held.pid === 'number' ? held.pid : null;
    if (pid === process.pid && held.host === host) return; // this process's own (an earlier call)
    if (pid !== null && typeof held.host === 'string' && held.host !== host) {
      throw new UserError(`${dir} is being built by pid ${pid} on ${held.host}; if that run is gone, remove ${file}`);
    }
    if (pid !== null && processAlive(pid)) {
      throw new UserError(`${dir} is being built by another gptq process (pid ${pid}); wait for it, or stop it and rerun with --resume`);
    }
    await fsp.rm(file, { force: true }); // its process is gone
  }
  throw new UserError(`cannot take the lock ${file} (another run keeps taking it)`);
}


/** Drops this process's lock (a refused open leaves the folder as it found it). */
export async function releaseLock(dir: string): Promise<void> {
  const file = path.join(dir, LOCK_FILE);
  try {
    const held = JSON.parse(await fsp.readFile(file, 'utf8')) as { pid?: unknown; host?: unknown } | null;
    if (held?.pid === process.pid && held?.host === os.hostname()) await fsp.rm(file, { force: true });
  } catch {
    // not ours, or gone
  }
}
