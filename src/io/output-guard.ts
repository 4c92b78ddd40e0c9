/**
 * The rules that keep an output from destroying anything the user did not name as output
 * (README "Failure behaviour"):
 *   - an output that is, contains or lies inside an input (the model folder, its Hugging Face
 *     cache folder, the real files its weights are) is refused, with or without --force; paths
 *     are compared by real path (symbolic links resolved) and by device/inode (bind mounts,
 *     case-insensitive file systems);
 *   - `--force` replaces only a finished branch of this tool (a folder with our manifest.json and
 *     nothing it does not list) or, for `export-onnx`, only an ONNX export of this tool;
 *   - one writer per output: an `O_EXCL` lock file `<out>.lock` beside it holds {pid, host,
 *     token}; the lock of a dead process (same host) is taken over, and it is checked again
 *     right before the output is swapped in by rename.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { promises as fsp, Stats } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';

/** An input an output must keep away from. */
export interface ProtectedInput {
  path: string;
  /** How to name it in a message, e.g. "the model folder of --model llama2-s". */
  what: string;
  /** A folder may be neither the output, nor hold it, nor lie inside it; a file neither be it nor lie in it. */
  kind: 'dir' | 'file';
}

async function lstatOrNull(p: string): Promise<Stats | null> {
  return fsp.lstat(p).catch(() => null);
}

async function statOrNull(p: string): Promise<Stats | null> {
  return fsp.stat(p).catch(() => null);
}

/**
 * The real path of `p`, which need not exist: its longest existing prefix resolved (symbolic
 * links included), the rest appended.
 */
export async function realPathLoose(p: string): Promise<string> {
  let cur = path.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(await fsp.realpath(cur), ...rest.reverse());
    } catch {
      const up = path.dirname(cur);
      if (up === cur) return path.join(cur, ...rest.reverse());
      rest.push(path.basename(cur));
      cur = up;
    }
  }
}

const idOf = (s: Stats) => `${s.dev}:${s.ino}`;

/** Device/inode ids of `real` (an absolute real path) and of every existing folder above it, nearest first. */
async function ancestorIds(real: string): Promise<string[]> {
  const ids: string[] = [];
  let cur = real;
  for (;;) {
    const st = await statOrNull(cur);
    if (st) ids.push(idOf(st));
    const up = path.dirname(cur);
    if (up === cur) return ids;
    cur = up;
  }
}

const inside = (child: string, parent: string) => child !== parent && child.startsWith(parent.endsWith(path.sep) ? parent : parent + path.sep);

/** How `out` relates to `input`: 'same', 'inside' (out lies inside input), 'contains' (out holds input) or null. */
async function relation(out: string, input: string): Promise<'same' | 'inside' | 'contains' | null> {
  const ro = await realPathLoose(out);
  const ri = await realPathLoose(input);
  if (ro === ri) return 'same';
  if (inside(ro, ri)) return 'inside';
  if (inside(ri, ro)) return 'contains';
  const so = await statOrNull(ro);
  const si = await statOrNull(ri);
  if (so && si && idOf(so) === idOf(si)) return 'same';
  if (si && (await ancestorIds(path.dirname(ro))).includes(idOf(si))) return 'inside';
  if (so && (await ancestorIds(path.dirname(ri))).includes(idOf(so))) return 'contains';
  return null;
}

/**
 * Refuses an output (`flag`, e.g. `--out`) that is, contains or lies inside a protected input.
 * Pure check: nothing is created.
 */
export async function refuseOverlap(flag: string, out: string, inputs: ProtectedInput[]): Promise<void> {
  for (const i of inputs) {
    const r = await relation(out, i.path);
    if (r === null || (r === 'inside' && i.kind === 'file')) continue;
    const how = r === 'same' ? 'is' : r === 'inside' ? 'lies inside' : 'contains';
    const where = i.what.includes(i.path) ? '' : ` (${i.path})`;
    throw new UserError(`${flag} ${out} ${how} ${i.what}${where}; it is never written to, with or without --force: give an output outside it`);
  }
}

/**
 * What the output of a command reading the model folder `modelDir` must keep away from: the
 * folder; its Hugging Face cache folder (`models--owner--name`) when it is a cache snapshot;
 * and the real files of its weights and configs (a snapshot's files are links into `blobs/`).
 */
