/** Checks shared by the hostile-Hub and other CLI tests: tree hashes, one error line, a clean HF cache. */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CliResult } from './cli';

/** Every path under `root` (but `skip`) with its kind and content hash: what "nothing changed" compares. */
export function treeHash(root: string, skip: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
      const abs = path.join(dir, d.name);
      if (skip.includes(abs)) continue;
      const rel = path.relative(root, abs);
      if (d.isSymbolicLink()) out[rel] = `link:${fs.readlinkSync(abs)}`;
      else if (d.isDirectory()) {
        out[rel] = 'dir';
        walk(abs);
      } else out[rel] = createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
    }
  };
  walk(root);
  return out;
}

/** Exactly one error line, no stack, the exit code. */
export function expectOneError(r: CliResult, code: number, pattern: RegExp, secret?: string): string {
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('gptq: error:'));
  expect({ code: r.code, errors }).toEqual({ code, errors: [expect.stringMatching(pattern)] });
  expect(r.stderr).not.toMatch(/\n\s+at .*:\d+:\d+/);
  if (secret) expect(r.stderr).not.toContain(secret);
  return errors[0];
}

/**
 * The strict form of `expectOneError`: the exit code, exactly one `gptq: error:` line, matching
 * `pattern`, and nothing else on stderr. Returns the error line.
 */
export function expectOnlyError(r: CliResult, code: number, pattern: RegExp): string {
  const line = expectOneError(r, code, pattern);
  expect(r.stderr.replace(/\n$/, '')).toBe(line);
  return line;
}

/**
 * No `.incomplete` left, every blob holds what its name says (sha256, or git blob id), and every
 * snapshot link resolves inside the cache.
 */
export function cacheClean(cache: string) {
  for (const [rel, kind] of Object.entries(treeHash(cache))) {
    expect(rel).not.toMatch(/\.incomplete$/);
    if (path.basename(path.dirname(rel)) === 'blobs' && kind !== 'dir' && !kind.startsWith('link:')) {
      const data = fs.readFileSync(path.join(cache, rel));
      const name = path.basename(rel);
      const id = name.length === 64 ? createHash('sha256').update(data).digest('hex')
        : createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
      expect(`${rel}: ${id}`).toBe(`${rel}: ${name}`);
    }
    if (kind.startsWith('link:')) {
      const target = fs.realpathSync(path.join(cache, rel));
      expect(path.relative(cache, target).startsWith('..')).toBe(false);
    }
  }
}

