/**
 * The GPTQ pipeline over a Llama model, layer by layer: calibration activations of all windows
 * stay in memory; one decoder layer's weights at a time are loaded, quantized group by group
 * (true-sequential: [k,v,q] → [o] → [up,gate] → [down], each group's Hessian gathered with the
 * earlier groups already quantized), and the quantized layer's outputs feed the next layer.
 */
import { LlamaModel } from '../model/llama-model';
import { LinearName } from '../model/weights';
import {
  embed, f16ToF32, GptqSolve, gptqQuantize, layerStep, LayerStep, LayerWeightsF32, PackedLinear,
} from '../native';
import { NativeCallMeter } from './native-calls';
import { linearShape, QuantizeSettings, solverOptions } from './settings';

/** True-sequential groups: the step that yields their input's Hessian, and their members. */
const GROUPS: { step: LayerStep; linears: LinearName[] }[] = [
  { step: LayerStep.Norm, linears: ['self_attn.k_proj', 'self_attn.v_proj', 'self_attn.q_proj'] },
  { step: LayerStep.Attention, linears: ['self_attn.o_proj'] },
  { step: LayerStep.Residual, linears: ['mlp.up_proj', 'mlp.gate_proj'] },
  { step: LayerStep.Act, linears: ['mlp.down_proj'] },
];

/** Which field of a layer's weights holds each linear. */
export const WEIGHT_KEY: Record<LinearName, keyof LayerWeightsF32> = {
  'self_attn.q_proj': 'q', 'self_attn.k_proj': 'k', 'self_attn.v_proj': 'v', 'self_attn.o_proj': 'o',
  'mlp.gate_proj': 'gate', 'mlp.up_proj': 'up', 'mlp.down_proj': 'down',
};

export interface LinearReport {
  layer: number;
  name: LinearName;
  n: number;
  k: number;
  loss: number;
  seconds: number;
  dampPercent: number;
  dampRaises: number;
  deadColumns: number;
}

/** Seconds spent per stage: layer forward passes, Hessian accumulation, solves, the sink. */
export interface StageTimes {
  load: number;
  forward: number;
  hessian: number;
  solve: number;
  sink: number;
}

export interface PipelineEvents {
  onProgress?(done: number, total: number, label: string): void;
  onWarning?(message: string): void;
}

/**
 * One quantized linear as a pipeline hands it on: the solve's results, with the integer codes
 * and fp32 grid (CPU engine) or the AutoGPTQ tensors already packed on the GPU (CUDA engine).
 */
export type QuantizedLinear = Omit<GptqSolve, 'q' | 'codes' | 'scales' | 'zeros'> & (
  { codes: Uint8Array; scales: Float32Array; zeros: Int32Array; packed?: undefined } | { packed: PackedLinear }
);

/** Receives every quantized linear (e.g. to pack and write it). */
export type LinearSink = (layer: number, name: LinearName, solve: QuantizedLinear, shape: { n: number; k: number }) => Promise<void>;

/**
 * A layer's output activations: fp32 windows (CPU engine; fp16 values when round16), or fp16
 * bits read a few windows at a time (CUDA engine: 8.6 GB for Llama-2-70B at 128 × 4096).
 */
export type Activations = { f32: Float32Array[] } | F16Activations;

export interface F16Activations {
  windows: number;
  /** Values per window (seqlen × hidden). */
  perWindow: number;
  /** The fp16 bits of `count` windows from `first`, back to back. */
  read(first: number, count: number): Promise<Uint16Array>;
}

/** F16Activations over fp16 bits of all windows in memory. */
export function f16Activations(all: Uint16Array, windows: number): F16Activations {
  const perWindow = all.length / windows;
  return { windows, perWindow, read: async (first, count) => all.subarray(first * perWindow, (first + count) * perWindow) };
}

/** Where to start and what to do after each layer (per-layer checkpoints). */
export interface LayerRange {
  /** The first layer to quantize (earlier ones are done); needs `x` unless rtn. */
  startLayer: number;
  /** The calibration activations entering `startLayer`. */
  x: Activations | null;
  /**
   * Called once a layer is complete: its outputs (null with rtn, or when wantX said no) and the
   * stage times so far.
   */
  onLayerDone?(layer: number, x: Activations | null, times: StageTimes): Promise<void>;
  /** Whether onLayerDone needs this layer's outputs (default yes; no spares the CUDA engine a copy). */
  wantX?(layer: number): boolean;
}

/** `x` as fp32 windows of `per` values each; an Error naming `who` when the shape is wrong. */
export async function activationWindows(x: Activations | null, windows: number, per: number, who: string): Promise<Float32Array[]> {
  const bad = () => new Error(`${who} needs ${windows} activation windows of ${per} values`);
  if (x === null) throw bad();
  if (!('f32' in x)) {
    if (x.windows !== windows || x.perWindow !== per) throw bad();
    const all = await f16ToF32(await x.read(0, windows));
    return Array.from({ length: windows }, (_, w) => all.subarray(w * per, (w + 1) * per));
  }
  if (x.f32.length !== windows || x.f32.some((a) => a.length !== per)) throw bad();
  return x.f32;
}

