/**
 * A branches folder (`gptq branches --out DIR`): one finished branch per subfolder (with its
 * manifest.json), one work folder `<branch>.partial` per interrupted build. Everything in it
 * must come from one base model: a folder holding another model's branches is refused.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { BranchWork, WorkState, WORK_SUFFIX } from './branch-work';
import { SHARED_CALIBRATION_DIR } from './calibration-set';
import { Manifest, MANIFEST_FILE, readManifest } from './manifest';
import { MatrixBranch } from './matrix';
import { applyRecipe } from './recipes';
import { QuantizeSettings } from './settings';

export type BranchStatus =
  | { kind: 'new' }
  | { kind: 'partial'; layersDone: number; numLayers: number; state: WorkState }
  | { kind: 'finished'; manifest: Manifest }
  /** A folder under the branch's name that is not a finished branch. */
  | { kind: 'foreign'; what: string };

/** The settings of a matrix branch: its own, with its recipe applied where it wrote no key of its own. */
export function settingsOf(b: MatrixBranch): QuantizeSettings {
  const own: QuantizeSettings = {
    bits: b.bits, groupSize: b.groupSize, actOrder: b.actOrder, staticGroups: b.staticGroups, sym: true,
    mse: b.mse, dampPercent: b.damp, trueSequential: true, rtn: false,
    ...(b.qep !== undefined ? { qep: b.qep } : {}),
    ...(b.gptaq !== undefined ? { gptaq: b.gptaq } : {}),
  };
  return applyRecipe(b.recipe, own, (k) => b.explicit?.includes(k) ?? false);
}

async function exists(p: string): Promise<boolean> {
  return fsp.stat(p).then(() => true, () => false);
}

export interface FinishedBranch {
  name: string;
  dir: string;
  manifest: Manifest;
  /** Bytes of the files the manifest lists. */
  sizeBytes: number;
}

export interface SkippedFolder {
  name: string;
  reason: string;
}

const SHA256 = /^[0-9a-f]{64}$/;
/** Git ref names the Hub accepts, kept to the safe subset (no `..`, no `.lock` end). */
const BRANCH = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

/** A git branch name the Hub accepts that cannot be mistaken for a work folder. */
export function isValidBranchName(name: string): boolean {
  return BRANCH.test(name) && !name.includes('..') && !name.endsWith('.lock') && !name.endsWith('.') && !name.endsWith(WORK_SUFFIX);
}

/** Why the manifest cannot be pushed as the branch in folder `name`, or undefined if it can. */
function manifestProblem(m: Manifest, name: string): string | undefined {
  if (m.branch !== name) return `manifest.json names branch ${JSON.stringify(m.branch)}, not the folder's name`;
  if (!isValidBranchName(name)) return `${JSON.stringify(name)} is not a valid git branch name`;
  if (!Array.isArray(m.files) || m.files.length === 0) return 'manifest.json lists no files';
  if (!m.settings || typeof m.settings.bits !== 'number') return 'manifest.json has no settings';
  const seen = new Set<string>();
  for (const f of m.files) {
    if (!f || typeof f.path !== 'string' || !Number.isSafeInteger(f.size) || f.size < 0 || typeof f.sha256 !== 'string' || !SHA256.test(f.sha256)) {
      return `manifest.json has an invalid file entry ${JSON.stringify(f)}`;
    }
    const parts = f.path.split('/');
    if (f.path.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..') || f.path.includes('\\')) {
      return `manifest.json lists an unsafe path ${JSON.stringify(f.path)}`;
    }
    if (f.path === MANIFEST_FILE || f.path === '.gitattributes') return `manifest.json lists ${f.path} itself`;
    if (seen.has(f.path)) return `manifest.json lists ${f.path} twice`;
    seen.add(f.path);
  }
  return undefined;
}

/** The finished branches of `dir` (sorted, `main` first) and the folders left out, with why. */
export async function scanBranchesDir(dir: string): Promise<{ branches: FinishedBranch[]; skipped: SkippedFolder[] }> {
  const st = await fsp.stat(dir).catch(() => null);
  if (!st) throw new UserError(`branches folder not found: ${dir}`);
  if (!st.isDirectory()) throw new UserError(`not a folder: ${dir}`);
  const entries = (await fsp.readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory());
  const branches: FinishedBranch[] = [];
  const skipped: SkippedFolder[] = [];
  for (const d of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (d.name === SHARED_CALIBRATION_DIR) continue; // the windows a --devices run shares with its workers
    if (d.name.endsWith(WORK_SUFFIX)) {
      skipped.push({ name: d.name, reason: 'unfinished (.partial)' });
      continue;
    }
    const bdir = path.join(dir, d.name);
    let m: Manifest;
    try {
      m = await readManifest(bdir);
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      const missing = !(await fsp.stat(path.join(bdir, MANIFEST_FILE)).catch(() => null));
      skipped.push({ name: d.name, reason: missing ? 'no manifest.json' : e.message });
      continue;
    }
    const problem = manifestProblem(m, d.name);
    if (problem) {
      skipped.push({ name: d.name, reason: problem });
      continue;
    }
    branches.push({ name: d.name, dir: bdir, manifest: m, sizeBytes: m.files.reduce((a, f) => a + f.size, 0) });
  }
  branches.sort((a, b) => (a.name === 'main' ? -1 : b.name === 'main' ? 1 : a.name.localeCompare(b.name)));
  return { branches, skipped };
}

