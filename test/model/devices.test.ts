/**
 * `gptq branches --devices 2 --device cpu` and `gptq report --devices 2 --device cpu` on
 * llama2-s: the same files (sha256) and perplexities as sequential runs; a parent SIGKILLed
 * after a worker's first layer leaves no worker behind, and `--resume` finishes every branch
 * bit-identically.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hashBranch } from '../../src/gptq/branch-hash';
import { processAlive } from '../../src/io/output-guard';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_TEST_RAW, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(300_000);

const BIN = path.resolve(__dirname, '../../bin/gptq.js');
const NAMES = ['main', 'gptq-3bit-128g-actorder_False', 'gptq-4bit-32g-actorder_True'];
let tmp: string;
let matrix: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-devices-'));
  // Three of the seed's branches (configs/llama-2-70b-gptq.json), with a tiny calibration.
  const seed = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../configs/llama-2-70b-gptq.json'), 'utf8'));
  matrix = path.join(tmp, 'm.json');
  fs.writeFileSync(matrix, JSON.stringify({
    dataset: WIKI_V1_VALID, split: 'validation', seqlen: 64, nsamples: 2,
    branches: seed.branches.filter((b: { name: string }) => NAMES.includes(b.name)).map((b: Record<string, unknown>) => ({ ...b, dataset: undefined, seqlen: undefined, nsamples: undefined, split: undefined })),
  }));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const args = (out: string, ...more: string[]) => ['branches', '--model', LLAMA2_S, '--matrix', matrix, '--out', out, '--device', 'cpu', '--checkpoint-every', '0', ...more];
const hashes = async (out: string) => Object.fromEntries(await Promise.all(NAMES.map(async (n) => [n, (await hashBranch(path.join(out, n))).files] as const)));

async function until(what: string, ok: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let reference: Record<string, unknown>;
test('--devices 2 --device cpu gives the files of a sequential run, with builtOn in the manifest', async () => {
  const seq = runCli(args(path.join(tmp, 'seq'), '--quiet'), { timeoutMs: 200_000 });
  expect(seq.code).toBe(0);
  reference = await hashes(path.join(tmp, 'seq'));
  const par = runCli(args(path.join(tmp, 'par'), '--devices', '2', '--json'), { timeoutMs: 200_000 });
  expect(par.code).toBe(0);
  expect(JSON.parse(par.stdout).map((o: { name: string; status: string }) => [o.name, o.status]).sort()).toEqual(NAMES.map((n) => [n, 'built']).sort());
  expect(await hashes(path.join(tmp, 'par'))).toEqual(reference);
  // non-TTY progress: one line per event, both workers used, a total
  expect(par.stderr).toMatch(/^cpu 0: \S+: started \(worker pid \d+\)$/m);
  expect(par.stderr).toMatch(/^cpu 1: \S+: started \(worker pid \d+\)$/m);
  expect(par.stderr).toMatch(/layer 4\/4/);
  expect(par.stderr).toMatch(/total 3\/3 branches/);
  expect(fs.readdirSync(path.join(tmp, 'par')).sort()).toEqual([...NAMES].sort()); // the shared calibration is gone
  const m = JSON.parse(fs.readFileSync(path.join(tmp, 'par', 'main', 'manifest.json'), 'utf8'));
  expect(m.builtOn).toEqual({ kind: 'cpu' });
  expect(m.device).toBe('cpu');
});

test('SIGKILL of the parent after a first layer: no worker left, --resume finishes bit-identically', async () => {
  const out = path.join(tmp, 'killed');
  const child = spawn(process.execPath, [BIN, ...args(out, '--devices', '2')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise((r) => child.on('exit', r));
  await until('a first layer', () => /: layer 1\/4/.test(stderr));
  const pids = [...stderr.matchAll(/worker pid (\d+)/g)].map((x) => Number(x[1]));
  expect(pids.length).toBeGreaterThanOrEqual(1);
  child.kill('SIGKILL');
  await exited;
  await until('the workers to exit', () => pids.every((p) => !processAlive(p)), 20_000);
  expect(fs.readdirSync(out).filter((d) => d.endsWith('.partial')).length).toBeGreaterThanOrEqual(1);
  const r = runCli(args(out, '--devices', '2', '--resume', '--json', '--quiet'), { timeoutMs: 200_000 });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).map((o: { status: string }) => o.status)).toContain('resumed');
  expect(await hashes(out)).toEqual(reference);
});

test('report --devices 2 --device cpu: the rows and perplexities of a sequential report', () => {
  const rep = (dir: string, ...more: string[]) =>
    runCli(['report', dir, '--dataset', WIKI_TEST_RAW, '--seqlen', '64', '--max-windows', '2', '--device', 'cpu', '--json', '--quiet', ...more], { timeoutMs: 200_000 });
  const a = rep(path.join(tmp, 'seq'));
  const b = rep(path.join(tmp, 'par'), '--devices', '2');
  expect([a.code, b.code, b.stderr]).toEqual([0, 0, '']);
  const rows = (r: { stdout: string }) => (JSON.parse(r.stdout) as { rows: { name: string; perplexity: number }[] }).rows.map((x) => [x.name, x.perplexity]);
  // rows follow the branches' build order (createdAt): the parallel build finished them in another order
  const sorted = (r: { stdout: string }) => rows(r).sort((x, y) => String(x[0]).localeCompare(String(y[0])));
  expect(sorted(b)).toEqual(sorted(a));
  expect(rows(a)).toHaveLength(1 + NAMES.length);
  // again: every row reused, nothing measured, same numbers
  expect(sorted(rep(path.join(tmp, 'par'), '--devices', '2'))).toEqual(sorted(a));
});

test('--devices 2 with one branch left to build: it is built here, with no worker process', () => {
  const out = path.join(tmp, 'one-left');
  const first = runCli(args(out, '--only', NAMES[0], '--quiet'), { timeoutMs: 200_000 });
  expect(first.code).toBe(0);
  const r = runCli(args(out, '--only', `${NAMES[0]},${NAMES[1]}`, '--devices', '2', '--resume'), { timeoutMs: 200_000 });
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(new RegExp(`\\[2/2\\] ${NAMES[1]}: .*layer 4/4`));
  expect(r.stderr).not.toMatch(/worker pid/);
});
