/**
 * The GPTQ pipeline on the CUDA engine (`--device cuda`): the same inputs, sink and events as
 * quantizeLayers (pipeline.ts), the same algorithm (true-sequential groups [k,v,q] → [o] →
 * [up,gate] → [down]). The calibration activations stay on the GPU (fp16) in a CudaSession;
 * each decoder layer is one native call that gathers the Hessians, solves every linear and
 * leaves the quantized layer's outputs as the next layer's inputs. Weights stream from the
 * checkpoint's shards into two pinned host slots: the next layer's are read on native threads
 * while this one is quantized; the packed AutoGPTQ tensors come back from the GPU.
 * Not supported on the GPU (a UserError before any work): rtn, mse, trueSequential = false.
 * Activations are fp16 throughout, as an fp16 model runs in transformers (the CPU engine's
 * round16 mode); the solve uses an fp64 Cholesky and fp32 updates like the CPU engine.
 */
import { UserError } from '../errors';
import { LlamaModel } from '../model/llama-model';
import { LinearName } from '../model/weights';
import { CudaLayerConfig, CudaLinear, CudaSession, cudaAvailable, cudaUnavailableReason, embed, f32ArrayToF16 } from '../native';
import {
  activationWindows, LayerRange, LinearReport, LinearSink, PipelineEvents, PipelineResult, QuantizedLinear, StageTimes,
} from './pipeline';
import { Device } from './manifest';
import { linearShape, QuantizeSettings, solverOptions } from './settings';

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** Throws a UserError when these settings cannot run on the CUDA engine here. */
export function checkCudaSettings(s: QuantizeSettings): void {
  const why = cudaUnavailableReason();
  if (why) throw new UserError(`--device cuda: ${why}`);
  if (s.rtn) throw new UserError('--device cuda does not do round-to-nearest (--rtn); use --device cpu');
  if (s.mse) throw new UserError('--device cuda does not do --mse; use --device cpu');
  if (!s.trueSequential) throw new UserError('--device cuda is true-sequential only; use --device cpu for --no-true-sequential');
}

/**
 * The engine for a build: the one asked for (cuda is checked here), or by default cuda where a
 * device is visible and the settings run on it, cpu otherwise.
 */
export function pickDevice(asked: Device | undefined, s: QuantizeSettings): Device {
  if (asked === 'cuda') checkCudaSettings(s);
  if (asked) return asked;
  return cudaAvailable() && !s.rtn && !s.mse && s.trueSequential ? 'cuda' : 'cpu';
}

/** What the sink gets from one of the layer call's linears. */
function quantizedLinear(L: CudaLinear): QuantizedLinear {
  const common = { gIdx: L.gIdx, perm: L.perm, loss: L.loss, dampPercent: L.dampPercent, dampRaises: L.dampRaises, deadColumns: L.deadColumns };
  if (L.packed) return { ...common, packed: L.packed };
  return { ...common, codes: L.codes!, scales: L.scales!, zeros: L.zeros! };
}

/**
 * Quantizes every decoder layer on the GPU. `calib` holds nsamples × seqlen token ids.
 * `config` chooses the solve's precision (defaults as the CPU engine) and the memory budget;
 * with `wantCodes` the sink gets codes and fp32 grids (for comparisons) instead of packed tensors.
 * The `load` stage counts only the time spent waiting for weights that were not read yet.
 */
