/**
 * Nothing the user did not name as output is ever deleted or replaced (issue 12, Deliver 1 and
 * part of 6): an --out that is, holds or lies inside the model (or its Hugging Face cache) is
 * refused with or without --force; --force replaces only a finished branch (or ONNX export) of
 * this tool; two writers of one output cannot both succeed; every check of a branch matrix comes
 * before the first branch; a killed quantize's work folder is removed by the next run; a finished
 * branch calibrated on text that has since changed is not skipped by --resume.
 *
 * Each case spawns the real binary, expects one `gptq: error:` line and the exit code, no stack
 * trace, and hashes the tree around the output before and after.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CliResult, runCli, runCliAsync } from '../helpers/cli';
import { HubServer, startHubServer } from '../helpers/hub-server';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(240_000);

const BIN = path.resolve(__dirname, '../../bin/gptq.js');
const calib = ['--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--quiet'];

let tmp: string;
/** A writable copy of llama2-s for each test: if a case destroyed it, the next would not notice. */
let model: string;
let copies = 0;

function copyModel(to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(LLAMA2_S)) {
    fs.copyFileSync(path.join(LLAMA2_S, f), path.join(to, f));
    fs.chmodSync(path.join(to, f), 0o644);
  }
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-output-safety-'));
});
beforeEach(() => {
  model = path.join(tmp, `model-${++copies}`);
  copyModel(model);
});
afterEach(() => fs.rmSync(model, { recursive: true, force: true }));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** path → type, size, sha256 (files) or link target, of everything under `root` except `skip` paths. */
function treeHash(root: string, skip: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      if (skip.some((s) => p === s || p.startsWith(s + path.sep))) continue;
      const st = fs.lstatSync(p);
      const rel = path.relative(root, p);
      if (st.isSymbolicLink()) out[rel] = `link ${fs.readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[rel] = 'dir';
        walk(p);
      } else out[rel] = `file ${st.size} ${createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
    }
  };
  if (fs.existsSync(root)) walk(root);
  return out;
}

function expectOneError(r: CliResult, pattern: RegExp, code = 1): void {
  const lines = r.stderr.trim().split('\n');
  expect({ code: r.code, lines }).toEqual({ code, lines: [expect.stringMatching(/^gptq: error: /)] });
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).toBe('');
}

/** Runs `args`, expects one error line, and that nothing under `root` changed. */
function expectRefusedUnchanged(args: string[], pattern: RegExp, root = tmp): void {
  const before = treeHash(root);
  expectOneError(runCli(args), pattern);
  expect(treeHash(root)).toEqual(before);
}

