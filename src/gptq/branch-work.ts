/**
 * The work folder of one branch being built (`<out>/<branch>.partial/`): per-layer checkpoints
 * that make a build resumable. After each decoder layer, in this order and each atomically:
 *   layer-NNNNN.safetensors   that layer's quantized tensors (qweight, qzeros, scales, g_idx)
 *   x-NNNNN.safetensors       the calibration activations after that layer (the next one's input)
 *   state.json                layersDone = N + 1: the commit point
 * then the previous activations file is removed. A run killed at any moment restarts from the
 * last committed layer; files a killed run left beyond it are ignored and overwritten.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { atomicWriteFile, removeQuietly } from '../io/atomic';
import { readJsonFile } from '../io/json-file';
import { SafetensorsFile } from '../io/safetensors-reader';
import { TensorData, writeSafetensors } from '../io/safetensors-writer';
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
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.mkdir(dir, { recursive: true });
    const work = new BranchWork(dir, { format: STATE_FORMAT, ...init, layersDone: 0, activations: null, timings: zeroTimings(), resumes: 0 });
    await work.saveState();
    return work;
  }

  /** The calibration activations after the last committed layer. */
  async loadActivations(): Promise<Float32Array[]> {
    const name = this.state.activations;
    if (name === null) throw new UserError(`${this.dir}: no activations were kept after layer ${this.state.layersDone - 1}; remove the folder to start again`);
    const file = await SafetensorsFile.open(path.join(this.dir, name));
    try {
      const windows = file.names().filter((n) => n.startsWith('x.')).length;
      const xs: Float32Array[] = [];
      for (let w = 0; w < windows; w++) {
        const buf = await file.read(`x.${w}`);
        const x = new Float32Array(buf.byteLength / 4);
        new Uint8Array(x.buffer).set(buf);
        xs.push(x);
      }
      return xs;
    } finally {
      await file.close();
    }
  }

  /**
   * Commits one finished layer: its quantized tensors, the activations after it (null: not
   * kept, the build cannot resume past this layer's start), then the state.
   */
  async commitLayer(layer: number, tensors: TensorData[], x: Float32Array[] | null, add: Partial<Timings>): Promise<void> {
    if (layer !== this.state.layersDone) throw new Error(`commitLayer(${layer}) after ${this.state.layersDone} layers`);
    await writeSafetensors(path.join(this.dir, layerFileName(layer)), tensors);
    let activations: string | null = null;
    if (x !== null) {
      activations = activationsFileName(layer);
      await writeSafetensors(path.join(this.dir, activations), x.map((data, w) => ({ name: `x.${w}`, dtype: 'F32', shape: [data.length], data })));
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
    const keep = new Set([STATE_FILE, ...Array.from({ length: this.state.layersDone }, (_, l) => layerFileName(l))]);
    if (this.state.activations) keep.add(this.state.activations);
    for (const f of await fsp.readdir(this.dir)) {
      if (!keep.has(f)) await fsp.rm(path.join(this.dir, f), { recursive: true, force: true });
    }
  }
}