export interface PipelineResult {
  linears: LinearReport[];
  times: StageTimes;
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

/**
 * Quantizes every decoder layer. `calib` holds nsamples × seqlen token ids (unused with rtn).
 */
export async function quantizeLayers(
  model: LlamaModel, calib: Int32Array, seqlen: number, s: QuantizeSettings, sink: LinearSink,
  events: PipelineEvents = {}, range: LayerRange = { startLayer: 0, x: null },
): Promise<PipelineResult> {
  const c = model.config;
  const dims = model.dims(true);
  const times: StageTimes = { load: 0, forward: 0, hessian: 0, solve: 0, sink: 0 };
  const linears: LinearReport[] = [];
  const start = range.startLayer;
  const total = (c.numLayers - start) * 7;
  let done = 0;
  const opts = solverOptions(s);
  const meter = new NativeCallMeter();

  const quantize = async (layer: number, w: LayerWeightsF32, name: LinearName, h: Float32Array | null) => {
    const shape = linearShape(c, name);
    const key = WEIGHT_KEY[name];
    const t0 = now();
    const solve = await gptqQuantize(w[key], h, shape.n, shape.k, opts);
    const t1 = now();
    times.solve += t1 - t0;
    if (solve.dampRaises > 0) {
      events.onWarning?.(
        `layer ${layer} ${name}: the Hessian was not positive definite with damp ${s.dampPercent}; ` +
          `raised ${solve.dampRaises}× to ${solve.dampPercent.toPrecision(3)}`,
      );
    }
    await sink(layer, name, solve, shape);
    times.sink += now() - t1;
    w[key] = solve.q;
    const report: LinearReport = {
      layer, name, ...shape, loss: solve.loss, seconds: t1 - t0, dampPercent: solve.dampPercent,
      dampRaises: solve.dampRaises, deadColumns: solve.deadColumns,
    };
    linears.push(report);
    events.onProgress?.(++done, total, `layer ${layer + 1}/${c.numLayers} ${name} loss ${solve.loss.toPrecision(4)}`);
  };

  if (s.rtn) {
    for (let layer = start; layer < c.numLayers; layer++) {
      const t0 = now();
      const w = await model.layer(layer);
      times.load += now() - t0;
      for (const g of GROUPS) for (const name of g.linears) await quantize(layer, w, name, null);
      await range.onLayerDone?.(layer, null, times);
      meter.layerDone(layer);
    }
    meter.finish();
    return { linears, times };
  }

  const windows = calib.length / seqlen;
  const alloc = (width: number) => Array.from({ length: windows }, () => new Float32Array(seqlen * width));
  let x: Float32Array[];
  if (start === 0) {
    x = alloc(c.hiddenSize);
    await embed(calib, await model.embedding(), c.vocabSize, x);
  } else {
    x = await activationWindows(range.x, windows, seqlen * c.hiddenSize, `quantizeLayers: layer ${start}`);
  }
  const att = alloc(c.numHeads * c.headDim);
  const h1 = alloc(c.hiddenSize);

  const step = async (st: LayerStep, w: LayerWeightsF32, wantH: boolean): Promise<Float32Array | null> => {
    const input = st === LayerStep.Act || st === LayerStep.Output ? h1 : x;
    const aux = st === LayerStep.Residual ? att : null;
    const out = st === LayerStep.Attention ? att : st === LayerStep.Residual ? h1 : st === LayerStep.Output ? x : null;
    const r = await layerStep(st, input, aux, out, w, dims, seqlen, wantH);
    times.forward += r.forwardSeconds;
    times.hessian += r.hessianSeconds;
    return r.h;
  };

  for (let layer = start; layer < c.numLayers; layer++) {
    const t0 = now();
    const w = await model.layer(layer);
    times.load += now() - t0;
    if (s.trueSequential) {
      for (const g of GROUPS) {
        const h = await step(g.step, w, true);
        for (const name of g.linears) await quantize(layer, w, name, h);
      }
    } else {
      // All Hessians from the unquantized layer, then the quantized layer's own activations.
      const hs: (Float32Array | null)[] = [];
      for (const g of GROUPS) hs.push(await step(g.step, w, true));
      for (let i = 0; i < GROUPS.length; i++) for (const name of GROUPS[i].linears) await quantize(layer, w, name, hs[i]);
      await step(LayerStep.Attention, w, false);
      await step(LayerStep.Residual, w, false);
    }
    // The next layer's input: outputs of this layer with every linear quantized. x ← h1 + mlp.
    await step(LayerStep.Output, w, false);
    await range.onLayerDone?.(layer, range.wantX?.(layer) ?? true ? { f32: x } : null, times);
    meter.layerDone(layer);
  }
  meter.finish();
  return { linears, times };
}
