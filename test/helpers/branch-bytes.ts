/**
 * Digests of a branch folder that do not depend on where or when it was built: each file's text
 * with the paths of the checkout (`replace`) and the tool's version written as placeholders,
 * model.safetensors as its header (so normalised) and its data bytes, manifest.json without
 * timings, createdAt, resumes and builtOn (as bench/results/seed-matrix-*.sha256).
 *   format: every byte but the tensors' values (headers, metadata, quantize_config.json, the
 *           manifest without its tensor hashes): the same on every host.
 *   data:   the tensors' bytes (and the manifest's hashes of them): the same on hosts whose
 *           native build does the same floating-point operations (GPTQ carries a last-bit
 *           difference along its rows: an AVX2 and an AVX-512 build differ).
 * A golden value of either fails when a change moves those bytes of a branch.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json lies outside the test's rootDir
const VERSION = (require('../../package.json') as { version: string }).version;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export interface BranchDigests {
  format: string;
  data: string;
}

export function branchBytesDigests(dir: string, replace: Record<string, string>): BranchDigests {
  const norm = (text: string): string => {
    let t = text;
    for (const [from, to] of Object.entries(replace)) t = t.split(from).join(to);
    return t.split(JSON.stringify(VERSION)).join('"<version>"');
  };
  const format: string[] = [], data: string[] = [];
  for (const f of fs.readdirSync(dir).sort()) {
    const buf = fs.readFileSync(path.join(dir, f));
    if (f.endsWith('.safetensors')) {
      const n = Number(buf.readBigUInt64LE(0));
      format.push(`${f}:${sha(norm(buf.subarray(8, 8 + n).toString('utf8')))}`);
      data.push(`${f}:${sha(buf.subarray(8 + n))}`);
    } else if (f === 'manifest.json') {
      const m = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
      for (const k of ['timings', 'createdAt', 'resumes', 'builtOn']) delete m[k];
      data.push(`${f}:${sha(JSON.stringify(m.tensors ?? null))}`);
      delete m.tensors;
      format.push(`${f}:${sha(norm(JSON.stringify(m, null, 2)))}`);
    } else {
      format.push(`${f}:${sha(norm(buf.toString('utf8')))}`);
    }
  }
  return { format: sha(format.join('\n')), data: sha(data.join('\n')) };
}

/** The host whose native build a data digest was recorded on: CPU model and whether it has AVX-512. */
export function hostKey(): string {
  const flags = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  return `${os.cpus()[0]?.model ?? 'unknown'}${/\bavx512f\b/.test(flags) ? ' avx512f' : ''}`;
}
