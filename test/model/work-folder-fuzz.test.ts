/**
 * Fuzz of resumable work folders (`<branch>.partial/` of `gptq branches`), properties only:
 * a real interrupted build of llama2-s is copied and damaged at random (bytes flipped, files
 * truncated, removed or replaced by links, state.json fields changed with or without a valid
 * digest, hostile names: '..', absolute paths, NUL, links out of the folder, deep nesting), then
 *   - in process, BranchWork.open(--resume) must either refuse with a one-line UserError, or
 *     accept only a folder whose every reused byte (committed layer files, activations) is the
 *     undamaged build's;
 *   - through the real binary, `--resume` must either exit 1 with one `gptq: error:` line and
 *     no stack trace, or exit 0 with a branch bit-identical to an uninterrupted build;
 * and nothing outside the work / output folder is ever written or deleted. Seeded
 * (WORK_FUZZ_SEED=<seed> replays a run; the seed is printed).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../../src/errors';
import { BranchWork, workStateDigest } from '../../src/gptq/branch-work';
import { hashBranch } from '../../src/gptq/branch-hash';
import { runCli } from '../helpers/cli';
import { branchesArgs, flipBytes, oneErrorLine, runKilled, seeded, treeHashes, writeTinyMatrix } from '../helpers/work-folder';

jest.setTimeout(120_000);

const seed = Number(process.env.WORK_FUZZ_SEED ?? Date.now() % 1e9);
const rand = seeded(seed);
const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)];

let tmp: string;
let matrix: string;
let pristine: string; // the interrupted output folder, kept undamaged
let outside: string; // files outside every output folder, named by the hostile names
let ref: Awaited<ReturnType<typeof hashBranch>>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the parsed state.json, edited field by field
let state: Record<string, any>;

beforeAll(async () => {
  console.log(`work-folder fuzz: seed ${seed} (WORK_FUZZ_SEED=${seed} replays it)`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'work-fuzz-'));
  matrix = writeTinyMatrix(path.join(tmp, 'm.json'));
  expect(runCli(branchesArgs(matrix, path.join(tmp, 'ref'))).code).toBe(0);
  ref = await hashBranch(path.join(tmp, 'ref', 'main'));
  pristine = path.join(tmp, 'pristine');
  const k = await runKilled(branchesArgs(matrix, pristine), { work: path.join(pristine, 'main.partial'), layers: 2 });
  expect(k.signal).toBe('SIGKILL');
  fs.rmSync(path.join(pristine, 'main.partial', 'lock'), { force: true });
  state = JSON.parse(fs.readFileSync(path.join(pristine, 'main.partial', 'state.json'), 'utf8'));
  expect(state.layersDone).toBeGreaterThanOrEqual(2);
  outside = path.join(tmp, 'outside');
  fs.mkdirSync(outside);
  fs.copyFileSync(path.join(pristine, 'main.partial', state.activations), path.join(outside, 'victim.safetensors'));
  fs.copyFileSync(path.join(pristine, 'main.partial', 'layer-00000.safetensors'), path.join(outside, 'layer-00000.safetensors'));
  fs.writeFileSync(path.join(outside, 'state.json'), fs.readFileSync(path.join(pristine, 'main.partial', 'state.json')));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function hostileNames(work: string): unknown[] {
  const victim = path.join(outside, 'victim.safetensors');
  return [
    path.relative(work, victim), victim, `x-00001.safetensors/../${path.relative(work, victim)}`, 'x-00001\0.safetensors', '..', '.', '',
    'sub/x-00001.safetensors', 'x-00001.safetensors\\..\\..', 'C:\\x', 'state.json', 'lock', 'layer-00000.safetensors', 'x'.repeat(5000),
    `x-${String(state.layersDone).padStart(5, '0')}.safetensors`, 7, null, ['x'], { a: 1 },
  ];
}
const hostileValues = (): unknown[] => [
  -1, 0, 1, 3, 4, 5, 1e9, 2 ** 53, 1.5, NaN, '2', null, true, [], {}, 'x'.repeat(1000), [{ size: -1, sha256: 'z' }],
  'two\nlines', { version: 'a\nb', addon: { march: 'x\ny', sha256: 'z'.repeat(500) } }, { version: 1, addon: null },
];
const deep = (n: number): unknown => {
  let v: unknown = 0;
  for (let i = 0; i < n; i++) v = [v];
  return v;
};

/** One random damage to the work folder `work` (the copy); returns what it did. */
function damage(work: string): string {
  const files = fs.readdirSync(work).filter((f) => f !== 'lock' && fs.lstatSync(path.join(work, f)).isFile());
  const file = path.join(work, pick(files));
  const st = () => JSON.parse(fs.readFileSync(path.join(work, 'state.json'), 'utf8'));
  const write = (s: unknown, sign: boolean) => {
    try {
      if (sign && s && typeof s === 'object') (s as Record<string, unknown>).digest = workStateDigest(s);
    } catch {
      // too deep to sign: written as it is
    }
    fs.writeFileSync(path.join(work, 'state.json'), typeof s === 'string' ? s : JSON.stringify(s));
  };
  const kind = Math.floor(rand() * 10);
  switch (kind) {
    case 0:
      flipBytes(file, rand, 1 + Math.floor(rand() * 6));
      return `flipped bytes of ${file}`;
    case 1: {
      const n = fs.statSync(file).size;
      fs.truncateSync(file, Math.floor(rand() * n));
      return `truncated ${file}`;
    }
    case 2:
      fs.rmSync(file);
      return `removed ${file}`;
    case 3: {
      const target = pick([path.join(outside, 'victim.safetensors'), path.join(outside, 'layer-00000.safetensors'), path.join(outside, 'state.json')]);
      fs.rmSync(file);
      fs.symlinkSync(target, file);
      return `${file} made a link to ${target}`;
    }
    case 4:
    case 5: {
      // A field changed; signed (a valid digest) or not.
      const s = st();
      const sign = kind === 5;
      const key = pick(['activations', 'activationsFile', 'layersDone', 'numLayers', 'layers', 'resumes', 'timings', 'branch', 'device', 'build', 'format', 'base', 'calibration', 'settings']);
      s[key] = key === 'activations' ? pick(hostileNames(work)) : pick(hostileValues());
      write(s, sign);
      return `state.json ${key} = ${JSON.stringify(s[key])?.slice(0, 60)} (${sign ? 'signed' : 'unsigned'})`;
    }
    case 6: {
      // Fewer layers claimed, consistently (records dropped, activations renamed): still refused or still right.
      const s = st();
      const done = Math.floor(rand() * s.layersDone);
      s.layersDone = done;
      s.layers = s.layers.slice(0, done);
      s.activations = done > 0 ? `x-${String(done - 1).padStart(5, '0')}.safetensors` : null;
      if (done === 0) s.activationsFile = null;
      write(s, true);
      return `state.json claims ${done} layers (signed)`;
    }
    case 7: {
      const s = st();
      const rec = pick(['layers', 'activationsFile']);
      if (rec === 'layers') s.layers[Math.floor(rand() * s.layers.length)].sha256 = 'f'.repeat(64);
      else s.activationsFile.size += 1;
      write(s, pick([true, false]));
      return `state.json ${rec} record changed`;
    }
    case 8:
      write(pick(['', '{', 'null', '[]', '"x"', '1e999', JSON.stringify({ ...st(), extra: 0 }).replace('"extra":0', `"extra":${'['.repeat(100000)}${']'.repeat(100000)}`), '['.repeat(200000) + ']'.repeat(200000), '\0'.repeat(10)]), false);
      return 'state.json replaced by garbage';
    default: {
      const s = st();
      s.settings = deep(1000);
      write(s, true);
      return 'state.json settings nested 1000 deep (signed)';
    }
  }
}

