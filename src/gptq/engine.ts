/**
 * The seam between the GPTQ driver (driver.ts: the layer loop, reporting, stage times, the
 * checkpoint hooks) and the engines that quantize one decoder layer per call: the CPU engine
 * (engine-cpu.ts, one native call per layer) and the CUDA engine (engine-cuda.ts, one native
 * call per layer on a GPU session). Both follow the plan of src/model/layer-plan.ts. Also the
 * types the driver's callers use (sinks, activations, layer ranges, reports).
 */
import { LinearName } from '../model/weights';
import { f16ToF32, GptqSolve, PackedLinear } from '../native';

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
 * One quantized linear as an engine hands it on: the solve's results, with the integer codes
 * and fp32 grid (CPU engine) or the AutoGPTQ tensors already packed on the GPU (CUDA engine).
 */
export type QuantizedLinear = Omit<GptqSolve, 'q' | 'codes' | 'scales' | 'zeros'> & (
  { codes: Uint8Array; scales: Float32Array; zeros: Int32Array; packed?: undefined } | { packed: PackedLinear }
);

/** Receives every quantized linear (e.g. to pack and write it). */
export type LinearSink = (layer: number, name: LinearName, solve: QuantizedLinear, shape: { n: number; k: number }) => Promise<void>;

/**
 * A layer's output activations: fp32 windows (CPU engine; fp16 values when round16), or fp16
 * bits read a few windows at a time (CUDA engine: 8.6 GB for Llama-2-70B at 128 × 4096). With
 * QEP, `fp` holds the fp16 (unquantized) model's activations at the same point, the same size.
 */
export type Activations = ({ f32: Float32Array[] } | F16Activations) & { fp?: Activations };

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

/** One linear of a quantized layer, as an engine returns it. */
export interface EngineLinear {
  name: LinearName;
  solve: QuantizedLinear;
  /** The solve's seconds (the CUDA engine: its stack's Cholesky + solve). */
  seconds: number;
}

export interface EngineLayer {
  /** In the plan's order. */
  linears: EngineLinear[];
  /** This layer's seconds; load counts only the time spent waiting for its weights. */
  times: Omit<StageTimes, 'sink'>;
}

/**
 * Quantizes decoder layers one call at a time, in order from the range's first layer, keeping
 * the calibration activations between calls (each call replaces them by the layer's outputs).
 */
export interface LayerEngine {
  /**
   * Whether the caller's work on a finished layer that did not ask for its outputs may run
   * while the engine quantizes the next layer (the CUDA engine: the GPU works meanwhile).
   */
  readonly overlapsLayerDone: boolean;
  quantizeLayer(layer: number): Promise<EngineLayer>;
  /** The outputs of the layer just quantized; valid until the next quantizeLayer call. */
  outputs(): Activations;
  /** Releases what the engine holds (also after a failure). */
  close(): Promise<void>;
}
