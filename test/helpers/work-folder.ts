/**
 * Helpers for the tests of `gptq branches` work folders (`<out>/<branch>.partial/`): a tiny
 * matrix on llama2-s, a run killed once its state says enough layers are done, tree hashes
 * (to show nothing outside the output changed), state.json rewritten with a valid digest (a
 * hostile edit, not a damaged file) and the check of one clear error line.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { workStateDigest } from '../../src/gptq/branch-work';
import { CliResult } from './cli';
import { LLAMA2_S, WIKI_V1_VALID } from './shared';
import { mulberry32 } from './lcg';

const BIN = path.resolve(__dirname, '../../bin/gptq.js');

/** A matrix of llama2-s branches with a calibration small enough that a build takes ~1 s. */
export function writeTinyMatrix(file: string, names: ('main' | 'b3')[] = ['main']): string {
  const all = {
    main: { name: 'main', bits: 4, groupSize: 128, actOrder: true, damp: 0.01 },
    b3: { name: 'b3', bits: 3, groupSize: 64, actOrder: false, damp: 0.01 },
  };
  fs.writeFileSync(file, JSON.stringify({ dataset: WIKI_V1_VALID, seqlen: 128, nsamples: 2, branches: names.map((n) => all[n]) }));
  return file;
}

export const branchesArgs = (matrix: string, out: string): string[] =>
  ['branches', '--model', LLAMA2_S, '--matrix', matrix, '--out', out, '--checkpoint-every', '0', '--quiet'];

/** Spawns the CLI and SIGKILLs it once `<work>/state.json` says `layers` layers are done (or after `ms`, if given). */
export function runKilled(args: string[], opts: { work?: string; layers?: number; ms?: number }): Promise<{ signal: NodeJS.Signals | null; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'ignore'] });
    const kill = () => child.kill('SIGKILL');
    const timer = opts.work !== undefined ? setInterval(() => {
      try {
        const st = JSON.parse(fs.readFileSync(path.join(opts.work!, 'state.json'), 'utf8'));
        if (st.layersDone >= (opts.layers ?? 1)) kill();
      } catch {
        // not written yet (or being renamed into place)
      }
    }, 3) : undefined;
    const once = opts.ms !== undefined ? setTimeout(kill, opts.ms) : undefined;
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (timer) clearInterval(timer);
      if (once) clearTimeout(once);
      resolve({ signal, code });
    });
  });
}

/** sha256 of every file under `dir` (relative path → hash, links by their target text), skipping `skip` (absolute paths). */
export function treeHashes(dir: string, skip: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (skip.some((s) => p === s || p.startsWith(s + path.sep))) continue;
      const rel = path.relative(dir, p);
      if (e.isSymbolicLink()) out[rel] = `link:${fs.readlinkSync(p)}`;
      else if (e.isDirectory()) walk(p);
      else out[rel] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

/** Rewrites `<work>/state.json` through `edit`, then gives it a matching digest (what someone who knows the format can do). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests edit any field of the parsed state.json
export function editStateSigned(work: string, edit: (st: Record<string, any>) => void): void {
  const file = path.join(work, 'state.json');
  const st = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(st);
  st.digest = workStateDigest(st);
  fs.writeFileSync(file, `${JSON.stringify(st, null, 2)}\n`);
}

/** XORs `count` bytes of `file` at random positions (seeded by `rand`) with non-zero values. */
export function flipBytes(file: string, rand: () => number, count = 2, from = 0): void {
  const b = fs.readFileSync(file);
  if (b.length === 0) return;
  for (let i = 0; i < count; i++) {
    const at = Math.min(b.length - 1, from + Math.floor(rand() * Math.max(1, b.length - from)));
    b[at] ^= 1 + Math.floor(rand() * 255);
  }
  fs.writeFileSync(file, b);
}

/** A seeded generator (mulberry32). */
export const seeded = mulberry32;

/** The one `gptq: error:` line of a failed run (asserting that stderr holds exactly one line and no stack trace). */
export function oneErrorLine(r: CliResult): string {
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^gptq: error: /);
  return lines[0];
}

/** The safetensors data start of `file` (8 + header length): flips past it hit tensor bytes. */
export function dataStart(file: string): number {
  const b = fs.readFileSync(file);
  return 8 + Number(b.readBigUInt64LE(0));
}
