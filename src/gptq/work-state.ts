/**
 * The state file of a branch's work folder (`state.json`, see branch-work.ts): its format, the
 * canonical JSON its digest is taken over, the file records (size, sha256) and the check of every
 * field a resume reads.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { BaseModelRef, CalibrationRef, Device, Manifest } from './manifest';
import { QuantizeSettings } from './settings';
import { WorkBuild } from './work-build';

const pad = (layer: number) => String(layer).padStart(5, '0');
/** The work folder's file of layer `layer`'s quantized tensors, and of the activations after it. */
export const layerFileName = (layer: number) => `layer-${pad(layer)}.safetensors`;
export const activationsFileName = (layer: number) => `x-${pad(layer)}.safetensors`;

export const WORK_SUFFIX = '.partial';
export const STATE_FILE = 'state.json';
export const STATE_FORMAT = 'gptq-forge/work@2';
/** state.json is a few KB (80 layers: ~10 KB); a larger file is not one and is not read. */
export const MAX_STATE_BYTES = 16 << 20;
export const MAX_LAYERS = 1 << 16;

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

/** Size and sha256 of a committed file, as it lay on disk once written. */
export interface FileRecord {
  size: number;
  sha256: string;
}

/** What state.json holds: the state and what checks it. */
export interface StoredWorkState extends WorkState {
  /** The tool and addon build that started the branch (another build rounds differently). */
  build: WorkBuild;
  /** layer-NNNNN.safetensors of each committed layer (index = layer). */
  layers: FileRecord[];
  /** The activations file (null exactly when `activations` is). */
  activationsFile: FileRecord | null;
  /** sha256 of the canonical JSON of everything else (workStateDigest). */
  digest: string;
}

export type WorkInit = Omit<WorkState, 'format' | 'layersDone' | 'activations' | 'timings' | 'resumes'>;

/** JSON with every object's keys sorted: one text for one value, whatever order it was built in. */
export function canonicalJson(v: unknown, depth = 0): string {
  if (depth > 64) throw new RangeError('nested more than 64 levels deep');
  if (Array.isArray(v)) return `[${v.map((e) => (e === undefined ? 'null' : canonicalJson(e, depth + 1))).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k], depth + 1)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** The digest state.json carries: sha256 of its canonical JSON without the `digest` field. */
export function workStateDigest(state: object): string {
  const rest: Record<string, unknown> = { ...(state as Record<string, unknown>) };
  delete rest.digest;
  return createHash('sha256').update(canonicalJson(rest)).digest('hex');
}

/** Size and sha256 of a file, streamed 8 MiB at a time. */
export async function hashFile(file: string): Promise<FileRecord> {
  const h = createHash('sha256');
  const fd = await fsp.open(file, 'r');
  let size = 0;
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (;;) {
      const { bytesRead } = await fd.read(buf, 0, buf.length, size);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    await fd.close();
  }
  return { size, sha256: h.digest('hex') };
}

/**
 * A name read from a file that is to become a path in a folder: one plain file name (no '/',
 * '\', '..', NUL, nor an absolute path), so that it cannot leave the folder.
 */
export function isPlainFileName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && name.length <= 255 && !/[/\\\0]/.test(name) &&
    !name.includes('..') && name !== '.' && !path.isAbsolute(name) && !path.win32.isAbsolute(name);
}

/** A value from a file, for a message: JSON (one line), at most 80 characters. */
export const shown = (v: unknown): string => {
  let t: string;
  try {
    t = JSON.stringify(v) ?? String(v);
  } catch {
    t = '(unprintable)';
  }
  return t.length > 80 ? `${t.slice(0, 77)}...` : t;
};

export const isInt = (v: unknown, lo: number, hi: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= lo && v <= hi;
export const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
export const isRecord = (v: unknown): v is FileRecord =>
  isObject(v) && Object.keys(v).length === 2 && isInt(v.size, 0, Number.MAX_SAFE_INTEGER) &&
  typeof v.sha256 === 'string' && /^[0-9a-f]{64}$/.test(v.sha256);

/** What is wrong with a parsed state.json whose digest matched (i.e. one written by hand), or undefined. */
export function stateProblem(s: Record<string, unknown>): string | undefined {
  if (typeof s.branch !== 'string' || !/^[A-Za-z0-9._-]{1,200}$/.test(s.branch)) return 'branch: not a branch name';
  if (!isObject(s.settings)) return 'settings: not an object';
  if (!isObject(s.base) || typeof s.base.fingerprint !== 'string' || typeof s.base.model !== 'string') return 'base: not a model reference';
  if (s.calibration !== null && (!isObject(s.calibration) || typeof s.calibration.digest !== 'string')) return 'calibration: not a calibration reference';
  if (s.device !== 'cpu' && s.device !== 'cuda') return `device: ${shown(s.device)} is not cpu or cuda`;
  if (!isObject(s.build) || typeof s.build.version !== 'string' || !isObject(s.build.addon)) return 'build: not a build identity';
  if (!isInt(s.numLayers, 1, MAX_LAYERS)) return `numLayers: ${shown(s.numLayers)} is not a layer count`;
  if (!isInt(s.layersDone, 0, s.numLayers)) return `layersDone: ${shown(s.layersDone)} is not in [0, ${s.numLayers}]`;
  if (!Array.isArray(s.layers) || s.layers.length !== s.layersDone || !s.layers.every(isRecord)) {
    return `layers: expected the size and sha256 of each of the ${s.layersDone} committed layer files`;
  }
  if (s.activations !== null) {
    if (!isPlainFileName(s.activations)) return `activations: ${shown(s.activations)} is not a file name inside the work folder`;
    if (s.layersDone === 0 || s.activations !== activationsFileName(s.layersDone - 1)) {
      return `activations: ${shown(s.activations)} is not the activations file of layer ${s.layersDone - 1}`;
    }
    if (!isRecord(s.activationsFile)) return 'activationsFile: expected the size and sha256 of the activations file';
  } else if (s.activationsFile !== null) {
    return 'activationsFile: set without activations';
  }
  const t = s.timings;
  const keys = Object.keys(zeroTimings());
  if (!isObject(t) || Object.keys(t).length !== keys.length ||
      !keys.every((k) => typeof t[k] === 'number' && Number.isFinite(t[k]) && t[k] >= 0)) {
    return 'timings: not the timings of a build';
  }
  if (!isInt(s.resumes, 0, Number.MAX_SAFE_INTEGER)) return 'resumes: not a count';
  return undefined;
}

