/**
 * Bad input to `gptq branches` and `gptq verify`: one clear line, a non-zero exit, and never a
 * folder under a branch's name that looks finished (has a manifest) but is not.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { CliResult, runCli } from '../helpers/cli';
import { expectOnlyError } from '../helpers/hostile';
import { LLAMA2_M, LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(300_000);

const MATRIX = path.resolve(__dirname, '../../configs/llama-2-70b-gptq.json');
const BIN = path.resolve(__dirname, '../../bin/gptq.js');
const calib = ['--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--quiet'];
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-branches-errors-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function expectOneLine(r: CliResult, pattern: RegExp): void {
  expectOnlyError(r, 1, pattern);
  expect(r.stdout).toBe('');
}

/** Subfolders of `out` that have a manifest.json (finished branches). */
const finished = (out: string) => (fs.existsSync(out) ? fs.readdirSync(out).filter((f) => fs.existsSync(path.join(out, f, 'manifest.json'))) : []);

test('unknown branch in --only', () => {
  const out = path.join(tmp, 'only');
  const r = runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, '--only', 'main,gptq-5bit-128g', ...calib]);
  expectOneLine(r, /--only: unknown branch "gptq-5bit-128g"; .*llama-2-70b-gptq\.json has main, gptq-4bit-32g-actorder_True/);
  expect(fs.existsSync(out)).toBe(false);
});

test('a matrix entry with bits 5', () => {
  const matrix = path.join(tmp, 'bits5.json');
  fs.writeFileSync(matrix, JSON.stringify({
    dataset: 'wikitext2', seqlen: 128,
    branches: [{ name: 'ok', bits: 4, groupSize: 128, actOrder: true, damp: 0.01 }, { name: 'bad', bits: 5, groupSize: 128, actOrder: true, damp: 0.01 }],
  }));
  const out = path.join(tmp, 'b5');
  const r = runCli(['branches', '--model', LLAMA2_S, '--matrix', matrix, '--out', out, ...calib]);
  expectOneLine(r, /bits5\.json: branches\[1\]\.bits must be 2, 3, 4 or 8, got 5$/);
  expect(fs.existsSync(out)).toBe(false);
});

test('a matrix entry the model cannot take (group size that does not divide a width) is refused before any work', () => {
  const matrix = path.join(tmp, 'g96.json');
  fs.writeFileSync(matrix, JSON.stringify({ dataset: 'wikitext2', seqlen: 128, branches: [{ name: 'g96', bits: 4, groupSize: 96, actOrder: true, damp: 0.01 }] }));
  const r = runCli(['branches', '--model', LLAMA2_S, '--matrix', matrix, '--out', path.join(tmp, 'g96'), ...calib]);
  expectOneLine(r, /branch g96: group-size 96 does not divide in_features 256 of model\.layers\.0\.self_attn\.q_proj/);
});

test('an output folder holding another model\'s branches, or a model folder', () => {
  const out = path.join(tmp, 'other');
  const ok = runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, '--only', 'main', ...calib]);
  expect(ok.code).toBe(0);
  const before = fs.readdirSync(out).sort();
  const r = runCli(['branches', '--model', LLAMA2_M, '--matrix', MATRIX, '--out', out, '--only', 'gptq-4bit-128g-actorder_True', ...calib]);
  expectOneLine(r, /--out .*other holds main, built from another model \(.*llama2-s, not .*llama2-m\); use another --out folder/);
  expect(fs.readdirSync(out).sort()).toEqual(before);
  // Building it again without --resume or --force is refused too.
  const again = runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, '--only', 'main', ...calib]);
  expectOneLine(again, /other[/\\]main is already built; use --resume to skip finished branches or --force to rebuild/);
  const model = runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', LLAMA2_S, '--only', 'main', ...calib]);
  expectOneLine(model, /looks like a model folder/);
});

