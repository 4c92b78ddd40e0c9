/**
 * A branches folder (`gptq branches --out DIR`): one finished branch per subfolder (with its
 * manifest.json), one work folder `<branch>.partial` per interrupted build. Everything in it
 * must come from one base model: a folder holding another model's branches is refused.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { BranchWork, WORK_SUFFIX } from './branch-work';
import { Manifest, MANIFEST_FILE, readManifest } from './manifest';
import { MatrixBranch } from './matrix';
import { QuantizeSettings } from './settings';

export type BranchStatus =
  | { kind: 'new' }
  | { kind: 'partial'; layersDone: number; numLayers: number }
  | { kind: 'finished'; manifest: Manifest }
  /** A folder under the branch's name that is not a finished branch. */
  | { kind: 'foreign'; what: string };

export function settingsOf(b: MatrixBranch): QuantizeSettings {
  return {
    bits: b.bits, groupSize: b.groupSize, actOrder: b.actOrder, staticGroups: b.staticGroups, sym: true,
    mse: b.mse, dampPercent: b.damp, trueSequential: true, rtn: false,
  };
}

async function exists(p: string): Promise<boolean> {
  return fsp.stat(p).then(() => true, () => false);
}

/** Finished branches of `dir` (subfolders with a manifest), by name. */
export async function finishedBranches(dir: string): Promise<Manifest[]> {
  const out: Manifest[] = [];
  let entries;
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${dir}: no such folder`);
    if (code === 'ENOTDIR') throw new UserError(`${dir} is not a folder`);
    throw e;
  }
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    if (e.isDirectory() && !e.name.endsWith(WORK_SUFFIX) && (await exists(path.join(dir, e.name, MANIFEST_FILE)))) {
      out.push(await readManifest(path.join(dir, e.name)));
    }
  }
  return out;
}

/**
 * Checks that `dir` is fit to hold this model's branches (creating it when missing): not a
 * model folder itself, and nothing in it built from a model with another fingerprint.
 */
export async function checkBranchesDir(dir: string, fingerprint: string, model: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new UserError(`--out ${dir} exists and is not a folder`);
    if (code !== 'ENOENT') throw e;
    await fsp.mkdir(dir, { recursive: true });
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
  const work = await BranchWork.peek(path.join(dir, name + WORK_SUFFIX)).catch(() => null);
  if (work) return { kind: 'partial', layersDone: work.layersDone, numLayers: work.numLayers };
  const out = path.join(dir, name);
  if (await exists(path.join(out, MANIFEST_FILE))) return { kind: 'finished', manifest: await readManifest(out) };
  const entries = await fsp.readdir(out).catch(() => [] as string[]);
  if (entries.length > 0) return { kind: 'foreign', what: `${entries.length} file(s) but no ${MANIFEST_FILE}` };
  return { kind: 'new' };
}

/** Does a finished branch match the matrix entry (settings and calibration recipe)? */
export function matchesMatrix(m: Manifest, b: MatrixBranch): boolean {
  const c = m.calibration;
  const want = settingsOf(b);
  const same = (Object.keys(want) as (keyof QuantizeSettings)[]).every((k) => (m.settings[k] ?? false) === (want[k] ?? false));
  return same && c !== null &&
    c.dataset === b.dataset && c.split === b.split && c.nsamples === b.nsamples && c.seqlen === b.seqlen && c.seed === b.seed;
}
