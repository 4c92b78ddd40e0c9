/**
 * `gptq branches` on llama2-s with the seed matrix (small calibration), `gptq report` on the
 * result, `gptq verify` on every branch, and a build killed with SIGKILL mid-branch that
 * `--resume` finishes bit-identically to an uninterrupted one.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hashBranch } from '../../src/gptq/branch-hash';
import { loadMatrix } from '../../src/gptq/matrix';
import { MAX_ERROR_RATIO } from '../../src/gptq/verify';
import { Report } from '../../src/eval/report-types';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_TEST_RAW, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(600_000);

const MATRIX = path.resolve(__dirname, '../../configs/llama-2-70b-gptq.json');
const BIN = path.resolve(__dirname, '../../bin/gptq.js');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-branches-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const small = ['--dataset', WIKI_V1_VALID, '--nsamples', '4', '--seqlen', '256'];

test('the seed matrix on llama2-s: 8 branches, report with 9 rows and a chart, every branch verifies', async () => {
  const out = path.join(tmp, 'all');
  const r = runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, ...small, '--json', '--quiet'], { timeoutMs: 300_000 });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const matrix = await loadMatrix(MATRIX);
  expect(JSON.parse(r.stdout).map((o: { name: string; status: string }) => [o.name, o.status])).toEqual(matrix.branches.map((b) => [b.name, 'built']));
  expect(fs.readdirSync(out).sort()).toEqual(matrix.branches.map((b) => b.name).sort());
  for (const b of matrix.branches) {
    const qc = JSON.parse(fs.readFileSync(path.join(out, b.name, 'quantize_config.json'), 'utf8'));
    expect({ bits: qc.bits, group_size: qc.group_size, desc_act: qc.desc_act, damp_percent: qc.damp_percent, sym: qc.sym, true_sequential: qc.true_sequential })
      .toEqual({ bits: b.bits, group_size: b.groupSize, desc_act: b.actOrder, damp_percent: b.damp, sym: true, true_sequential: true });
    const m = JSON.parse(fs.readFileSync(path.join(out, b.name, 'manifest.json'), 'utf8'));
    expect(m.calibration).toMatchObject({ nsamples: 4, seqlen: 256, seed: 0 });
    expect(m.resumes).toBe(0);
    // The manifest's hashes are those of the files on disk.
    const h = await hashBranch(path.join(out, b.name));
    expect(m.files).toEqual(h.files);
    expect(m.tensors).toEqual(h.tensors);
  }

  const rep = runCli(['report', out, '--dataset', WIKI_TEST_RAW, '--seqlen', '256', '--max-windows', '2', '--quiet'], { timeoutMs: 300_000 });
  expect(rep.stderr).toBe('');
  expect(rep.code).toBe(0);
  const report: Report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
  expect(report.rows.map((row) => row.name)).toEqual(['fp16', ...matrix.branches.map((b) => b.name)]);
  for (const row of report.rows) expect(Number.isFinite(row.perplexity) && row.perplexity > 1).toBe(true);
  // Bits per weight from the tensors: 3-bit with group 32 stores more than 3 + 20/64 per weight…
  const bpw = Object.fromEntries(report.rows.map((row) => [row.name, row.bitsPerWeight]));
  expect(bpw['gptq-4bit-32g-actorder_True']).toBeGreaterThan(4 + 20 / 32);
  expect(bpw['gptq-4bit-32g-actorder_True']).toBeGreaterThan(bpw['gptq-4bit-128g-actorder_True']);
  expect(bpw.main).toBeLessThan(bpw['gptq-4bit-128g-actorder_True']);
  const md = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
  const tableRows = md.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| Branch') && !l.startsWith('| ---'));
  expect(tableRows).toHaveLength(9);
  // The ExLlama column (after Size), as in the seed's table: Yes for the 4-bit branches, No for 3-bit, empty for fp16.
  const exllama = Object.fromEntries(tableRows.map((l) => {
    const cells = l.split(' | ');
    return [cells[0].slice(2), cells[8]];
  }));
  expect(exllama).toEqual(Object.fromEntries([['fp16', ''], ...matrix.branches.map((b) => [b.name, b.bits === 4 ? 'Yes' : 'No'])]));
  expect(md).toContain('![size on disk against perplexity](report.svg)');
  const svg = fs.readFileSync(path.join(out, 'report.svg'), 'utf8');
  expect(svg.startsWith('<svg')).toBe(true);
  expect(svg.match(/<circle class="point" /g)).toHaveLength(9);

  // A second report reuses the measured rows (same weights, same protocol): same numbers.
  const again = runCli(['report', out, '--dataset', WIKI_TEST_RAW, '--seqlen', '256', '--max-windows', '2', '--json', '--quiet']);
  expect(again.code).toBe(0);
  expect(JSON.parse(again.stdout).rows.map((row: { perplexity: number }) => row.perplexity)).toEqual(report.rows.map((row) => row.perplexity));

  for (const b of matrix.branches) {
    const v = runCli(['verify', path.join(out, b.name), '--json', '--quiet']);
    expect(v.stderr).toBe('');
    expect(v.code).toBe(0);
    const res = JSON.parse(v.stdout);
    expect(res.checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
      ['structure', true], ['config', true], ['g_idx', true], ['finite', true], ['sha256', true], ['copied', true], ['base-config', true], ['weights', true],
    ]);
    for (const e of res.linears) expect(e.relError / e.rtnRelError).toBeLessThanOrEqual(MAX_ERROR_RATIO);
  }
});

/** Spawns `gptq branches`, kills it with SIGKILL once `<work>/state.json` says `layers` layers are done. */
function killAfterLayers(args: string[], work: string, layers: number): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setInterval(() => {
      try {
        const st = JSON.parse(fs.readFileSync(path.join(work, 'state.json'), 'utf8'));
        if (st.layersDone >= layers) {
          clearInterval(timer);
          child.kill('SIGKILL');
        }
      } catch {
        // not written yet (or being renamed into place)
      }
    }, 5);
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearInterval(timer);
      resolve({ signal, stderr });
    });
  });
}