describe('quantize: the output is never the model', () => {
  test('--out that is the model, a link to it, or a folder inside it: refused with or without --force', () => {
    const link = path.join(tmp, 'model-link');
    fs.symlinkSync(model, link);
    const cases: [string, string[]][] = [
      [model, ['--force']],
      [model, []],
      [`${model}/`, ['--force']],
      [link, ['--force']],
      [path.join(model, 'branch'), ['--force']],
      [path.join(link, 'branch'), []],
    ];
    for (const [out, extra] of cases) {
      expectRefusedUnchanged(['quantize', '--model', model, '--out', out, ...extra, ...calib],
        /--out .* (is|lies inside) the model folder of --model .*; it is never written to, with or without --force/);
    }
    // --model given through the link: the same folder.
    expectRefusedUnchanged(['quantize', '--model', link, '--out', model, '--force', ...calib], /is the model folder of --model/);
    // gptq branches: no branch folder inside the model either.
    const matrix = path.resolve(__dirname, '../../configs/llama-2-70b-gptq.json');
    expectRefusedUnchanged(['branches', '--model', model, '--matrix', matrix, '--only', 'main', '--out', path.join(model, 'branches'), ...calib],
      /--out .*model-\d+[/\\]branches lies inside the model folder of --model/);
    fs.unlinkSync(link);
  });

  test('--out set to the model\'s parent folder (it holds the model): refused, even with --force', () => {
    const parent = path.join(tmp, 'parent');
    copyModel(path.join(parent, 'm'));
    const m = path.join(parent, 'm');
    for (const extra of [['--force'], []]) {
      expectRefusedUnchanged(['quantize', '--model', m, '--out', parent, ...extra, ...calib], /--out .*parent contains the model folder of --model/);
    }
    fs.rmSync(parent, { recursive: true });
  });

  test('a Hub model: --out that is or lies inside its Hugging Face cache folder is refused', async () => {
    const server: HubServer = await startHubServer({ 'models/test/s': { dir: LLAMA2_S } });
    try {
      const cache = path.join(tmp, 'hf-cache');
      const env = { HF_ENDPOINT: server.url, HF_HUB_CACHE: cache, HF_HOME: '', HF_TOKEN: '' };
      // First a download (the model lands in the cache), then the refusals.
      const ok = await runCliAsync(['quantize', '--model', 'test/s', '--out', path.join(tmp, 'from-hub'), ...calib, '--rtn'], { env });
      expect(ok.code).toBe(0);
      const storage = path.join(cache, 'models--test--s');
      const snapshots = fs.readdirSync(path.join(storage, 'snapshots'));
      expect(snapshots).toHaveLength(1);
      for (const [out, extra] of [[storage, ['--force']], [path.join(storage, 'snapshots'), ['--force']], [path.join(storage, 'snapshots', snapshots[0]), ['--force']], [path.join(storage, 'blobs', 'x'), []], [cache, ['--force']]] as [string, string[]][]) {
        const before = treeHash(tmp);
        const r = await runCliAsync(['quantize', '--model', 'test/s', '--out', out, ...extra, ...calib], { env });
        expectOneError(r, /--out .* (is|lies inside|contains) the (Hugging Face cache folder|model folder) of --model test\/s/);
        expect(treeHash(tmp)).toEqual(before);
      }
    } finally {
      await server.close();
    }
  });
});

describe('--force replaces only a finished branch of this tool', () => {
  test('an arbitrary non-empty folder, a plain file, a branch with extra files, a link: refused even with --force; a branch is replaced', () => {
    const folder = path.join(tmp, 'photos');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'holiday.jpg'), 'not a branch');
    expectRefusedUnchanged(['quantize', '--model', model, '--out', folder, '--force', ...calib],
      /--out .*photos already holds 1 file\(s\) and is not a branch of this tool .*never replaced, even with --force/);
    // A model folder (config.json, safetensors) is not a branch either.
    const other = path.join(tmp, 'other-model');
    copyModel(other);
    expectRefusedUnchanged(['quantize', '--model', model, '--out', other, '--force', ...calib], /is not a branch of this tool/);
    const file = path.join(tmp, 'notes.txt');
    fs.writeFileSync(file, 'my notes');
    expectRefusedUnchanged(['quantize', '--model', model, '--out', file, '--force', ...calib], /--out .*notes\.txt exists and is not a folder; it is never replaced/);

    const branch = path.join(tmp, 'branch');
    expect(runCli(['quantize', '--model', model, '--out', branch, '--bits', '8', ...calib]).code).toBe(0);
    const link = path.join(tmp, 'branch-link');
    fs.symlinkSync(branch, link);
    expectRefusedUnchanged(['quantize', '--model', model, '--out', link, '--force', ...calib], /is a symbolic link .*never replaced/);
    fs.unlinkSync(link);
    fs.writeFileSync(path.join(branch, 'my-eval.txt'), 'results');
    expectRefusedUnchanged(['quantize', '--model', model, '--out', branch, '--force', ...calib],
      /branch but also holds my-eval\.txt, which its manifest does not list; it is never replaced, even with --force/);
    fs.unlinkSync(path.join(branch, 'my-eval.txt'));
    const forced = runCli(['quantize', '--model', model, '--out', branch, '--bits', '4', '--force', ...calib]);
    expect(forced.code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(branch, 'quantize_config.json'), 'utf8')).bits).toBe(4);
    fs.rmSync(other, { recursive: true });
  });

  test('gptq branches --force: a foreign folder or a file under a branch\'s name is refused before any work', () => {
    const matrix = path.resolve(__dirname, '../../configs/llama-2-70b-gptq.json');
    const out = path.join(tmp, 'branches-foreign');
    fs.mkdirSync(path.join(out, 'gptq-4bit-128g-actorder_True'), { recursive: true });
    fs.writeFileSync(path.join(out, 'gptq-4bit-128g-actorder_True', 'weights.bin'), 'mine');
    fs.writeFileSync(path.join(out, 'gptq-3bit-128g-actorder_False'), 'a file');
    const args = ['branches', '--model', model, '--matrix', matrix, '--out', out, '--force', ...calib];
    expectRefusedUnchanged([...args, '--only', 'main,gptq-4bit-128g-actorder_True'],
      /gptq-4bit-128g-actorder_True holds 1 file\(s\) but no manifest\.json and is not a branch of this tool; it is never replaced, even with --force/);
    expectRefusedUnchanged([...args, '--only', 'main,gptq-3bit-128g-actorder_False'], /gptq-3bit-128g-actorder_False holds a file, not a folder/);
    fs.rmSync(out, { recursive: true });
  });
});

