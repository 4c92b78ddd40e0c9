/**
 * Atomic file writes: write a temporary file in the target's folder, fsync
 * it, rename it over the target. Readers see the old file or the new one,
 * never a partial one; a failed write leaves no temporary file behind.
 */
import { randomBytes } from 'crypto';
import { promises as fs } from 'fs';
import type { FileHandle } from 'fs/promises';
import * as path from 'path';
import { fsUserError } from './fs-errors';

/** A fresh temporary path next to `target`: `<target>.tmp-<pid>-<random>`. */
export function tempPathFor(target: string): string {
  return `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** Remove `file`, ignoring any error (it may not exist). */
export async function removeQuietly(file: string): Promise<void> {
  await fs.rm(file, { force: true }).catch(() => undefined);
}

/**
 * fsync a folder so that a rename in it survives a crash. Best effort: some
 * file systems refuse to fsync folders.
 */
export async function syncDir(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch {
    // not supported here; the rename itself has happened
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/**
 * Test hook: with GPTQ_FORGE_FAIL_WRITES_AFTER=<bytes> in the environment, writes fail with
 * ENOSPC once this process has written that many bytes, as on a disk that fills up.
 */
let writeBudget = Number(process.env.GPTQ_FORGE_FAIL_WRITES_AFTER ?? Infinity);

function spend(bytes: number): void {
  if (bytes > writeBudget) {
    writeBudget = 0;
    throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  }
  writeBudget -= bytes;
}

/** Write all of `data` at `position` (handles short writes, chunks of 1 GiB). */
export async function writeFully(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < data.byteLength) {
    const length = Math.min(CHUNK, data.byteLength - done);
    spend(length);
    const { bytesWritten } = await handle.write(data, done, length, position + done);
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten}`);
    done += bytesWritten;
  }
}

/** Rename a finished temporary file over `target` and sync the folder. */
export async function commitTemp(tmp: string, target: string): Promise<void> {
  try {
    await fs.rename(tmp, target);
  } catch (err) {
    await removeQuietly(tmp);
    throw fsUserError(err, `cannot write ${target}`);
  }
  await syncDir(path.dirname(target));
}

/**
 * Replace `target` with `data` atomically. File-system errors the user can fix
 * (missing folder, no space, no permission) become a UserError naming `target`.
 */
export async function atomicWriteFile(target: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempPathFor(target);
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(tmp, 'wx');
    await writeFully(handle, bytes, 0);
    await handle.sync();
    const h = handle;
    handle = undefined;
    await h.close();
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await removeQuietly(tmp);
    throw fsUserError(err, `cannot write ${target}`);
  }
  await commitTemp(tmp, target);
}
