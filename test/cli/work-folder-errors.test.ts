/**
 * `gptq branches --resume` never trusts its work folder (`<branch>.partial/`): a committed layer
 * or activations file that changed, a state.json edited by hand, a file name in state.json that
 * leaves the folder, a folder started by another build of the tool: each is refused with one
 * line naming the file, nothing outside the output folder changes, and the way out the line
 * gives (remove the work folder) then builds the branch bit-identical to an uninterrupted run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hashBranch } from '../../src/gptq/branch-hash';
import { runCli } from '../helpers/cli';
import { LLAMA2_S } from '../helpers/shared';
import { branchesArgs, dataStart, editStateSigned, flipBytes, oneErrorLine, runKilled, seeded, treeHashes, writeTinyMatrix } from '../helpers/work-folder';

jest.setTimeout(180_000);

let tmp: string;
let matrix: string;
let ref: Awaited<ReturnType<typeof hashBranch>>;
let modelBefore: Record<string, string>;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'work-folder-'));
  matrix = writeTinyMatrix(path.join(tmp, 'm.json'));
  const r = runCli(branchesArgs(matrix, path.join(tmp, 'ref')));
  expect(r.code).toBe(0);
  ref = await hashBranch(path.join(tmp, 'ref', 'main'));
  modelBefore = treeHashes(LLAMA2_S);
});
afterAll(() => {
  expect(treeHashes(LLAMA2_S)).toEqual(modelBefore);
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A build of main killed after 2 of its 4 layers: the output folder with main.partial in it. */
async function interrupted(name: string): Promise<{ out: string; work: string }> {
  const out = path.join(tmp, name);
  const work = path.join(out, 'main.partial');
  const k = await runKilled(branchesArgs(matrix, out), { work, layers: 2 });
  expect(k.signal).toBe('SIGKILL');
  const st = JSON.parse(fs.readFileSync(path.join(work, 'state.json'), 'utf8'));
  expect(st.layersDone).toBeGreaterThanOrEqual(2);
  expect(st.layersDone).toBeLessThan(4);
  return { out, work };
}

/** Runs --resume expecting a refusal: one line that names `names`, exit 1, nothing outside `out` changed, the work folder untouched. */
function expectRefused(out: string, names: (string | RegExp)[]): string {
  const outside = treeHashes(tmp, [out]);
  const work = treeHashes(out, [path.join(out, 'main.partial', 'lock')]);
  const r = runCli([...branchesArgs(matrix, out), '--resume']);
  const line = oneErrorLine(r);
  expect(r.code).toBe(1);
  for (const n of names) expect(line).toMatch(n);
  expect(treeHashes(tmp, [out])).toEqual(outside);
  expect(treeHashes(out, [path.join(out, 'main.partial', 'lock')])).toEqual(work);
  expect(fs.existsSync(path.join(out, 'main'))).toBe(false);
  return line;
}

/** The way out the refusal gives: remove the work folder; then --resume builds main bit-identical to the uninterrupted run. */
async function expectWayOutWorks(out: string, line: string): Promise<void> {
  const work = path.join(out, 'main.partial');
  expect(line).toContain(`remove ${work} to build main again`);
  fs.rmSync(work, { recursive: true, force: true });
  const r = runCli([...branchesArgs(matrix, out), '--resume']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const got = await hashBranch(path.join(out, 'main'));
  expect(got.files).toEqual(ref.files);
  expect(got.tensors).toEqual(ref.tensors);
}

test('two flipped bytes in a committed layer file: --resume refuses naming it, and removing the work folder rebuilds identically', async () => {
  const { out, work } = await interrupted('layer');
  const file = path.join(work, 'layer-00001.safetensors');
  flipBytes(file, seeded(1), 2, dataStart(file));
  const line = expectRefused(out, [`${file}: sha256 differs`]);
  await expectWayOutWorks(out, line);
});

test('two flipped bytes in the activations file: --resume refuses naming it', async () => {
  const { out, work } = await interrupted('activations');
  const st = JSON.parse(fs.readFileSync(path.join(work, 'state.json'), 'utf8'));
  const file = path.join(work, st.activations);
  flipBytes(file, seeded(2), 2, dataStart(file));
  const line = expectRefused(out, [`${file}: sha256 differs`]);
  await expectWayOutWorks(out, line);
});

test('a committed layer file truncated, missing or replaced by a link: refused naming it', async () => {
  const { out, work } = await interrupted('layer-kinds');
  const file = path.join(work, 'layer-00000.safetensors');
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, bytes.subarray(0, bytes.length - 3));
  expectRefused(out, [`${file}: ${bytes.length - 3} bytes where state.json records ${bytes.length}`]);
  fs.rmSync(file);
  expectRefused(out, [`${file}: missing`]);
  // A link to a copy outside the folder, with the right bytes, is not a committed file either.
  const copy = path.join(tmp, 'copy-of-layer0.safetensors');
  fs.writeFileSync(copy, bytes);
  fs.symlinkSync(copy, file);
  expectRefused(out, [`${file}: not a regular file`]);
});