test('SIGKILL mid-branch, then --resume: finished layers are not redone and every file equals an uninterrupted run', async () => {
  const only = ['--only', 'main,gptq-4bit-128g-actorder_True'];
  // Bigger calibration than above, so that a layer takes long enough to be caught mid-branch.
  const calib = ['--dataset', WIKI_V1_VALID, '--nsamples', '8', '--seqlen', '512'];
  const ref = path.join(tmp, 'uninterrupted');
  const r = runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', ref, ...only, ...calib, '--quiet']);
  expect(r.code).toBe(0);

  const out = path.join(tmp, 'killed');
  // A checkpoint after every layer (the default keeps activations at most every 10 minutes).
  const args = ['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, ...only, ...calib, '--checkpoint-every', '0'];
  const first = await killAfterLayers(args, path.join(out, 'main.partial'), 2);
  expect(first.signal).toBe('SIGKILL');
  // Nothing under the branch's name looks finished; the work folder holds the committed layers.
  expect(fs.existsSync(path.join(out, 'main'))).toBe(false);
  const state = JSON.parse(fs.readFileSync(path.join(out, 'main.partial', 'state.json'), 'utf8'));
  expect(state.layersDone).toBeGreaterThanOrEqual(2);
  expect(state.layersDone).toBeLessThan(4);
  // The activations kept for the resume are fp16 (the values are fp16: nothing is lost).
  const xFile = path.join(out, 'main.partial', state.activations);
  const xHeader = JSON.parse(fs.readFileSync(xFile).subarray(8, 8 + Number(fs.readFileSync(xFile).readBigUInt64LE(0))).toString('utf8'));
  expect(xHeader['x.0'].dtype).toBe('F16');
  expect(xHeader['x.0'].shape).toEqual([512 * 256]);

  // Without --resume the interrupted build is not silently restarted.
  const refused = runCli([...args, '--quiet']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/main\.partial holds an interrupted build \(\d\/4 layers done\); rerun with --resume/);

  // Resume, and kill again during the second branch's first layers.
  const second = await killAfterLayers([...args, '--resume'], path.join(out, 'gptq-4bit-128g-actorder_True.partial'), 1);
  expect(second.signal).toBe('SIGKILL');
  expect(second.stderr).toContain(`[1/2] main: resuming after ${state.layersDone}/4 finished layers`);
  // The progress of the resumed branch starts at the first unfinished layer.
  const mainProgress = second.stderr.split('\n').filter((l) => l.startsWith('[1/2] main: ') && / layer \d\/4 /.test(l));
  expect(mainProgress[0]).toContain(`layer ${state.layersDone + 1}/4 self_attn.k_proj`);
  expect(mainProgress.some((l) => / layer [1-9]\/4 /.test(l) && Number(/ layer (\d)\/4 /.exec(l)![1]) <= state.layersDone)).toBe(false);
  expect(fs.existsSync(path.join(out, 'main', 'manifest.json'))).toBe(true);

  const third = runCli([...args, '--resume']);
  expect(third.code).toBe(0);
  expect(third.stderr).toContain('[1/2] main: already built, skipped');
  expect(third.stderr).toMatch(/\[2\/2\] gptq-4bit-128g-actorder_True: resuming after [1-4]\/4 finished layers/);
  expect(fs.readdirSync(out).sort()).toEqual(['gptq-4bit-128g-actorder_True', 'main']);

  for (const b of ['main', 'gptq-4bit-128g-actorder_True']) {
    const a = await hashBranch(path.join(ref, b));
    const k = await hashBranch(path.join(out, b));
    expect(k.files).toEqual(a.files);
    expect(k.tensors).toEqual(a.tensors);
    const m = JSON.parse(fs.readFileSync(path.join(out, b, 'manifest.json'), 'utf8'));
    expect(m.resumes).toBeGreaterThanOrEqual(1);
  }
});
