/**
 * What N branch workers (`gptq branches --devices`) need of the host, checked before any work:
 * every worker holds its own calibration activations, layer weights and embedding table in host
 * memory and writes its own checkpoints and branch files to the output folder's disk.
 */
import * as os from 'node:os';
import { Device } from '../device';
import { UserError } from '../errors';
import { freeDiskBytes } from '../io/free-disk';
import { LlamaConfig } from '../model/config';
import { needsFpPath, QuantizeSettings } from './settings';

/** One branch to build: its engine, calibration size and settings. */
export interface BranchFootprint {
  device: Device;
  nsamples: number;
  seqlen: number;
  settings: QuantizeSettings;
}

export interface WorkerNeeds {
  /** Peak host memory of one worker building this branch (bytes). */
  memory: number;
  /** Peak disk of one worker's work folder besides the branch's own files (checkpoints, layer files). */
  scratch: number;
  /** The finished branch's files (they stay). */
  branch: number;
}

const GB = 1e9;

/**
 * The estimate, per worker and branch (bytes), with T = nsamples · seqlen calibration tokens,
 * h = hidden size, f = intermediate size, a = heads · head_dim, L = one decoder layer's linear
 * weights (h·a + 2·h·kv·head_dim + a·h + 3·h·f), q = 2 with QEP or GPTAQ (the fp16 path's
 * activations are carried beside the quantized path's: settings.ts needsFpPath), else 1:
 *
 *   memory, cpu   = 0.5 GB (node, the addon, buffers)
 *                 + q · T · (2h + a) · 4     fp32 windows: x, the attention output, the residual
 *                 + T · h · 2                 the fp16 copy written at a checkpoint
 *                 + 2 · L · 4                 one layer's weights in fp32, the next one loading
 *                 + 2 · max(h, f)² · 4        the Hessian and its factor (the widest linear)
 *                 + vocab · h · 4             the embedding table in fp32 (for the first layer)
 *   memory, cuda  = 0.5 GB + q · T · h · 2 (fp16 activations, held on the host when first
 *                 filled in and at a resume) + 2 · L · 2 (two pinned fp16 weight slots)
 *                 + vocab · h · 4
 *   (rtn: no activations, the layer weights and embedding only)
 *   scratch disk  = 2 · q · T · h · 2 (the new checkpoint is written before the old is removed)
 *                 + the quantized linears once more (layer-NNNNN files beside model.safetensors)
 *   branch disk   = linears · (bits + 20 / group) / 8 (qweight, then fp16 scales and packed
 *                 zeros per group) + the unquantized tensors in fp16 (embedding, lm_head, norms)
 */
export function workerNeeds(c: LlamaConfig, b: BranchFootprint): WorkerNeeds {
  const h = c.hiddenSize, f = c.intermediateSize, a = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  const s = b.settings;
  const tokens = s.rtn ? 0 : b.nsamples * b.seqlen;
  const q = needsFpPath(s) ? 2 : 1;
  const layer = h * a + 2 * h * kv + a * h + 3 * h * f;
  const embed = c.vocabSize * h * 4;
  const memory = b.device === 'cpu'
    ? 0.5 * GB + q * tokens * (2 * h + a) * 4 + tokens * h * 2 + 2 * layer * 4 + 2 * Math.max(h, f) ** 2 * 4 + embed
    : 0.5 * GB + q * tokens * h * 2 + 2 * layer * 2 + embed;
  const linears = layer * c.numLayers;
  const quantized = linears * (s.bits + (s.groupSize > 0 ? 20 / s.groupSize : 0)) / 8;
  const unquantized = (c.vocabSize * h * (c.tieWordEmbeddings ? 1 : 2) + (2 * c.numLayers + 1) * h) * 2;
  return { memory, scratch: 2 * q * tokens * h * 2 + quantized, branch: quantized + unquantized };
}

/** `x GB` with a precision that reads well for a few MB up to terabytes. */
function gb(bytes: number): string {
  const v = bytes / GB;
  return `${v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(2)} GB`;
}

/** A byte count from an override knob (tests, or a host whose free figure the user knows better). */
function knob(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return undefined;
  if (!/^\d+$/.test(v.trim())) throw new UserError(`${name}: expected a number of bytes, got ${v}`);
  return Number(v.trim());
}

/**
 * Refuses, with one line naming `flag`, `workers` workers whose peak host memory (each worker's
 * largest branch) exceeds what is available (os.freemem(), or GPTQ_FORGE_HOST_MEM_BYTES), or
 * whose disk (every branch's files, plus each worker's scratch) exceeds the free space of `out`
 * (or GPTQ_FORGE_DISK_FREE_BYTES). The line says how many workers would fit.
 */
export async function checkHostLimits(flag: string, workers: number, c: LlamaConfig, branches: BranchFootprint[], out: string): Promise<void> {
  if (branches.length === 0) return;
  const needs = branches.map((b) => workerNeeds(c, b));
  const perWorker = Math.max(...needs.map((n) => n.memory));
  const scratch = Math.max(...needs.map((n) => n.scratch));
  const files = needs.reduce((s, n) => s + n.branch, 0);
  const memory = knob('GPTQ_FORGE_HOST_MEM_BYTES') ?? os.freemem();
  const disk = knob('GPTQ_FORGE_DISK_FREE_BYTES') ?? (await freeDiskBytes(out));
  const fitting = (need: (k: number) => number, have: number) => {
    let k = workers - 1;
    while (k >= 1 && need(k) > have) k--;
    return k >= 1 ? `use --max-workers ${k}` : `one worker needs about ${gb(need(1))}`;
  };
  const mem = (k: number) => k * perWorker;
  if (mem(workers) > memory) {
    throw new UserError(`${flag}: ${workers} workers need about ${gb(mem(workers))} of host memory, ${gb(memory)} available (${fitting(mem, memory)})`);
  }
  const dsk = (k: number) => files + k * scratch;
  if (dsk(workers) > disk) {
    throw new UserError(`${flag}: ${workers} workers need about ${gb(dsk(workers))} of free disk for ${out}, ${gb(disk)} free (${fitting(dsk, disk)})`);
  }
}