function copyPristine(to: string): string {
  fs.cpSync(pristine, to, { recursive: true });
  return path.join(to, 'main.partial');
}

test('in process: a damaged work folder is refused with one line, or only undamaged bytes are reused; nothing outside it changes', async () => {
  const init = { branch: state.branch, settings: state.settings, base: state.base, calibration: state.calibration, device: state.device, numLayers: state.numLayers };
  const undamaged = path.join(pristine, 'main.partial');
  const watched = () => ({ outside: treeHashes(outside), pristine: treeHashes(pristine) });
  const before = watched();
  const all = treeHashes(tmp, [path.join(tmp, 'inproc')]);
  let refused = 0, accepted = 0;
  const t0 = Date.now();
  for (let i = 0; Date.now() - t0 < 8000 && i < 400; i++) {
    const out = path.join(tmp, 'inproc', String(i));
    const work = copyPristine(out);
    const what = `case ${i} (seed ${seed}): ${damage(work)}`;
    let opened: BranchWork | null = null;
    try {
      opened = await BranchWork.open(work, init, true);
    } catch (e) {
      if (!(e instanceof UserError)) throw new Error(`${what}: not a UserError: ${(e as Error).stack}`);
      if (e.message.includes('\n')) throw new Error(`${what}: more than one line: ${e.message}`);
      refused++;
    }
    if (opened) {
      accepted++;
      expect(opened.layersDone).toBeLessThanOrEqual(state.layersDone);
      for (let l = 0; l < opened.layersDone; l++) {
        const f = `layer-${String(l).padStart(5, '0')}.safetensors`;
        if (!fs.readFileSync(path.join(work, f)).equals(fs.readFileSync(path.join(undamaged, f)))) throw new Error(`${what}: accepted a damaged ${f}`);
      }
      if (opened.layersDone > 0) {
        const x = await opened.loadActivations().catch((e) => e);
        if (x instanceof Error) throw new Error(`${what}: accepted activations that do not load: ${x.message}`);
        if (opened.layersDone !== state.layersDone) throw new Error(`${what}: accepted activations of another layer`);
        if (!fs.readFileSync(path.join(work, state.activations)).equals(fs.readFileSync(path.join(undamaged, state.activations)))) {
          throw new Error(`${what}: accepted damaged activations`);
        }
      }
    }
    expect(watched()).toEqual(before);
    fs.rmSync(out, { recursive: true, force: true });
  }
  expect(treeHashes(tmp, [path.join(tmp, 'inproc')])).toEqual(all);
  console.log(`work-folder fuzz in process: ${refused} refused, ${accepted} accepted`);
  expect(refused).toBeGreaterThan(0);
});

test('the real binary on damaged work folders: one error line and exit 1, or exit 0 bit-identical; nothing outside the output changes', async () => {
  const t0 = Date.now();
  let runs = 0;
  for (let i = 0; runs < 4 || (Date.now() - t0 < 10_000 && runs < 8); i++, runs++) {
    const out = path.join(tmp, 'cli', String(i));
    const work = copyPristine(out);
    const what = `run ${i} (seed ${seed}): ${damage(work)}`;
    const before = treeHashes(tmp, [out]);
    const r = runCli([...branchesArgs(matrix, out), '--resume']);
    if (r.code === 0) {
      const got = await hashBranch(path.join(out, 'main'));
      if (JSON.stringify(got) !== JSON.stringify(ref)) throw new Error(`${what}: exit 0 with a branch that differs from the uninterrupted build`);
    } else {
      try {
        oneErrorLine(r);
        expect(r.code).toBe(1);
      } catch (e) {
        throw new Error(`${what}: ${(e as Error).message}\n${r.stderr}`);
      }
      expect(fs.existsSync(path.join(out, 'main'))).toBe(false);
    }
    expect(treeHashes(tmp, [out])).toEqual(before);
    fs.rmSync(out, { recursive: true, force: true });
  }
});
