/**
 * One sha256 over every byte of a branch folder that does not depend on where or when it was
 * built: each file's text with the paths of the checkout (`replace`) and the tool's version
 * written as placeholders, model.safetensors as its header (so normalised) and its data bytes,
 * manifest.json without timings, createdAt and resumes (as bench/results/seed-matrix-*.sha256).
 * A golden value of it fails when a change moves any byte of a branch.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json lies outside the test's rootDir
const VERSION = (require('../../package.json') as { version: string }).version;
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export function branchBytesDigest(dir: string, replace: Record<string, string>): string {
  const norm = (text: string): string => {
    let t = text;
    for (const [from, to] of Object.entries(replace)) t = t.split(from).join(to);
    return t.split(JSON.stringify(VERSION)).join('"<version>"');
  };
  const parts: string[] = [];
  for (const f of fs.readdirSync(dir).sort()) {
    const buf = fs.readFileSync(path.join(dir, f));
    if (f.endsWith('.safetensors')) {
      const n = Number(buf.readBigUInt64LE(0));
      parts.push(`${f}:${sha(norm(buf.subarray(8, 8 + n).toString('utf8')))}:${sha(buf.subarray(8 + n))}`);
    } else if (f === 'manifest.json') {
      const m = JSON.parse(buf.toString('utf8')) as Record<string, unknown>;
      delete m.timings;
      delete m.createdAt;
      delete m.resumes;
      parts.push(`${f}:${sha(norm(JSON.stringify(m, null, 2)))}`);
    } else {
      parts.push(`${f}:${sha(norm(buf.toString('utf8')))}`);
    }
  }
  return sha(parts.join('\n'));
}