/** The manifests of the finished branches of `dir`. */
export async function finishedBranches(dir: string): Promise<Manifest[]> {
  return (await scanBranchesDir(dir)).branches.map((b) => b.manifest);
}

/**
 * Checks that `dir` is fit to hold this model's branches: not a file, not a model folder
 * itself, and nothing in it built from a model with another fingerprint. A pure check (a
 * missing `dir` is fine: the caller creates it once every check has passed).
 */
export async function checkBranchesDir(dir: string, fingerprint: string, model: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new UserError(`--out ${dir} exists and is not a folder`);
    if (code !== 'ENOENT') throw new UserError(`--out ${dir}: cannot read the folder (${code ?? (e as Error).message})`);
    return;
  }
  if (entries.includes('config.json') || entries.some((f) => f.endsWith('.safetensors'))) {
    throw new UserError(`--out ${dir} looks like a model folder (it has config.json or safetensors files); give an empty or branches folder`);
  }
  for (const name of entries) {
    const sub = path.join(dir, name);
    let other: { model: string; fingerprint: string } | null = null;
    if (name.endsWith(WORK_SUFFIX)) {
      const st = await BranchWork.peek(sub).catch(() => null);
      if (st) other = st.base;
    } else if (await exists(path.join(sub, MANIFEST_FILE))) {
      other = (await readManifest(sub)).base;
    }
    if (other && other.fingerprint !== fingerprint) {
      throw new UserError(
        `--out ${dir} holds ${name}, built from another model (${other.model}, not ${model}); use another --out folder`,
      );
    }
  }
}

/** Where a branch of the matrix stands in `dir`. */
export async function branchStatus(dir: string, name: string): Promise<BranchStatus> {
  const workDir = path.join(dir, name + WORK_SUFFIX);
  const wst = await fsp.lstat(workDir).catch(() => null);
  if (wst && !wst.isDirectory()) return { kind: 'foreign', what: `${workDir}: a file where its work folder goes` };
  // A work state that cannot be read is reported now, before any branch is built.
  const work = wst ? await BranchWork.peek(workDir) : null;
  if (work) return { kind: 'partial', layersDone: work.layersDone, numLayers: work.numLayers, state: work };
  const out = path.join(dir, name);
  const st = await fsp.lstat(out).catch(() => null);
  if (st === null) return { kind: 'new' };
  if (st.isSymbolicLink()) return { kind: 'foreign', what: 'a symbolic link' };
  if (!st.isDirectory()) return { kind: 'foreign', what: 'a file, not a folder' };
  if (await exists(path.join(out, MANIFEST_FILE))) return { kind: 'finished', manifest: await readManifest(out) };
  const entries = await fsp.readdir(out).catch(() => [] as string[]);
  if (entries.length > 0) return { kind: 'foreign', what: `${entries.length} file(s) but no ${MANIFEST_FILE}` };
  return { kind: 'new' };
}

/** Does a finished branch match the matrix entry (settings and calibration recipe)? */
export function matchesMatrix(m: Manifest, b: MatrixBranch): boolean {
  const c = m.calibration;
  const want = settingsOf(b);
  // Over the keys of both: an optional setting (qep, gptaq) in the manifest but not in the matrix differs.
  const keys = new Set([...Object.keys(m.settings ?? {}), ...Object.keys(want)]) as Set<keyof QuantizeSettings>;
  const same = [...keys].every((k) => (m.settings?.[k] ?? false) === (want[k] ?? false));
  return same && c !== null &&
    c.dataset === b.dataset && c.split === b.split && c.nsamples === b.nsamples && c.seqlen === b.seqlen && c.seed === b.seed;
}

/**
 * Why an interrupted build's state cannot be continued by this run (another branch, settings,
 * model, calibration, device or layer count), or undefined when it can: checked before any
 * branch is built (BranchWork.open checks it again when it opens the folder).
 */
export function resumeMismatch(
  st: WorkState, want: { branch: string; settings: QuantizeSettings; fingerprint: string; digest: string | null; device: string; numLayers: number },
): string | undefined {
  if (st.branch !== want.branch) return `it is a build of ${st.branch}`;
  const keys = new Set([...Object.keys(st.settings ?? {}), ...Object.keys(want.settings)]) as Set<keyof QuantizeSettings>;
  const diff = [...keys].filter((k) => (st.settings?.[k] ?? false) !== (want.settings[k] ?? false));
  if (diff.length > 0) return `other settings (${diff.join(', ')})`;
  if (st.base?.fingerprint !== want.fingerprint) return 'another base model (fingerprint)';
  if ((st.calibration?.digest ?? null) !== want.digest) return 'other calibration windows (digest)';
  if (st.device !== want.device) return `another device (${st.device})`;
  if (st.numLayers !== want.numLayers) return `${st.numLayers} layers, not ${want.numLayers}`;
  return undefined;
}