describe('one writer per output', () => {
  test('two concurrent quantize runs on one --out: one writes, the other fails with one line', async () => {
    const out = path.join(tmp, 'race');
    const before = treeHash(tmp);
    const args = ['quantize', '--model', model, '--out', out, ...calib];
    const [a, b] = await Promise.all([runCliAsync(args), runCliAsync(args)]);
    const ok = [a, b].filter((r) => r.code === 0);
    const failed = [a, b].filter((r) => r.code !== 0);
    expect(ok).toHaveLength(1);
    expect(ok[0].stdout).toMatch(/^wrote /);
    expect(failed).toHaveLength(1);
    expectOneError(failed[0], /--out .*race (is being written by another gptq process \(pid \d+\); wait for it to finish|already holds a GPTQ branch)/);
    // Nothing else changed beside it: no lock, no work folder left.
    expect(treeHash(tmp, [out])).toEqual(before);
    expect(fs.existsSync(path.join(out, 'manifest.json'))).toBe(true);
  });

  test('a quantize killed with SIGKILL: the next run to that --out removes its .partial-* folder (and takes its lock)', async () => {
    const out = path.join(tmp, 'killed');
    const before = treeHash(tmp);
    // A slower build (more windows), killed once its work folder exists.
    const child = spawn(process.execPath, [BIN, 'quantize', '--model', model, '--out', out, '--dataset', WIKI_V1_VALID, '--nsamples', '32', '--seqlen', '512', '--quiet'], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const partials = () => fs.readdirSync(tmp).filter((f) => f.startsWith('killed.partial-'));
    const t0 = Date.now();
    while (partials().length === 0 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 20));
    expect(partials()).toEqual([expect.stringMatching(new RegExp(`^killed\\.partial-${child.pid}-\\w+$`))]);
    child.kill('SIGKILL');
    await exited;
    expect(partials()).toHaveLength(1);
    const leftover = partials()[0];
    const r = await runCliAsync(['quantize', '--model', model, '--out', out, '--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128']);
    expect(r.code).toBe(0);
    const notes = r.stderr.split('\n').filter((l) => /removed /.test(l));
    expect(notes).toEqual([`removed ${path.join(tmp, leftover)}, left by a gptq quantize that was killed (pid ${child.pid})`]);
    expect(r.stderr).not.toMatch(/gptq: error/);
    expect(partials()).toEqual([]);
    expect(treeHash(tmp, [out])).toEqual(before);
  });
});