export async function quantizeLayersCuda(
  model: LlamaModel, calib: Int32Array, seqlen: number, s: QuantizeSettings, sink: LinearSink,
  events: PipelineEvents = {}, range: LayerRange = { startLayer: 0, x: null }, config: CudaLayerConfig = {},
): Promise<PipelineResult> {
  checkCudaSettings(s);
  const c = model.config;
  const d = model.dims(true);
  const dims = { hidden: d.hidden, ffn: d.ffn, heads: d.heads, kvHeads: d.kvHeads, headDim: d.headDim, eps: d.eps, ropeTheta: d.ropeTheta };
  const times: StageTimes = { load: 0, forward: 0, hessian: 0, solve: 0, sink: 0 };
  const linears: LinearReport[] = [];
  const start = range.startLayer;
  const total = (c.numLayers - start) * 7;
  let done = 0;
  const opts = solverOptions(s); // mse is false here (checkCudaSettings)
  const packed = !config.wantCodes;
  const layerConfig: CudaLayerConfig = { ...config, wantCodes: !packed, wantPacked: packed, wantQ: false };
  const windows = calib.length / seqlen, tokens = windows * seqlen, per = seqlen * c.hiddenSize;
  // The activations entering `start` as fp16 bits of all windows (8.6 GB for 70B at 128 × 4096),
  // made a window at a time: no fp32 copy of them all.
  let xh: Uint16Array | null;
  if (start === 0) {
    xh = new Uint16Array(tokens * c.hiddenSize);
    const table = await model.embedding();
    const x = new Float32Array(per);
    for (let w = 0; w < windows; w++) {
      await embed(calib.subarray(w * seqlen, (w + 1) * seqlen), table, c.vocabSize, [x]);
      xh.set((await f32ArrayToF16(x)).bits, w * per);
    }
  } else if (range.x !== null && !('f32' in range.x) && range.x.windows === windows && range.x.perWindow === per) {
    xh = await range.x.read(0, windows);
  } else {
    const x = await activationWindows(range.x, windows, per, `quantizeLayersCuda: layer ${start}`);
    xh = new Uint16Array(tokens * c.hiddenSize);
    for (let w = 0; w < windows; w++) xh.set((await f32ArrayToF16(x[w])).bits, w * per);
  }
  const session = await CudaSession.create(xh, tokens, seqlen, c.hiddenSize);
  xh = null; // from here the activations live on the GPU only
  // The weights of `layer` into slot layer % 2; a rejection is handled where it is awaited.
  const load = (layer: number): Promise<void> => {
    const p = model.layerWeightEntries(layer).then((entries) => session.load(layer % 2, dims, entries)).then((bad) => {
      if (bad.length > 0) {
        throw new UserError(`${model.dir}: weight ${bad[0].name} has ${bad[0].nonFinite} NaN/Inf value(s) (as fp16)`);
      }
    });
    p.catch(() => undefined);
    return p;
  };
  let next: Promise<void> | null = load(start);
  // The caller's work on a finished layer (writing its files) runs while the GPU does the next.
  let finishing: Promise<void> | null = null;
  try {
    for (let layer = start; layer < c.numLayers; layer++) {
      const t0 = now();
      await next;
      times.load += now() - t0;
      next = layer + 1 < c.numLayers ? load(layer + 1) : null;
      const r = await session.quantizeLayer(layer % 2, dims, opts, layerConfig);
      await finishing;
      times.forward += r.times.forward;
      times.hessian += r.times.hessian;
      times.solve += r.times.cholesky + r.times.solve;
      for (const L of r.linears) {
        const name = L.name as LinearName;
        const shape = linearShape(c, name);
        if (L.dampRaises > 0) {
          events.onWarning?.(
            `layer ${layer} ${name}: the Hessian was not positive definite with damp ${s.dampPercent}; ` +
              `raised ${L.dampRaises}× to ${L.dampPercent.toPrecision(3)}`,
          );
        }
        const t1 = now();
        await sink(layer, name, quantizedLinear(L), shape);
        times.sink += now() - t1;
        const report: LinearReport = {
          layer, name, ...shape, loss: L.loss, seconds: L.seconds, dampPercent: L.dampPercent,
          dampRaises: L.dampRaises, deadColumns: L.deadColumns,
        };
        linears.push(report);
        events.onProgress?.(++done, total, `layer ${layer + 1}/${c.numLayers} ${name} loss ${L.loss.toPrecision(4)}`);
      }
      if (range.onLayerDone) {
        // The layer's outputs (fp16 bits) when the caller keeps them: read from the GPU a few
        // windows at a time, before the next layer replaces them (so this one is not overlapped).
        const keep = range.wantX?.(layer) ?? true;
        const out = keep ? { windows, perWindow: per, read: (first: number, count: number) => session.read(first, count) } : null;
        finishing = range.onLayerDone(layer, out, times);
        finishing.catch(() => undefined);
        if (keep) await finishing;
      }
    }
    await finishing;
  } finally {
    await next?.catch(() => undefined);
    await finishing?.catch(() => undefined);
    await session.free();
  }
  return { linears, times };
}
