/**
 * The local side of `gptq push`: find the finished branches of a `gptq branches` folder (a
 * sub-folder with a valid manifest.json), pick those asked for, and check every file against its
 * manifest (size and sha256) before anything is sent. Each file's git blob id (sha1 of
 * `blob <size>\0<bytes>`) is computed in the same pass, so files the Hub already holds can be
 * recognised without re-sending them.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { WORK_SUFFIX } from '../gptq/branch-work';
import { FinishedBranch, scanBranchesDir, SkippedFolder } from '../gptq/branches-dir';
import { MANIFEST_FILE } from '../gptq/manifest';
import { REPORT_FILE, REPORT_FORMAT, Report } from '../eval/report-types';
import { readJsonFile } from '../io/json-file';

/** Written by `gptq push` itself into every branch; a branch file of that name is replaced. */
export const CARD_FILE = 'README.md';

export type { FinishedBranch, SkippedFolder };

export interface BranchScan {
  branches: FinishedBranch[];
  skipped: SkippedFolder[];
  report: Report | null;
  /** Why report.json was ignored, if it exists but cannot be used. */
  reportProblem?: string;
}

/** A file to upload: on disk (`abs`) or generated in memory (`content`). */
export interface UploadFile {
  path: string;
  size: number;
  sha256: string;
  /** Git blob id, as the Hub lists it in `oid` for files not stored in LFS. */
  gitOid: string;
  abs?: string;
  content?: Buffer;
}

async function readReport(dir: string): Promise<{ report: Report | null; problem?: string }> {
  let r: Partial<Report> | null | undefined;
  try {
    r = (await readJsonFile(path.join(dir, REPORT_FILE))) as Partial<Report> | null | undefined;
  } catch (e) {
    return { report: null, problem: (e as Error).message };
  }
  if (r === undefined) return { report: null };
  const rep = r;
  if (!rep || rep.format !== REPORT_FORMAT || !Array.isArray(rep.rows) || !rep.eval) {
    return { report: null, problem: `${REPORT_FILE} is not a gptq-forge report (format ${JSON.stringify(rep?.format)})` };
  }
  return { report: rep as Report };
}

/** The finished branches of `dir` (sorted, `main` first), the folders left out, and report.json. */
export async function scanBranches(dir: string): Promise<BranchScan> {
  const { branches, skipped } = await scanBranchesDir(dir);
  const { report, problem } = await readReport(dir);
  return { branches, skipped, report, reportProblem: problem };
}

/** The branches named by `--only` (comma-separated), or all of them. */
export function selectBranches(scan: BranchScan, only: string | undefined, dir: string): FinishedBranch[] {
  if (scan.branches.length === 0) {
    const why = scan.skipped.length ? ` (skipped: ${scan.skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')})` : '';
    throw new UserError(`${dir} has no finished branch (a sub-folder with a valid manifest.json)${why}`);
  }
  if (only === undefined) return scan.branches;
  const names = only.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) throw new UserError('--only needs at least one branch name');
  const known = new Map(scan.branches.map((b) => [b.name, b]));
  for (const n of names) {
    if (known.has(n)) continue;
    const sk = scan.skipped.find((s) => s.name === n || s.name === `${n}${WORK_SUFFIX}`);
    if (sk) throw new UserError(`--only ${n}: not a finished branch of ${dir} (${sk.name}: ${sk.reason})`);
    throw new UserError(`--only ${n}: no such branch in ${dir} (finished branches: ${[...known.keys()].join(', ')})`);
  }
  return scan.branches.filter((b) => names.includes(b.name));
}

/** sha256 and git blob id of a file in one read; `onBytes` gets the bytes read so far. */
export async function hashFile(abs: string, size: number, onBytes?: (done: number) => void): Promise<{ sha256: string; gitOid: string; size: number }> {
  const h256 = createHash('sha256');
  const h1 = createHash('sha1').update(`blob ${size}\0`);
  let done = 0;
  for await (const chunk of createReadStream(abs, { highWaterMark: 4 << 20 })) {
    h256.update(chunk as Buffer);
    h1.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    onBytes?.(done);
  }
  return { sha256: h256.digest('hex'), gitOid: h1.digest('hex'), size: done };
}

export function memoryFile(p: string, content: Buffer): UploadFile {
  return {
    path: p, size: content.length, content,
    sha256: createHash('sha256').update(content).digest('hex'),
    gitOid: createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex'),
  };
}

/**
 * Every file of the branch, checked against its manifest, then manifest.json itself: the upload
 * list. Throws a UserError naming the first file that is missing or differs.
 */
export async function verifyBranch(b: FinishedBranch, onBytes?: (done: number, total: number, file: string) => void): Promise<UploadFile[]> {
  const out: UploadFile[] = [];
  let before = 0;
  for (const f of b.manifest.files) {
    if (f.path === CARD_FILE) continue; // replaced by the generated model card
    const abs = path.join(b.dir, ...f.path.split('/'));
    const where = `${b.name}/${f.path}`;
    const lst = await fsp.lstat(abs).catch(() => null);
    if (lst && !lst.isFile()) {
      // A link (or anything but a file) could send a file from outside the branch folder.
      throw new UserError(`${where} is ${lst.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}; a branch holds plain files only; refusing to push`);
    }
    const st = lst;
    if (!st || !st.isFile()) throw new UserError(`${where} is listed in ${b.name}/${MANIFEST_FILE} but missing; refusing to push`);
    const real = await fsp.realpath(abs);
    const root = await fsp.realpath(b.dir);
    if (path.relative(root, real).startsWith('..') || path.isAbsolute(path.relative(root, real))) {
      throw new UserError(`${where} lies outside ${b.name}/ (through a linked folder); refusing to push`);
    }
    if (st.size !== f.size) {
      throw new UserError(`${where} has ${st.size} bytes, ${b.name}/${MANIFEST_FILE} says ${f.size}: the file changed after the branch was built; refusing to push`);
    }
    const h = await hashFile(abs, st.size, (d) => onBytes?.(before + d, b.sizeBytes, f.path));
    if (h.sha256 !== f.sha256 || h.size !== f.size) {
      throw new UserError(`${where}: sha256 ${h.sha256} differs from ${b.name}/${MANIFEST_FILE} (${f.sha256}): the file changed after the branch was built; refusing to push`);
    }
    before += f.size;
    out.push({ path: f.path, size: f.size, sha256: h.sha256, gitOid: h.gitOid, abs });
  }
  const mabs = path.join(b.dir, MANIFEST_FILE);
  const mst = await fsp.stat(mabs);
  const mh = await hashFile(mabs, mst.size);
  out.push({ path: MANIFEST_FILE, size: mh.size, sha256: mh.sha256, gitOid: mh.gitOid, abs: mabs });
  return out;
}
