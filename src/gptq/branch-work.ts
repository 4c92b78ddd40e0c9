/**
 * The work folder of one branch being built (`<out>/<branch>.partial/`): per-layer files that
 * make a build resumable.
 *   layer-NNNNN.safetensors   each layer's quantized tensors (qweight, qzeros, scales, g_idx),
 *                             written as soon as the layer is done
 *   x-NNNNN.safetensors       at a checkpoint: the calibration activations after that layer
 *                             (the next one's input), fp16 when they are fp16 values (always,
 *                             with fp16 activations), else fp32; with QEP also the fp16
 *                             path's (xf.W beside x.W: the file is twice as large)
 *   state.json                layersDone = N + 1 at a checkpoint after layer N: the commit point
 *   lock                      the building process ({pid, host}): a second run is refused
 * Each file is written atomically; the state comes last, then the previous activations file is
 * removed. A run killed at any moment restarts after the last checkpoint: layer files past it
 * are removed and made again (the same bytes: the build is deterministic).
 *
 * Nothing in the folder is trusted on resume. state.json carries the sha256 of its own content
 * (`digest`, over its canonical JSON without that field) and the size and sha256 of every
 * committed layer file and of the activations file (each hashed as read back from disk right
 * after it was written); every field is checked for type and range, and the one file name it
 * holds must be exactly the name this code gives (`x-NNNNN.safetensors` of layer
 * layersDone − 1), so no name from the file becomes a path unchecked. A resume re-hashes every
 * file it reuses before using any, and refuses with one line naming the first that differs and
 * the way out (remove the work folder: the branch is then built from the start). The resume
 * identity includes the tool's version and the addon build (work-build.ts). A refused open
 * changes nothing in the folder (the lock it took is dropped).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { atomicWriteFile, removeQuietly } from '../io/atomic';
import { SafetensorsFile } from '../io/safetensors-reader';
import { SafetensorsWriter, TensorData, writeSafetensors } from '../io/safetensors-writer';
import { f16ToF32, f32ArrayToF16 } from '../native';
import { Activations, F16Activations, f16Activations } from './engine';
import { Device } from './manifest';
import { currentWorkBuild, describeWorkBuild } from './work-build';
import { acquireLock, LOCK_FILE, releaseLock } from './work-lock';
import {
  activationsFileName, canonicalJson, FileRecord, hashFile, isObject, layerFileName, MAX_STATE_BYTES, shown, STATE_FILE, STATE_FORMAT, stateProblem,
  StoredWorkState, Timings, WORK_SUFFIX, WorkInit, WorkState, workStateDigest, zeroTimings,
} from './work-state';

export { canonicalJson, hashFile, isPlainFileName, layerFileName, WORK_SUFFIX, workStateDigest, zeroTimings } from './work-state';
export type { FileRecord, StoredWorkState, Timings, WorkState } from './work-state';

/** The way out of a work folder that cannot be continued (it works: the next run starts afresh). */
const removeHint = (dir: string, branch?: string) => {
  const name = branch ?? (path.basename(dir).endsWith(WORK_SUFFIX) ? path.basename(dir).slice(0, -WORK_SUFFIX.length) : 'the branch');
  return `remove ${dir} to build ${name} again from the start`;
};


/** What must agree between an interrupted build and the run that resumes it (besides the tool build). */
function identity(s: Pick<WorkState, 'branch' | 'settings' | 'base' | 'calibration' | 'device' | 'numLayers'>): string {
  return canonicalJson([s.branch, s.settings, s.base.fingerprint, s.calibration?.digest ?? null, s.device, s.numLayers]);
}

/**
 * Re-hashes every committed file a resume reuses (the layer files and the activations): each
 * must be a regular file (not a link) of the recorded size and sha256. Refused naming the first
 * that is not.
 */
