/**
 * The GPTQ pipeline on the CUDA engine (`--device cuda`): the same inputs, sink and events as
 * quantizeLayers (pipeline.ts), the same algorithm (true-sequential groups [k,v,q] → [o] →
 * [up,gate] → [down]). The calibration activations stay on the GPU (fp16) in a CudaSession;
 * each decoder layer is one native call that gathers the Hessians, solves every linear and
 * leaves the quantized layer's outputs as the next layer's inputs.
 * Not supported on the GPU (a UserError before any work): rtn, mse, trueSequential = false.
 * Activations are fp16 throughout, as an fp16 model runs in transformers (the CPU engine's
 * round16 mode); the solve uses an fp64 Cholesky and fp32 updates like the CPU engine.
 */
import { UserError } from '../errors';
import { f32ToF16 } from '../io/dtypes';
import { LlamaModel } from '../model/llama-model';
import { LinearName } from '../model/weights';
import { CudaLayerConfig, CudaSession, cudaAvailable, cudaInfo, embed, f16ToF32 } from '../native';
import { LayerRange, LinearReport, LinearSink, PipelineEvents, PipelineResult, StageTimes } from './pipeline';
import { Device } from './manifest';
import { linearShape, QuantizeSettings, solverOptions } from './settings';

const now = () => Number(process.hrtime.bigint()) / 1e9;

function toHalf(a: Float32Array): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f32ToF16(a[i]);
  return out;
}

function concatHalf(...parts: Float32Array[]): Uint16Array {
  const out = new Uint16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i++) out[at + i] = f32ToF16(p[i]);
    at += p.length;
  }
  return out;
}

/** Throws a UserError when these settings cannot run on the CUDA engine here. */
export function checkCudaSettings(s: QuantizeSettings): void {
  if (!cudaAvailable()) {
    const i = cudaInfo();
    throw new UserError(i.built ? `--device cuda: no CUDA device is visible (${i.error ?? 'none found'})`
      : '--device cuda: the native addon was built without CUDA (no nvcc/cuBLAS/cuSOLVER at build time)');
  }
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

/**
 * Quantizes every decoder layer on the GPU. `calib` holds nsamples × seqlen token ids.
 * `config` chooses the solve's precision (defaults as the CPU engine) and the memory budget.
 */
export async function quantizeLayersCuda(
  model: LlamaModel, calib: Int32Array, seqlen: number, s: QuantizeSettings, sink: LinearSink,
  events: PipelineEvents = {}, range: LayerRange = { startLayer: 0, x: null }, config: CudaLayerConfig = {},
): Promise<PipelineResult> {
  checkCudaSettings(s);
  const c = model.config;
  const d = model.dims(true);
  const times: StageTimes = { load: 0, forward: 0, hessian: 0, solve: 0, sink: 0 };
  const linears: LinearReport[] = [];
  const start = range.startLayer;
  const total = (c.numLayers - start) * 7;
  let done = 0;
  const opts = solverOptions(s); // mse is false here (checkCudaSettings)
  const windows = calib.length / seqlen, tokens = windows * seqlen, per = seqlen * c.hiddenSize;
  let x: Float32Array[];
  if (start === 0) {
    x = Array.from({ length: windows }, () => new Float32Array(per));
    await embed(calib, await model.embedding(), c.vocabSize, x);
  } else {
    if (range.x === null || range.x.length !== windows || range.x.some((a) => a.length !== per)) {
      throw new Error(`quantizeLayersCuda: layer ${start} needs ${windows} activation windows of ${seqlen}×${c.hiddenSize}`);
    }
    x = range.x;
  }
  let xh: Uint16Array | null = new Uint16Array(tokens * c.hiddenSize);
  for (let i = 0; i < x.length; i++) xh.set(toHalf(x[i]), i * per);
  // From here the activations live on the GPU: drop the host copies (17 + 8.6 GB for 70B).
  x = [];
  const session = await CudaSession.create(xh, tokens, seqlen, c.hiddenSize);
  xh = null;
  try {
    for (let layer = start; layer < c.numLayers; layer++) {
      const t0 = now();
      const w = await model.layer(layer);
      const weights = {
        qkv: concatHalf(w.q, w.k, w.v), o: toHalf(w.o), gateUp: concatHalf(w.gate, w.up), down: toHalf(w.down),
        inputNorm: toHalf(w.inputNorm), postNorm: toHalf(w.postNorm),
      };
      times.load += now() - t0;
      const r = await session.quantizeLayer(weights, {
        hidden: d.hidden, ffn: d.ffn, heads: d.heads, kvHeads: d.kvHeads, headDim: d.headDim, eps: d.eps, ropeTheta: d.ropeTheta,
      }, opts, { ...config, wantQ: true });
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
        await sink(layer, name, { ...L, q: await f16ToF32(L.q16!) }, shape);
        times.sink += now() - t1;
        const report: LinearReport = {
          layer, name, ...shape, loss: L.loss, seconds: L.seconds, dampPercent: L.dampPercent,
          dampRaises: L.dampRaises, deadColumns: L.deadColumns,
        };
        linears.push(report);
        events.onLinear?.(report);
        events.onProgress?.(++done, total, `layer ${layer + 1}/${c.numLayers} ${name} loss ${L.loss.toPrecision(4)}`);
      }
      if (range.onLayerDone) {
        // The layer's outputs (fp16 on the GPU, so exact in fp32) only when the caller keeps them.
        let out: Float32Array[] | null = null;
        if (range.wantX !== false) {
          const all = await f16ToF32(await session.read());
          out = Array.from({ length: windows }, (_, w) => all.subarray(w * per, (w + 1) * per));
        }
        await range.onLayerDone(layer, out, times);
      }
    }
  } finally {
    await session.free();
  }
  return { linears, times };
}
