/**
 * The work folder of one branch being built (`<out>/<branch>.partial/`): per-layer files that
 * make a build resumable.
 *   layer-NNNNN.safetensors   each layer's quantized tensors (qweight, qzeros, scales, g_idx),
 *                             written as soon as the layer is done
 *   x-NNNNN.safetensors       at a checkpoint: the calibration activations after that layer
 *                             (the next one's input), fp16 when they are fp16 values (always,
 *                             with fp16 activations), else fp32
 *   state.json                layersDone = N + 1 at a checkpoint after layer N: the commit point
 *   lock                      the building process ({pid, host}): a second run is refused
 * Each file is written atomically; the state comes last, then the previous activations file is
 * removed. A run killed at any moment restarts after the last checkpoint: layer files past it
 * are removed and made again (the same bytes: the build is deterministic).
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { atomicWriteFile, removeQuietly } from '../io/atomic';
import { readJsonFile } from '../io/json-file';
import { SafetensorsFile } from '../io/safetensors-reader';
import { SafetensorsWriter, TensorData, writeSafetensors } from '../io/safetensors-writer';
import { f16ToF32, f32ToF16 } from '../native';
import { Activations, f16Activations } from './pipeline';
import { BaseModelRef, CalibrationRef, Device, Manifest } from './manifest';
import { QuantizeSettings } from './settings';

export const WORK_SUFFIX = '.partial';
const STATE_FILE = 'state.json';
const STATE_FORMAT = 'gptq-forge/work@1';

export type Timings = Manifest['timings'];
export const zeroTimings = (): Timings => ({ seconds: 0, load: 0, forward: 0, hessian: 0, solve: 0, sink: 0, assemble: 0 });

export interface WorkState {
  format: typeof STATE_FORMAT;
  branch: string;
  settings: QuantizeSettings;
  base: BaseModelRef;
  calibration: CalibrationRef | null;
  device: Device;
  numLayers: number;
  layersDone: number;
  /** The activations file after layer layersDone − 1 (null before the first layer, or when not kept). */
  activations: string | null;
  timings: Timings;
  resumes: number;
}

/** Held by the process building in the folder: {pid, host}. */
const LOCK_FILE = 'lock';

/**
 * Takes the folder's lock, or fails naming the live process that holds it (two runs writing one
 * work folder would corrupt it). A lock whose process is gone (killed, crashed) is taken over.
 */