export async function modelInputs(modelDir: string, spec: string): Promise<ProtectedInput[]> {
  const dir = path.resolve(modelDir);
  const inputs: ProtectedInput[] = [{ path: dir, what: `the model folder of --model ${spec}`, kind: 'dir' }];
  for (const d of [dir, await realPathLoose(dir)]) {
    if (path.basename(path.dirname(d)) === 'snapshots' && /^(models|datasets)--/.test(path.basename(path.dirname(path.dirname(d))))) {
      inputs.push({ path: path.dirname(path.dirname(d)), what: `the Hugging Face cache folder of --model ${spec}`, kind: 'dir' });
    }
  }
  const entries = await fsp.readdir(dir).catch(() => [] as string[]);
  const seen = new Set<string>();
  for (const f of entries) {
    const real = await fsp.realpath(path.join(dir, f)).catch(() => null);
    if (real === null || inside(real, dir) || seen.has(real)) continue;
    seen.add(real);
    inputs.push({ path: real, what: `${f} of --model ${spec}`, kind: 'file' });
  }
  return inputs;
}

/** What is at an output folder's place. */
export type OutputState =
  | { kind: 'absent' }
  | { kind: 'empty' }
  | { kind: 'branch'; what: string };

/**
 * What `out` holds, refusing (with or without --force) anything that is not absent, an empty
 * folder or a finished branch of this tool: a file, a symbolic link, a folder without our
 * manifest.json, or a branch folder holding files its manifest does not list. A finished
 * branch is refused too unless `force`. `manifestFormat` is the manifest's `format` value.
 */