describe('export-onnx: everything checked before anything is written', () => {
  test('--force with a folder at one of the two outputs: refused, the other file untouched', () => {
    const dir = path.join(tmp, 'onnx');
    fs.mkdirSync(dir);
    // A folder where the model file goes, a file where its .data goes.
    fs.mkdirSync(path.join(dir, 'a.onnx'));
    fs.writeFileSync(path.join(dir, 'a.onnx.data'), 'precious');
    expectRefusedUnchanged(['export-onnx', model, '--out', path.join(dir, 'a.onnx'), '--force', '--quiet'], /a\.onnx exists and is not a file; it is never replaced, even with --force/);
    // The other way round, next to a real export of ours.
    expect(runCli(['export-onnx', model, '--out', path.join(dir, 'b.onnx'), '--quiet']).code).toBe(0);
    fs.rmSync(path.join(dir, 'b.onnx.data'));
    fs.mkdirSync(path.join(dir, 'b.onnx.data'));
    expectRefusedUnchanged(['export-onnx', model, '--out', path.join(dir, 'b.onnx'), '--force', '--quiet'], /b\.onnx\.data exists and is not a file/);
    // A file that is not an export of ours is never overwritten, and neither is anything in the model folder.
    fs.writeFileSync(path.join(dir, 'c.onnx'), 'someone else\'s file');
    expectRefusedUnchanged(['export-onnx', model, '--out', path.join(dir, 'c.onnx'), '--force', '--quiet'], /c\.onnx already exists .*it is not an ONNX export of this tool, so it is never replaced/);
    expectRefusedUnchanged(['export-onnx', model, '--out', path.join(model, 'model.safetensors'), '--force', '--quiet'], /model\.safetensors already exists .*not an ONNX export/);
    expectRefusedUnchanged(['export-onnx', model, '--out', path.join(model, 'model.onnx'), '--quiet'], /--out .*model\.onnx lies inside the model folder of --model/);
    // Our own export is replaced with --force.
    fs.rmSync(path.join(dir, 'b.onnx.data'), { recursive: true });
    expect(runCli(['export-onnx', model, '--out', path.join(dir, 'd.onnx'), '--quiet']).code).toBe(0);
    expect(runCli(['export-onnx', model, '--out', path.join(dir, 'd.onnx'), '--force', '--quiet']).code).toBe(0);
    fs.rmSync(dir, { recursive: true });
  });
});

describe('gptq branches: the whole matrix is checked before the first branch', () => {
  const entry = (name: string, dataset: string) => ({ name, bits: 4, groupSize: 128, actOrder: true, damp: 0.01, dataset, seqlen: 128, nsamples: 2 });

  test('a missing or unreadable dataset of the second branch is reported before the first is built', () => {
    const bad = path.join(tmp, 'not-utf8.txt');
    fs.writeFileSync(bad, Buffer.from([0x61, 0xff, 0xfe, 0x62]));
    for (const [dataset, pattern] of [
      [path.join(tmp, 'missing.txt'), /branch second: dataset file not found: .*missing\.txt/],
      [bad, /branch second: .*not-utf8\.txt: not UTF-8 text/],
    ] as [string, RegExp][]) {
      const matrix = path.join(tmp, 'two.json');
      fs.writeFileSync(matrix, JSON.stringify({ branches: [entry('first', WIKI_V1_VALID), entry('second', dataset)] }));
      const out = path.join(tmp, 'two-out');
      expectRefusedUnchanged(['branches', '--model', model, '--matrix', matrix, '--out', out, '--quiet'], pattern);
      expect(fs.existsSync(out)).toBe(false);
    }
  });

  test('--resume refuses a finished branch calibrated on text that has since changed', () => {
    const text = path.join(tmp, 'calib.txt');
    fs.writeFileSync(text, fs.readFileSync(WIKI_V1_VALID, 'utf8').slice(0, 60_000));
    const matrix = path.join(tmp, 'resume.json');
    fs.writeFileSync(matrix, JSON.stringify({ branches: [entry('main', text)] }));
    const out = path.join(tmp, 'resume-out');
    const args = ['branches', '--model', model, '--matrix', matrix, '--out', out, '--quiet'];
    expect(runCli(args).code).toBe(0);
    const skipped = runCli([...args, '--resume']);
    expect(skipped.code).toBe(0);
    expect(skipped.stdout).toMatch(/^skipped /);
    // The same file name, other text.
    fs.writeFileSync(text, fs.readFileSync(WIKI_V1_VALID, 'utf8').slice(60_000, 120_000));
    expectRefusedUnchanged([...args, '--resume'],
      /branch main: .*resume-out[/\\]main was calibrated on other text than .*calib\.txt gives now \(calibration digest [0-9a-f]{12}… in its manifest, [0-9a-f]{12}… now\); use --force to rebuild it/);
    const rebuilt = runCli([...args, '--force']);
    expect(rebuilt.code).toBe(0);
    expect(runCli([...args, '--resume']).stdout).toMatch(/^skipped /);
  });
});