async function verifyCommitted(dir: string, s: StoredWorkState): Promise<void> {
  const files: [string, FileRecord][] = s.layers.map((r, l) => [layerFileName(l), r]);
  if (s.activations !== null && s.activationsFile !== null) files.push([s.activations, s.activationsFile]);
  for (const [name, want] of files) {
    const file = path.join(dir, name);
    const bad = (what: string) => new UserError(`${file}: ${what}; ${removeHint(dir, s.branch)}`);
    const st = await fsp.lstat(file).catch(() => null);
    if (st === null) throw bad('missing, but state.json records it as committed');
    if (!st.isFile()) throw bad('not a regular file');
    if (st.size !== want.size) throw bad(`${st.size} bytes where state.json records ${want.size} (changed since it was committed)`);
    const got = await hashFile(file);
    if (got.size !== want.size || got.sha256 !== want.sha256) throw bad('sha256 differs from the one state.json records (changed since it was committed)');
  }
}

/**
 * Why the interrupted build `state` (from BranchWork.peek) cannot be continued by this build of
 * the tool on `device`, or undefined: for checks made before any work starts (BranchWork.open
 * checks it again).
 */
export function workBuildMismatch(state: WorkState, device: Device): string | undefined {
  const old = (state as Partial<StoredWorkState>).build;
  const now = currentWorkBuild(device);
  if (old !== undefined && canonicalJson(old) === canonicalJson(now)) return undefined;
  return `started by another build of the tool (${old ? describeWorkBuild(old) : 'unknown'}; this is ${describeWorkBuild(now)}), which rounds differently`;
}

export class BranchWork {
  /** Records of layer files written by this run and not yet committed. */
  private readonly written = new Map<number, FileRecord>();

  private constructor(readonly dir: string, private state: StoredWorkState) {}

  get layersDone(): number {
    return this.state.layersDone;
  }

  get timings(): Timings {
    return this.state.timings;
  }

  get resumes(): number {
    return this.state.resumes;
  }

