/**
 * Digests of a branch folder that do not depend on where or when it was built: each file's text
 * with the paths of the checkout (`replace`) and the tool's version written as placeholders,
 * model.safetensors as its header (so normalised) and its data bytes, manifest.json without
 * timings, createdAt, resumes and builtOn (as bench/results/seed-matrix-*.sha256).
 *   format: every byte but the tensors' values (headers, metadata, quantize_config.json, the
 *           manifest without its hashes of tensors and its sizes and hashes of the raw files):
 *           the same on every host and wherever the checkout and ../shared lie.
 *   data:   the tensors' bytes (and the manifest's hashes of them and of the .safetensors
 *           files that hold them): the same on hosts whose
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
      format.push(`${f}:${sha(norm(buf.subarray(8, 8 + n).toString('utf8').trimEnd()))}`);
      data.push(`${f}:${sha(buf.subarray(8 + n))}`);
    } else if (f === 'manifest.json') {
      const m = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
      for (const k of ['timings', 'createdAt', 'resumes', 'builtOn']) delete m[k];
      // The files list hashes every file as written: a .safetensors file's hash is of its
      // tensors' values too (data), and a text file's size and hash are of its raw text, which
      // holds the checkout's paths (config.json's _name_or_path), so they move with where the
      // checkout lies. Each text file is digested above, normalised; here only its path counts.
      const files = (m.files ?? []) as { path: string; size?: number; sha256?: string }[];
      const values = files.filter((e) => e.path.endsWith('.safetensors')).map((e) => [e.path, e.sha256]);
      data.push(`${f}:${sha(JSON.stringify([m.tensors ?? null, values]))}`);
      m.files = files.map((e) => (e.path.endsWith('.safetensors') ? { ...e, sha256: '<data>' } : { path: e.path }));
      delete m.tensors;
      format.push(`${f}:${sha(norm(JSON.stringify(m, null, 2)))}`);
    } else {
      format.push(`${f}:${sha(norm(buf.toString('utf8')))}`);
    }
  }
  return { format: sha(format.join('\n')), data: sha(data.join('\n')) };
}

/**
 * The host whose native build a data digest was recorded on: the CPU model, a digest of its
 * feature flags (the addon is built with -march=native, so the flags pick the instructions; a
 * virtual CPU's model name alone does not) and GPTQ_FORGE_MARCH where the build overrode it.
 */
export function hostKey(): string {
  const info = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  const flags = (/^flags\s*:(.*)$/m.exec(info)?.[1] ?? '').trim().split(/\s+/).sort().join(' ');
  const march = process.env.GPTQ_FORGE_MARCH ? ` march=${process.env.GPTQ_FORGE_MARCH}` : '';
  return `${os.cpus()[0]?.model ?? 'unknown'} flags:${sha(flags).slice(0, 12)}${march}`;
}