test('a full disk (a failing write): clear error, nothing finished-looking, and --resume completes afterwards', () => {
  const out = path.join(tmp, 'full');
  // GPTQ_FORGE_FAIL_WRITES_AFTER: writes fail with ENOSPC after that many bytes (src/io/atomic.ts).
  // 36 MB: past the copied embeddings (33 MB) and a few layers, with a checkpoint after each.
  const r = runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, '--only', 'main,gptq-3bit-128g-actorder_False', ...calib, '--checkpoint-every', '0'], {
    env: { GPTQ_FORGE_FAIL_WRITES_AFTER: '36000000' },
  });
  expectOneLine(r, /cannot write .*main\.partial.*: no space left on the device \(while building main; what is finished is kept: rerun with --resume after fixing it\)/);
  expect(finished(out)).toEqual([]);
  expect(fs.readdirSync(out)).toEqual(['main.partial']);
  expect(JSON.parse(fs.readFileSync(path.join(out, 'main.partial', 'state.json'), 'utf8')).layersDone).toBeGreaterThan(0);
  // No temporary file is left behind by the failed write.
  expect(fs.readdirSync(path.join(out, 'main.partial')).filter((f) => f.includes('.tmp-'))).toEqual([]);
  const resumed = runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, '--only', 'main,gptq-3bit-128g-actorder_False', ...calib, '--resume']);
  expect(resumed.code).toBe(0);
  expect(finished(out).sort()).toEqual(['gptq-3bit-128g-actorder_False', 'main']);
});

// A real full disk: a 1 MiB tmpfs in a user + mount namespace, where the kernel allows it.
const tmpfs = spawnSync('unshare', ['-rm', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /mnt && echo ok'], { encoding: 'utf8' });
const canMount = tmpfs.status === 0 && tmpfs.stdout.trim() === 'ok';
(canMount ? test : test.skip)('a real full disk (1 MiB tmpfs): clear error and no finished-looking folder', () => {
  const script = [
    'mount -t tmpfs -o size=1m tmpfs /mnt',
    `"${process.execPath}" "${BIN}" branches --model "${LLAMA2_S}" --matrix "${MATRIX}" --out /mnt/out --only main ${calib.join(' ')} 2>/mnt/err.txt; echo "rc=$?"`,
    'cat /mnt/err.txt; echo; ls -A /mnt/out; find /mnt/out -name manifest.json',
  ].join('\n');
  const r = spawnSync('unshare', ['-rm', 'sh', '-c', script], { encoding: 'utf8', timeout: 120_000 });
  expect(r.stdout).toMatch(/^rc=1\n/);
  expect(r.stdout).toMatch(/gptq: error: cannot write .*: no space left on the device/);
  expect(r.stdout).not.toContain('manifest.json');
});

test('verify names a tampered qweight tensor (one word flipped)', () => {
  const out = path.join(tmp, 'tamper');
  expect(runCli(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, '--only', 'main', ...calib]).code).toBe(0);
  const branch = path.join(out, 'main');
  expect(runCli(['verify', branch, '--quiet']).code).toBe(0);
  const tensor = 'model.layers.2.mlp.down_proj.qweight';
  const file = path.join(branch, 'model.safetensors');
  return SafetensorsFile.open(file).then(async (st) => {
    const { offset } = st.info(tensor);
    await st.close();
    const fd = fs.openSync(file, 'r+');
    const word = Buffer.alloc(4);
    fs.readSync(fd, word, 0, 4, offset + 4 * 100);
    word.writeInt32LE(~word.readInt32LE(0), 0);
    fs.writeSync(fd, word, 0, 4, offset + 4 * 100);
    fs.closeSync(fd);
    const r = runCli(['verify', branch, '--quiet']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/FAIL\s+sha256\s+model\.safetensors: sha256 differs from the manifest; tensor model\.layers\.2\.mlp\.down_proj\.qweight: sha256 differs/);
    expectOneLine({ ...r, stdout: '' }, /main failed 1 check\(s\): sha256 \(.*tensor model\.layers\.2\.mlp\.down_proj\.qweight: sha256 differs from the manifest\)/);
  });
});