export async function checkReplaceableFolder(flag: string, out: string, force: boolean, manifestFormat: string): Promise<OutputState> {
  const st = await lstatOrNull(out);
  if (st === null) {
    // A missing output whose parent is a file cannot be made either.
    const up = await realPathLoose(path.dirname(path.resolve(out)));
    const ust = await statOrNull(up);
    if (ust && !ust.isDirectory()) throw new UserError(`${flag} ${out}: ${up} is not a folder`);
    return { kind: 'absent' };
  }
  if (st.isSymbolicLink()) {
    const target = await fsp.readlink(out).catch(() => '?');
    throw new UserError(`${flag} ${out} is a symbolic link (to ${target}); it is never replaced: name a folder that is not a link`);
  }
  if (!st.isDirectory()) throw new UserError(`${flag} ${out} exists and is not a folder; it is never replaced, even with --force`);
  let entries: string[];
  try {
    entries = await fsp.readdir(out);
  } catch (e) {
    throw new UserError(`${flag} ${out}: cannot read the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (entries.length === 0) return { kind: 'empty' };
  type ManifestPeek = { format?: unknown; files?: unknown; settings?: { bits?: unknown; groupSize?: unknown; actOrder?: unknown } };
  let manifest: ManifestPeek | null = null;
  try {
    manifest = JSON.parse(await fsp.readFile(path.join(out, 'manifest.json'), 'utf8')) as ManifestPeek | null;
  } catch {
    manifest = null;
  }
  const files = manifest && manifest.format === manifestFormat && Array.isArray(manifest.files) ? manifest.files : null;
  if (files === null) {
    throw new UserError(
      `${flag} ${out} already holds ${entries.length} file(s) and is not a branch of this tool (no gptq-forge manifest.json); ` +
        'it is never replaced, even with --force: remove it yourself or give another output',
    );
  }
  const listed = new Set(files.map((f: { path?: unknown }) => (typeof f?.path === 'string' ? f.path.split('/')[0] : '')));
  const extra = entries.filter((e) => e !== 'manifest.json' && !listed.has(e));
  if (extra.length > 0) {
    throw new UserError(
      `${flag} ${out} is a branch but also holds ${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', ...' : ''}, which its manifest does not list; ` +
        'it is never replaced, even with --force: move those files out or give another output',
    );
  }
  const s = manifest!.settings ?? {};
  const what = `a GPTQ branch (bits ${String(s.bits)}, group_size ${String(s.groupSize)}, desc_act ${String(s.actOrder)})`;
  if (!force) throw new UserError(`${flag} ${out} already holds ${what}; use --force to replace it`);
  return { kind: 'branch', what };
}

/** Whether process `pid` is alive on this host (EPERM: alive, owned by someone else). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A zombie (exited, not yet reaped: a --devices worker orphaned by a SIGKILLed parent, in a
  // container whose init does not reap) answers signal 0 but holds nothing.
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (e) {
    // gone meanwhile, or no /proc (not Linux: signal 0 is the answer)
    return (e as NodeJS.ErrnoException).code !== 'ENOENT' || !fs.existsSync('/proc/self/stat');
  }
}

interface LockContent {
  pid?: unknown;
  host?: unknown;
  token?: unknown;
}

/** Is the process named by a lock (or work folder) content gone? Null: unknown (another host, unreadable). */
export function ownerGone(held: LockContent | null): boolean | null {
  if (!held || typeof held.pid !== 'number') return null;
  if (typeof held.host === 'string' && held.host !== os.hostname()) return null;
  return !processAlive(held.pid);
}

/**
 * The exclusive lock of one output: `<out>.lock`, created with O_EXCL. Two commands writing one
 * output cannot both hold it; the lock of a dead process on this host is taken over.
 */
export class OutputLock {
  private constructor(readonly file: string, private readonly content: string, private readonly flag: string, private readonly out: string) {}

  static async acquire(flag: string, out: string): Promise<OutputLock> {
    const file = `${path.resolve(out)}.lock`;
    const mine = `${JSON.stringify({ pid: process.pid, host: os.hostname(), token: randomBytes(8).toString('hex'), since: new Date().toISOString() })}\n`;
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
    } catch (e) {
      throw new UserError(`${flag} ${out}: cannot create its folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await fsp.writeFile(file, mine, { flag: 'wx' });
        return new OutputLock(file, mine, flag, out);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EEXIST') throw new UserError(`${flag} ${out}: cannot create the lock ${file} (${code ?? (e as Error).message})`);
      }
      const text = await fsp.readFile(file, 'utf8').catch(() => null);
      if (text === null) continue; // released meanwhile
      let held: LockContent | null = null;
      try {
        held = JSON.parse(text) as LockContent | null;
      } catch {
        held = null;
      }
      const gone = ownerGone(held);
      if (gone === false || (gone === null && held && typeof held.pid === 'number')) {
        const where = typeof held?.host === 'string' && held.host !== os.hostname() ? ` on ${held.host}` : '';
        throw new UserError(
          `${flag} ${out} is being written by another gptq process (pid ${String(held!.pid)}${where}); wait for it to finish` +
            (where ? `, or remove ${file} if that run is gone` : ''),
        );
      }
      if (held === null) {
        // Unreadable: a process killed between creating and writing it, or one writing it now.
        const st = await statOrNull(file);
        if (st && Date.now() - st.mtimeMs < 2000) {
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
      }
      // Its process is gone: take it over, by rename, so that two takers cannot both win.
      const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`;
      try {
        await fsp.rename(file, aside);
      } catch {
        continue;
      }
      const took = await fsp.readFile(aside, 'utf8').catch(() => null);
      if (took !== text) {
        // Someone else took it over and wrote a fresh lock between our read and our rename: put it back.
        await fsp.link(aside, file).catch(() => undefined);
      }
      await fsp.rm(aside, { force: true });
    }
    throw new UserError(`${flag} ${out}: cannot take the lock ${file} (other runs keep taking it)`);
  }

  /** Fails unless this process still holds the lock (checked right before the output is swapped in). */
  async assertHeld(): Promise<void> {
    const text = await fsp.readFile(this.file, 'utf8').catch(() => null);
    if (text !== this.content) {
      throw new UserError(`${this.flag} ${this.out}: another process took the lock ${this.file}; nothing was written under ${this.out}`);
    }
  }

  /** Removes the lock if it is still this process's. */
  async release(): Promise<void> {
    const text = await fsp.readFile(this.file, 'utf8').catch(() => null);
    if (text === this.content) await fsp.rm(this.file, { force: true });
  }
}

/**
 * The work folders `<out>.partial-<pid>-<id>` that `gptq quantize` runs killed before the end
 * left beside `out`, whose process is gone: removed (the caller holds the output's lock, so no
 * live run of this output is writing one). Returns what was removed, with the dead pid.
 */
export async function removeDeadPartials(out: string): Promise<{ dir: string; pid: number }[]> {
  const parent = path.dirname(path.resolve(out));
  const base = path.basename(path.resolve(out));
  const entries = await fsp.readdir(parent).catch(() => [] as string[]);
  const removed: { dir: string; pid: number }[] = [];
  for (const name of entries) {
    if (!name.startsWith(`${base}.partial-`)) continue;
    const m = /^(\d+)-[A-Za-z0-9]+$/.exec(name.slice(base.length + '.partial-'.length));
    if (!m) continue;
    const dir = path.join(parent, name);
    const st = await lstatOrNull(dir);
    if (!st?.isDirectory()) continue;
    // The work folder's own lock names the process and host; the name gives the pid alone.
    let held: LockContent | null = null;
    try {
      held = JSON.parse(await fsp.readFile(path.join(dir, 'lock'), 'utf8')) as LockContent | null;
    } catch {
      held = { pid: Number(m[1]) };
    }
    const pid = typeof held?.pid === 'number' ? held.pid : Number(m[1]);
    if (pid === process.pid || ownerGone({ ...held, pid }) !== true) continue;
    await fsp.rm(dir, { recursive: true, force: true });
    removed.push({ dir, pid });
  }
  return removed;
}