test('a hand-edited state.json (digest left as it was) is refused naming state.json', async () => {
  const { out, work } = await interrupted('edited');
  const file = path.join(work, 'state.json');
  const st = JSON.parse(fs.readFileSync(file, 'utf8'));
  st.resumes = 41;
  fs.writeFileSync(file, JSON.stringify(st, null, 2));
  const line = expectRefused(out, [`${file}: its content does not match its digest`]);
  // Truncated: the same file named.
  fs.writeFileSync(file, fs.readFileSync(file).subarray(0, 40));
  expectRefused(out, [`${file}: invalid JSON`]);
  await expectWayOutWorks(out, line);
});

test('names in state.json that leave the work folder are refused and never read or deleted, even with a valid digest', async () => {
  const { out, work } = await interrupted('names');
  const st = JSON.parse(fs.readFileSync(path.join(work, 'state.json'), 'utf8'));
  // A victim outside the output folder that would pass for the activations (a copy of them).
  const victimDir = path.join(tmp, 'outside');
  fs.mkdirSync(victimDir, { recursive: true });
  const victim = path.join(victimDir, 'victim.safetensors');
  fs.copyFileSync(path.join(work, st.activations), victim);
  const pristine = fs.readFileSync(path.join(work, 'state.json'));
  for (const name of [path.relative(work, victim), victim, 'x-00001.safetensors/../../../outside/victim.safetensors', 'x-00001\0.safetensors', 'sub/x.safetensors']) {
    fs.writeFileSync(path.join(work, 'state.json'), pristine);
    editStateSigned(work, (s) => {
      s.activations = name;
    });
    expectRefused(out, [`${path.join(work, 'state.json')}: activations: `, /is not (a file name inside the work folder|the activations file of layer)/]);
    expect(fs.existsSync(victim)).toBe(true);
  }
  // A layer count that is not the model's (the layer names come from it) is refused too.
  fs.writeFileSync(path.join(work, 'state.json'), pristine);
  editStateSigned(work, (s) => {
    s.layersDone = 1e9;
  });
  expectRefused(out, [`${path.join(work, 'state.json')}: layersDone: 1000000000 is not in [0, 4]`]);
});

test('a work folder started by another build of the tool (version, addon) is refused with one line', async () => {
  const { out, work } = await interrupted('build');
  const pristine = fs.readFileSync(path.join(work, 'state.json'));
  editStateSigned(work, (s) => {
    s.build.version = '0.0.1';
  });
  let line = expectRefused(out, [`${work} holds a build of main`, 'started by another build of the tool (gptq-forge 0.0.1', 'which rounds differently']);
  fs.writeFileSync(path.join(work, 'state.json'), pristine);
  editStateSigned(work, (s) => {
    s.build.addon.march = 'x86-64-v3';
    s.build.addon.sha256 = '0'.repeat(64);
  });
  line = expectRefused(out, ['started by another build of the tool', '-march=x86-64-v3']);
  await expectWayOutWorks(out, line);
});
