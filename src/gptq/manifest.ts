/**
 * `manifest.json`, written last into every finished branch folder: what the branch is made of
 * (sha256 of every file and of every tensor of its weights file), how it was built (settings,
 * calibration, base model, tool version) and how long it took. A branch folder without a valid
 * manifest is not a finished `gptq branches` output.
 */
import type { Device, DeviceRecord } from '../device';
import * as path from 'node:path';
import { UserError } from '../errors';
import { resolveModel } from '../hub/resolve';
import { readJsonFile } from '../io/json-file';
import { QuantizeSettings } from './settings';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'gptq-forge/manifest@1';

export interface ManifestFile {
  /** Relative to the branch folder, '/'-separated. */
  path: string;
  size: number;
  sha256: string;
}

export interface BaseModelRef {
  /** What the user named: a local folder or a Hub repo id. */
  model: string;
  /** The Hub revision asked for (null for a local folder or the default branch). */
  revision: string | null;
  /** sha256 over config.json, every safetensors header and sampled tensor bytes (see fingerprint.ts). */
  fingerprint: string;
}

export interface CalibrationRef {
  dataset: string;
  /** What was actually read (file path or Hub file). */
  source: string;
  split: string;
  nsamples: number;
  seqlen: number;
  seed: number;
  /** sha256 of the sampled token windows. */
  digest: string;
}

export type { Device, DeviceRecord };

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  /** Branch name, e.g. `gptq-4bit-128g-actorder_True`; `main` is pushed to the Hub's main branch. */
  branch: string;
  tool: { name: 'gptq-forge'; version: string };
  base: BaseModelRef;
  settings: QuantizeSettings;
  /** Null for round-to-nearest branches (no calibration). */
  calibration: CalibrationRef | null;
  /** The engine that quantized it (files are bit-identical only from the same engine). */
  device: Device;
  /**
   * The card (cuda: its index on the host and name) or cpu that built it; absent in manifests
   * written before `--devices` existed.
   */
  builtOn?: DeviceRecord;
  /** Every file of the branch folder except manifest.json itself, sorted by path. */
  files: ManifestFile[];
  /** sha256 of each tensor's data bytes in the weights file, by tensor name. */
  tensors: Record<string, string>;
  /** Wall-clock seconds: total and per stage, summed over the runs that built it (resumes included). */
  timings: { seconds: number; load: number; forward: number; hessian: number; solve: number; sink: number; assemble: number };
  /** How many times the build was resumed after an interruption. */
  resumes: number;
  createdAt: string;
}

export async function readManifest(branchDir: string): Promise<Manifest> {
  const file = path.join(branchDir, MANIFEST_FILE);
  const m = (await readJsonFile(file)) as Partial<Manifest> | undefined;
  if (m === undefined) throw new UserError(`${branchDir} has no ${MANIFEST_FILE}: not a finished branch`);
  if (m === null || typeof m !== 'object' || m.format !== MANIFEST_FORMAT) {
    throw new UserError(`${file} is not a gptq-forge manifest (format ${JSON.stringify(m?.format)}, expected ${MANIFEST_FORMAT})`);
  }
  return m as Manifest;
}

/**
 * The folder of the base model a manifest names (a local path as given at build time, relative
 * to where the build ran, or a Hub id), with a hint to pass --base when it cannot be found.
 */
export async function resolveManifestBase(base: BaseModelRef): Promise<string> {
  try {
    return await resolveModel(base.model, { revision: base.revision ?? undefined });
  } catch (e) {
    if (e instanceof UserError) {
      throw new UserError(`${e.message} (the base model the manifest names, as given at build time); pass --base <path-or-repo>`);
    }
    throw e;
  }
}