  /**
   * The state of an interrupted build in `dir`, or null when it has none (no state committed
   * yet). A state.json that this tool did not write, whose digest does not match its content,
   * or whose fields are out of range or name other files is refused (a UserError naming it).
   */
  static async peek(dir: string): Promise<StoredWorkState | null> {
    const file = path.join(dir, STATE_FILE);
    const refuse = (what: string) => new UserError(`${file}: ${what}; ${removeHint(dir)}`);
    let st;
    try {
      st = await fsp.lstat(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw refuse(`cannot read it (${code ?? (e as Error).message})`);
    }
    if (!st.isFile()) throw refuse('not a regular file');
    if (st.size > MAX_STATE_BYTES) throw refuse(`${st.size} bytes: not a work state`);
    let json: unknown;
    try {
      json = JSON.parse(await fsp.readFile(file, 'utf8'));
    } catch (e) {
      throw refuse(e instanceof SyntaxError ? `invalid JSON (${e.message.replace(/\s+/g, ' ')})` : `cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (!isObject(json) || json.format !== STATE_FORMAT) {
      throw refuse(`not a gptq-forge work state (format ${isObject(json) ? shown(json.format) : 'none'}, expected ${STATE_FORMAT})`);
    }
    let digest: string;
    try {
      digest = workStateDigest(json);
    } catch (e) {
      throw refuse(`not a gptq-forge work state (${(e as Error).message})`);
    }
    if (typeof json.digest !== 'string' || json.digest !== digest) {
      throw refuse('its content does not match its digest (edited or damaged)');
    }
    const problem = stateProblem(json);
    if (problem) throw refuse(problem);
    return json as unknown as StoredWorkState;
  }

  /**
   * Starts a build in `dir`, or continues the interrupted one there when `resume` is set: it
   * must be a build of the same branch, settings, model, calibration and tool build, and every
   * committed file it reuses must be as it was written.
   */
  static async open(dir: string, init: WorkInit, resume: boolean): Promise<BranchWork> {
    const here = await fsp.lstat(dir).catch(() => null);
    if (here && (here.isSymbolicLink() || !here.isDirectory())) {
      throw new UserError(`${dir} is ${here.isSymbolicLink() ? 'a symbolic link' : 'not a folder'}; the work folder of ${init.branch} must be a folder: remove it`);
    }
    await fsp.mkdir(dir, { recursive: true });
    await acquireLock(dir);
    try {
      const build = currentWorkBuild(init.device);
      const old = await BranchWork.peek(dir);
      if (old !== null) {
        const done = `${old.layersDone}/${old.numLayers} layers done`;
        if (!resume) {
          throw new UserError(`${dir} holds an interrupted build of ${old.branch} (${done}): rerun with --resume to continue it, or remove the folder`);
        }
        const mismatch = workBuildMismatch(old, init.device);
        if (mismatch) throw new UserError(`${dir} holds a build of ${old.branch} (${done}) ${mismatch}; ${removeHint(dir, old.branch)}`);
        if (identity(old) !== identity(init)) {
          throw new UserError(`${dir} holds an interrupted build of ${old.branch} with other settings, model, calibration or device (${old.device}) (${done}); remove it to start again`);
        }
        await verifyCommitted(dir, old);
        const work = new BranchWork(dir, { ...old, resumes: old.resumes + 1 });
        await work.removeStrays();
        return work;
      }
      // Nothing committed: anything here is debris of a run killed before its first layer.
      for (const f of await fsp.readdir(dir)) if (f !== LOCK_FILE) await fsp.rm(path.join(dir, f), { recursive: true, force: true });
      const work = new BranchWork(dir, {
        format: STATE_FORMAT, ...init, build, layersDone: 0, layers: [], activations: null, activationsFile: null,
        timings: zeroTimings(), resumes: 0, digest: '',
      });
      await work.saveState();
      return work;
    } catch (e) {
      await releaseLock(dir);
      throw e;
    }
  }

  /**
   * The calibration activations after the last committed layer: fp16 bits of all windows when
   * they were kept in fp16 (as the pipelines keep them), else one fp32 array per window.
   */
  async loadActivations(): Promise<Activations> {
    const name = this.state.activations;
    if (name === null) throw new UserError(`${this.dir}: no activations were kept after layer ${this.state.layersDone - 1}; remove the folder to start again`);
    const file = await SafetensorsFile.open(path.join(this.dir, name));
    try {
      const x = await readActivations(file, 'x');
      // QEP: the fp16 path's activations, kept beside the quantized path's (tensors xf.W).
      if (file.names().some((n) => n.startsWith('xf.'))) x.fp = await readActivations(file, 'xf');
      return x;
    } finally {
      await file.close();
    }
  }

  /** Writes one finished layer's quantized tensors (committed by a later checkpoint), and hashes the file as it lies on disk. */
  async writeLayer(layer: number, tensors: TensorData[]): Promise<void> {
    if (layer < this.state.layersDone) throw new Error(`writeLayer(${layer}) after ${this.state.layersDone} committed layers`);
    const file = path.join(this.dir, layerFileName(layer));
    await writeSafetensors(file, tensors);
    this.written.set(layer, await hashFile(file));
  }

  /**
   * Commits the layers up to `layer` (their files written): the activations after it (null:
   * not kept, the build cannot resume past this point), then the state with every committed
   * file's size and sha256.
   */
  async checkpoint(layer: number, x: Activations | null, add: Partial<Timings>): Promise<void> {
    if (layer < this.state.layersDone) throw new Error(`checkpoint(${layer}) after ${this.state.layersDone} committed layers`);
    let activations: string | null = null;
    let activationsFile: FileRecord | null = null;
    if (x !== null) {
      activations = activationsFileName(layer);
      await writeActivations(path.join(this.dir, activations), x);
      activationsFile = await hashFile(path.join(this.dir, activations));
    }
    const layers = [...this.state.layers];
    for (let l = this.state.layersDone; l <= layer; l++) {
      layers.push(this.written.get(l) ?? (await hashFile(path.join(this.dir, layerFileName(l)))));
      this.written.delete(l);
    }
    const previous = this.state.activations;
    this.addTimings(add);
    this.state = { ...this.state, layersDone: layer + 1, layers, activations, activationsFile };
    await this.saveState();
    if (previous !== null && previous !== activations) await removeQuietly(path.join(this.dir, previous));
  }

  addTimings(add: Partial<Timings>): void {
    const t = this.state.timings;
    for (const [k, v] of Object.entries(add) as [keyof Timings, number][]) t[k] += v;
  }

  /** Saves the state (e.g. the timings after the assembly) with its digest, without changing the committed layers. */
  saveState(): Promise<void> {
    const state: StoredWorkState = { ...this.state, digest: '' };
    state.digest = workStateDigest(state);
    this.state = state;
    return atomicWriteFile(path.join(this.dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  }

  layerFile(layer: number): string {
    return path.join(this.dir, layerFileName(layer));
  }

  async remove(): Promise<void> {
    await fsp.rm(this.dir, { recursive: true, force: true });
  }

  /** Files a killed run left: temporaries, layers and activations past the committed state. */
  private async removeStrays(): Promise<void> {
    const keep = new Set([STATE_FILE, LOCK_FILE, ...Array.from({ length: this.state.layersDone }, (_, l) => layerFileName(l))]);
    if (this.state.activations) keep.add(this.state.activations);
    for (const f of await fsp.readdir(this.dir)) {
      if (!keep.has(f)) await fsp.rm(path.join(this.dir, f), { recursive: true, force: true });
    }
  }
}

/** The windows `<prefix>.0`, `<prefix>.1`, … of an activations file: fp16 bits when all are F16, else fp32 arrays. */
async function readActivations(file: SafetensorsFile, prefix: 'x' | 'xf'): Promise<Activations> {
  const infos = file.names().filter((n) => n.startsWith(`${prefix}.`)).map((_, w) => file.info(`${prefix}.${w}`));
  if (infos.every((i) => i.dtype === 'F16')) {
    const f16 = new Uint16Array(infos.reduce((n, i) => n + i.byteLength / 2, 0));
    let at = 0;
    for (const i of infos) {
      const buf = await file.read(i.name);
      new Uint8Array(f16.buffer, at * 2, buf.byteLength).set(buf);
      at += buf.byteLength / 2;
    }
    return f16Activations(f16, infos.length);
  }
  const f32: Float32Array[] = [];
  for (const i of infos) {
    const buf = await file.read(i.name);
    const bytes = new Uint8Array(buf.byteLength);
    bytes.set(buf);
    f32.push(i.dtype === 'F16' ? await f16ToF32(new Uint16Array(bytes.buffer)) : new Float32Array(bytes.buffer));
  }
  return { f32 };
}

/**
 * One tensor x.W per window: fp16 when every value is one (no loss), else fp32; with QEP's fp16
 * path (x.fp), its windows as xf.W beside them (fp32 windows: CPU engine; fp16 bits: CUDA engine). fp16 windows are read and written a
 * few at a time (bounded host memory).
 */
async function writeActivations(file: string, x: Activations): Promise<void> {
  if ('f32' in x) {
    const tensors: TensorData[] = [];
    const add = async (prefix: string, windows: Float32Array[]) => {
      for (const [w, data] of windows.entries()) {
        const { bits, inexact } = await f32ArrayToF16(data);
        const name = `${prefix}.${w}`;
        tensors.push(inexact === 0 ? { name, dtype: 'F16', shape: [data.length], data: bits } : { name, dtype: 'F32', shape: [data.length], data });
      }
    };
    await add('x', x.f32);
    if (x.fp !== undefined) {
      if (!('f32' in x.fp)) throw new Error('writeActivations: the fp16 path\'s activations must be fp32 windows (CPU engine)');
      await add('xf', x.fp.f32);
    }
    await writeSafetensors(file, tensors);
    return;
  }
  // fp16 bits read a few windows at a time (CUDA engine), with QEP the fp16 path's the same way.
  const fp = x.fp;
  if (fp !== undefined && ('f32' in fp || fp.windows !== x.windows || fp.perWindow !== x.perWindow)) {
    throw new Error('writeActivations: the fp16 path\'s activations must be fp16 bits of the same shape as x (CUDA engine)');
  }
  const parts: [string, F16Activations][] = fp !== undefined ? [['x', x], ['xf', fp]] : [['x', x]];
  const writer = await SafetensorsWriter.create(file, parts.flatMap(([prefix]) =>
    Array.from({ length: x.windows }, (_, w) => ({ name: `${prefix}.${w}`, dtype: 'F16' as const, shape: [x.perWindow] }))));
  try {
    const step = Math.max(1, Math.floor(256e6 / (2 * x.perWindow))); // ~256 MB a read
    for (const [prefix, src] of parts) {
      for (let first = 0; first < x.windows; first += step) {
        const count = Math.min(step, x.windows - first);
        const bits = await src.read(first, count);
        for (let w = 0; w < count; w++) await writer.write(`${prefix}.${first + w}`, bits.subarray(w * x.perWindow, (w + 1) * x.perWindow));
      }
    }
    await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
