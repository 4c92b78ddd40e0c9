/** The free space of the file system that holds a folder, or will once it is created. */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * Free bytes (bavail · bsize) where `dir` lives: statfs of `dir`, else of its nearest existing
 * ancestor. A statfs error for which `walkUp(e)` is false is thrown (default: walk up past a
 * missing folder only); so is the root's.
 */
export async function freeDiskBytes(
  dir: string,
  walkUp: (e: NodeJS.ErrnoException) => boolean = (e) => e.code === 'ENOENT',
): Promise<number> {
  let at = path.resolve(dir);
  for (;;) {
    try {
      const s = await fsp.statfs(at);
      return s.bavail * s.bsize;
    } catch (e) {
      const parent = path.dirname(at);
      if (!walkUp(e as NodeJS.ErrnoException) || parent === at) throw e;
      at = parent;
    }
  }
}
