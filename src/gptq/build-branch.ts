/**
 * Builds one branch through its work folder: the branch writer lays out model.safetensors and
 * takes each layer's tensors as the layer finishes; then the manifest is written and the folder
 * swapped in under its final name. `gptq quantize` and `gptq branches` both build this way; only
 * `branches` is resumable: it also keeps layer files (see branch-work.ts) and, at checkpoints at
 * most `checkpointEvery` seconds apart, the activations (8.6 GB for Llama-2-70B at 128 × 4096).
 */
import * as path from 'node:path';
import { deviceRecord } from '../device';
import { atomicWriteFile } from '../io/atomic';
import { LlamaModel } from '../model/llama-model';
import { SafetensorsFile } from '../io/safetensors-reader';
import { TensorData } from '../io/safetensors-writer';
import { BranchWork, Timings, WorkState } from './branch-work';
import { BranchWriter, packLinear } from './branch-writer';
import { hashBranch } from './branch-hash';
import { CalibrationSet } from './calibration-set';
import { BaseModelRef, CalibrationRef, Device, Manifest, MANIFEST_FILE, MANIFEST_FORMAT } from './manifest';
import { quantizeLayers } from './driver';
import { PipelineEvents, StageTimes } from './engine';
import { QuantizeSettings } from './settings';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json lies outside rootDir (src/), so it cannot be imported
const VERSION = (require('../../package.json') as { version: string }).version;

export interface BuildOptions {
  model: LlamaModel;
  base: BaseModelRef;
  branch: string;
  settings: QuantizeSettings;
  device: Device;
  /** Null for round-to-nearest. */
  calib: CalibrationSet | null;
  /** The calibration's dataset as the user named it. */
  dataset: string;
  split: string;
  out: string;
  workDir: string;
  /** Continue the interrupted build in workDir. */
  resume: boolean;
  /**
   * A killed build can resume: layer files and checkpoints (with the layer outputs) go to
   * workDir. `quantize` (a fresh work folder each run) and the report's baselines are not.
   */
  resumable: boolean;
  /**
   * With resumable: seconds of work after which the next finished layer is a checkpoint
   * (0: every layer). A killed build resumes from the last one.
   */
  checkpointEvery?: number;
  /**
   * Called when the branch is complete in its work folder, right before it is renamed to `out`:
   * the caller checks again that it may still replace what is there (and still holds its lock).
   */
  beforeSwap?: () => Promise<void>;
  events?: PipelineEvents & { onResume?(layersDone: number, numLayers: number): void; onStage?(what: string): void };
}

