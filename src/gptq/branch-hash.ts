/**
 * sha256 of every file of a branch folder and of every tensor of its safetensors files, in one
 * sequential read per file: what `manifest.json` records and what `gptq verify` checks.
 */
import { createHash, Hash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile } from '../io/safetensors-reader';
import { MANIFEST_FILE, ManifestFile } from './manifest';

const CHUNK = 16 << 20;

export interface BranchHashes {
  files: ManifestFile[];
  tensors: Record<string, string>;
}

/** Every regular file under `dir` (relative, '/'-separated, sorted), manifest.json excepted. */
export async function branchFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const e of await fsp.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile() && r !== MANIFEST_FILE) out.push(r);
    }
  };
  await walk('');
  return out.sort();
}

/**
 * Hashes `dir`. `known` gives tensors' sha256 already computed from the bytes that were written
 * (the build's writer): those ranges are not hashed again, the files still are (from disk).
 */
export async function hashBranch(dir: string, onFile?: (file: string) => void, known?: ReadonlyMap<string, string>): Promise<BranchHashes> {
  const files: ManifestFile[] = [];
  const tensors: Record<string, string> = {};
  for (const rel of await branchFiles(dir)) {
    onFile?.(rel);
    const full = path.join(dir, rel);
    // Tensor data ranges [start, end) in file order, each with its own hash.
    const ranges: { name: string; start: number; end: number; hash: Hash }[] = [];
    if (rel.endsWith('.safetensors')) {
      const st = await SafetensorsFile.open(full);
      for (const name of st.names()) {
        const info = st.info(name);
        const sha = known?.get(name);
        if (sha !== undefined) tensors[name] = sha;
        else ranges.push({ name, start: info.offset, end: info.offset + info.byteLength, hash: createHash('sha256') });
      }
      await st.close();
      ranges.sort((a, b) => a.start - b.start);
    }
    const whole = createHash('sha256');
    const handle = await fsp.open(full, 'r');
    let size = 0;
    try {
      const buf = Buffer.allocUnsafe(CHUNK);
      let next = 0; // first range not yet finished
      for (;;) {
        const { bytesRead } = await handle.read(buf, 0, CHUNK, size);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        whole.update(chunk);
        const lo = size, hi = size + bytesRead;
        while (next < ranges.length && ranges[next].end <= lo) next++;
        for (let r = next; r < ranges.length && ranges[r].start < hi; r++) {
          const { start, end, hash } = ranges[r];
          hash.update(chunk.subarray(Math.max(start, lo) - lo, Math.min(end, hi) - lo));
        }
        size = hi;
      }
    } finally {
      await handle.close();
    }
    for (const r of ranges) tensors[r.name] = r.hash.digest('hex');
    files.push({ path: rel, size, sha256: whole.digest('hex') });
  }
  return { files, tensors };
}