async function acquireLock(dir: string): Promise<void> {
  const file = path.join(dir, LOCK_FILE);
  const host = os.hostname();
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fsp.writeFile(file, `${JSON.stringify({ pid: process.pid, host })}\n`, { flag: 'wx' });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let held: { pid?: unknown; host?: unknown } = {};
    try {
      held = JSON.parse(await fsp.readFile(file, 'utf8'));
    } catch {
      // unreadable (a run killed while writing it): stale
    }
    const pid = typeof held.pid === 'number' ? held.pid : null;
    if (pid === process.pid && held.host === host) return; // this process's own (an earlier call)
    if (pid !== null && typeof held.host === 'string' && held.host !== host) {
      throw new UserError(`${dir} is being built by pid ${pid} on ${held.host}; if that run is gone, remove ${file}`);
    }
    if (pid !== null && alive(pid)) {
      throw new UserError(`${dir} is being built by another gptq process (pid ${pid}); wait for it, or stop it and rerun with --resume`);
    }
    await fsp.rm(file, { force: true }); // its process is gone
  }
  throw new UserError(`cannot take the lock ${file} (another run keeps taking it)`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const pad = (layer: number) => String(layer).padStart(5, '0');
export const layerFileName = (layer: number) => `layer-${pad(layer)}.safetensors`;
const activationsFileName = (layer: number) => `x-${pad(layer)}.safetensors`;

/** What must agree between an interrupted build and the run that resumes it. */
function identity(s: Pick<WorkState, 'branch' | 'settings' | 'base' | 'calibration' | 'device' | 'numLayers'>): string {
  return JSON.stringify([s.branch, s.settings, s.base.fingerprint, s.calibration?.digest ?? null, s.device, s.numLayers]);
}

export class BranchWork {
  private constructor(readonly dir: string, private state: WorkState) {}

  get layersDone(): number {
    return this.state.layersDone;
  }

  get timings(): Timings {
    return this.state.timings;
  }

  get resumes(): number {
    return this.state.resumes;
  }

  /** The state of an interrupted build in `dir`, or null when it has none (no state committed yet). */
  static async peek(dir: string): Promise<WorkState | null> {
    const json = (await readJsonFile(path.join(dir, STATE_FILE))) as WorkState | undefined;
    if (json === undefined) return null;
    if (json?.format !== STATE_FORMAT) throw new UserError(`${dir}/${STATE_FILE} is not a gptq-forge work state`);
    return json;
  }

  /**
   * Starts a build in `dir`, or continues the interrupted one there when `resume` is set (it
   * must be a build of the same branch, settings, model and calibration).
   */
  static async open(dir: string, init: Omit<WorkState, 'format' | 'layersDone' | 'activations' | 'timings' | 'resumes'>, resume: boolean): Promise<BranchWork> {
    await fsp.mkdir(dir, { recursive: true });
    await acquireLock(dir);
    const old = await BranchWork.peek(dir);
    if (old !== null) {
      const done = `${old.layersDone}/${old.numLayers} layers done`;
      if (!resume) {
        throw new UserError(`${dir} holds an interrupted build of ${old.branch} (${done}): rerun with --resume to continue it, or remove the folder`);
      }
      if (identity(old) !== identity(init)) {
        throw new UserError(`${dir} holds an interrupted build of ${old.branch} with other settings, model, calibration or device (${old.device}) (${done}); remove it to start again`);
      }
      const work = new BranchWork(dir, { ...old, resumes: old.resumes + 1 });
      await work.removeStrays();
      return work;
    }
    // Nothing committed: anything here is debris of a run killed before its first layer.
    for (const f of await fsp.readdir(dir)) if (f !== LOCK_FILE) await fsp.rm(path.join(dir, f), { recursive: true, force: true });
    const work = new BranchWork(dir, { format: STATE_FORMAT, ...init, layersDone: 0, activations: null, timings: zeroTimings(), resumes: 0 });
    await work.saveState();
    return work;
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
      const infos = file.names().filter((n) => n.startsWith('x.')).map((_, w) => file.info(`x.${w}`));
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
    } finally {
      await file.close();
    }
  }

  /** Writes one finished layer's quantized tensors (committed by a later checkpoint). */
  async writeLayer(layer: number, tensors: TensorData[]): Promise<void> {
    if (layer < this.state.layersDone) throw new Error(`writeLayer(${layer}) after ${this.state.layersDone} committed layers`);
    await writeSafetensors(path.join(this.dir, layerFileName(layer)), tensors);
  }

  /**
   * Commits the layers up to `layer` (their files written): the activations after it (null:
   * not kept, the build cannot resume past this point), then the state.
   */
  async checkpoint(layer: number, x: Activations | null, add: Partial<Timings>): Promise<void> {
    if (layer < this.state.layersDone) throw new Error(`checkpoint(${layer}) after ${this.state.layersDone} committed layers`);
    let activations: string | null = null;
    if (x !== null) {
      activations = activationsFileName(layer);
      await writeActivations(path.join(this.dir, activations), x);
    }
    const previous = this.state.activations;
    this.addTimings(add);
    this.state = { ...this.state, layersDone: layer + 1, activations };
    await this.saveState();
    if (previous !== null && previous !== activations) await removeQuietly(path.join(this.dir, previous));
  }

  addTimings(add: Partial<Timings>): void {
    const t = this.state.timings;
    for (const [k, v] of Object.entries(add) as [keyof Timings, number][]) t[k] += v;
  }

  /** Saves the timings (e.g. after the assembly) without changing the committed layers. */
  saveState(): Promise<void> {
    return atomicWriteFile(path.join(this.dir, STATE_FILE), `${JSON.stringify(this.state, null, 2)}\n`);
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

/**
 * One tensor x.W per window: fp16 when every value is one (no loss), else fp32. fp16 windows
 * are read and written a few at a time (bounded host memory).
 */
async function writeActivations(file: string, x: Activations): Promise<void> {
  if ('f32' in x) {
    const tensors: TensorData[] = [];
    for (const [w, data] of x.f32.entries()) {
      const { bits, inexact } = await f32ToF16(data);
      tensors.push(inexact === 0 ? { name: `x.${w}`, dtype: 'F16', shape: [data.length], data: bits } : { name: `x.${w}`, dtype: 'F32', shape: [data.length], data });
    }
    await writeSafetensors(file, tensors);
    return;
  }
  const writer = await SafetensorsWriter.create(file, Array.from({ length: x.windows }, (_, w) => ({ name: `x.${w}`, dtype: 'F16', shape: [x.perWindow] })));
  try {
    const step = Math.max(1, Math.floor(256e6 / (2 * x.perWindow))); // ~256 MB a read
    for (let first = 0; first < x.windows; first += step) {
      const count = Math.min(step, x.windows - first);
      const bits = await x.read(first, count);
      for (let w = 0; w < count; w++) await writer.write(`x.${first + w}`, bits.subarray(w * x.perWindow, (w + 1) * x.perWindow));
    }
    await writer.close();
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