export interface BuildResult {
  manifest: Manifest;
  loss: number;
  linears: number;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
const STAGES = ['load', 'forward', 'hessian', 'solve', 'sink'] as const;

export function calibrationRef(c: CalibrationSet | null, dataset: string, split: string): CalibrationRef | null {
  return c && { dataset, source: c.source, split, nsamples: c.nsamples, seqlen: c.seqlen, seed: c.seed, digest: c.digest };
}

export async function buildBranch(o: BuildOptions): Promise<BuildResult> {
  const c = o.model.config;
  const init: Omit<WorkState, 'format' | 'layersDone' | 'activations' | 'timings' | 'resumes'> = {
    branch: o.branch, settings: o.settings, base: o.base, calibration: calibrationRef(o.calib, o.dataset, o.split), device: o.device,
    numLayers: c.numLayers,
  };
  const work = await BranchWork.open(o.workDir, init, o.resume);
  const startLayer = work.layersDone;
  if (startLayer > 0) o.events?.onResume?.(startLayer, c.numLayers);

  // The branch is assembled as the layers finish: the writer lays out model.safetensors with the
  // unquantized tensors, then takes each layer's tensors once its file is written (on the GPU
  // this overlaps the next layer). Layers committed by an earlier run are copied from their files.
  let assemble = now();
  const writer = await BranchWriter.create(o.out, path.join(o.workDir, 'assembly'), o.model, o.settings, { modelNameOrPath: o.base.model });
  let manifest: Manifest | undefined;
  let loss = 0, linears = 0;
  try {
    for (let layer = 0; layer < startLayer; layer++) {
      const f = await SafetensorsFile.open(work.layerFile(layer));
      try {
        for (const name of f.names()) await writer.writeTensors([{ ...f.info(name), data: await f.read(name) }]);
      } finally {
        await f.close();
      }
    }
    work.addTimings({ assemble: now() - assemble });
    if (startLayer < c.numLayers) {
      const res = await quantizeInto(o, work, writer, startLayer);
      loss = res.linears.reduce((a, l) => a + l.loss, 0);
      linears = res.linears.length;
    }
    o.events?.onStage?.('assembling');
    assemble = now();
    await writer.finish(async (tmp) => {
      const hashes = await hashBranch(tmp, undefined, writer.tensorSha256);
      work.addTimings({ assemble: now() - assemble, seconds: now() - assemble });
      manifest = {
        format: MANIFEST_FORMAT, branch: o.branch, tool: { name: 'gptq-forge', version: VERSION }, base: o.base,
        settings: o.settings, calibration: init.calibration, device: o.device, builtOn: deviceRecord(o.device), files: hashes.files, tensors: hashes.tensors,
        timings: roundTimings(work.timings), resumes: work.resumes, createdAt: new Date().toISOString(),
      };
      await atomicWriteFile(path.join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
      await o.beforeSwap?.();
    });
  } catch (e) {
    await writer.abort();
    throw e;
  }
  await work.remove();
  return { manifest: manifest!, loss, linears };
}

/** Quantizes layers startLayer.. into the work folder (checkpoints) and the writer. */
async function quantizeInto(o: BuildOptions, work: BranchWork, writer: BranchWriter, startLayer: number) {
  const c = o.model.config;
  const x = startLayer > 0 && !o.settings.rtn ? await work.loadActivations() : null;
  let layerTensors: TensorData[] = [];
  let last: Record<(typeof STAGES)[number], number> = { load: 0, forward: 0, hessian: 0, solve: 0, sink: 0 };
  let wall = now(), lastCheckpoint = now();
  const lastLayer = c.numLayers - 1;
  // Only a resumable build writes layer files and commits. It commits after every layer with rtn (nothing to keep),
  // after the last one, and at a checkpoint at least checkpointEvery seconds after the previous.
  const resumable = o.resumable;
  const wantX = (layer: number) =>
    resumable && !o.settings.rtn && layer < lastLayer && now() - lastCheckpoint >= (o.checkpointEvery ?? 0);
  return quantizeLayers(
    o.model, o.calib?.tokens ?? new Int32Array(0), o.calib?.seqlen ?? 1, o.settings,
    async (layer, name, solve, shape) => {
      layerTensors.push(...(await packLinear(layer, name, solve, shape, o.settings.bits, o.settings.groupSize)));
    },
    o.events,
    {
      startLayer,
      x,
      wantX,
      onLayerDone: async (layer, xs, times: StageTimes) => {
        const tensors = layerTensors; // the next layer's linears may arrive while this writes
        layerTensors = [];
        const add: Partial<Timings> = {};
        for (const k of STAGES) add[k] = times[k] - last[k];
        last = { ...times };
        const t = now();
        add.seconds = t - wall;
        wall = t;
        if (resumable) await work.writeLayer(layer, tensors);
        const ta = now();
        await writer.writeTensors(tensors);
        add.assemble = now() - ta;
        if (resumable && (xs !== null || o.settings.rtn || layer === lastLayer)) {
          await work.checkpoint(layer, xs, add);
          lastCheckpoint = now();
        } else {
          work.addTimings(add);
        }
      },
    },
    o.device,
  );
}

function roundTimings(t: Timings): Timings {
  const r = { ...t };
  for (const k of Object.keys(r) as (keyof Timings)[]) r[k] = Math.round(r[k] * 1000) / 1000;
  return r;
}
