/**
 * The CPU engine's one call per decoder layer (native/bindings/cpu_layer.cc), and the layer
 * plan's form as every engine's native call takes it. Called through ./addon (the one call path);
 * arguments are validated here first (name, expected, got).
 */
import { callNative } from './addon';
import { checkAlpha, checkNames } from './check';
import {
  check, checkDims, checkGptqOptions, checkLayerWeights, checkLength, checkSeqlen, GptqOptions, GptqSolve,
  LayerWeightsF32, NativeDims,
} from './index';

/**
 * A decoder layer's true-sequential plan as the engines take it (the data: src/model/layer-plan.ts):
 * groups in forward order, each the forward point that yields its input and its linears in the
 * order they are solved; the row order of the stacked q/k/v and gate/up weights. Checked natively
 * (kernels/cpu/layer_plan.h): a plan the layer cannot run is refused, naming the problem.
 */
export interface NativeLayerPlan {
  groups: readonly { input: string; linears: readonly string[] }[];
  stacks: { qkv: readonly string[]; gateUp: readonly string[] };
}

/** The activations of a CPU layer call, one array per window of `seqlen` tokens. */
export interface CpuLayerWindows {
  /** [seqlen × hidden]: in, the layer's inputs; out, its outputs (every linear quantized). */
  x: Float32Array[];
  /** Scratch [seqlen × heads·headDim] (the attention output). */
  att: Float32Array[];
  /** Scratch [seqlen × hidden] (the residual after attention). */
  h1: Float32Array[];
  /**
   * With cfg.qep or cfg.gptaq, the fp16 path, as x, att, h1: xf in, the fp16 model's activations entering
   * the layer; out, the unquantized layer's outputs.
   */
  xf?: Float32Array[];
  attf?: Float32Array[];
  h1f?: Float32Array[];
  seqlen: number;
}

export interface CpuLayerConfig {
  /** Round-to-nearest: no windows (null), no Hessians. */
  rtn: boolean;
  /** false: every Hessian from the unquantized layer. */
  trueSequential: boolean;
  /**
   * QEP (native/kernels/cpu/qep.h): α and the linears whose W becomes W* = W + α W C (H + λI)⁻¹
   * before the solve; null or absent: plain GPTQ. Needs the fp16 path's windows.
   */
  qep?: { alpha: number; linears: readonly string[] } | null;
  /**
   * GPTAQ (native/kernels/cpu/gptaq.h): α in [0, 1]; every linear's solve takes its group's cross
   * term C = 2/n Σ (X̃ − X)ᵀ X. Null or absent: plain GPTQ. Needs the fp16 path's windows; not with qep.
   */
  gptaq?: { alpha: number } | null;
}

/** One linear of a CPU layer call: gptqQuantize's result less q, with its name, shape and solve time. */
export interface CpuLinear extends Omit<GptqSolve, 'q'> {
  name: string;
  n: number;
  k: number;
  seconds: number;
}

export interface CpuLayerResult {
  /** In the plan's order. */
  linears: CpuLinear[];
  /** Seconds in the layer's forward, in add_batch (Hessians) and in the solves. */
  times: { forward: number; hessian: number; solve: number };
}

/**
 * Quantizes one decoder layer on the CPU in one native call: the forward steps, every Hessian
 * and every solve, in the plan's order; `windows.x` then holds the layer's outputs. `w` is not
 * modified. With cfg.rtn, windows must be null.
 */
export async function cpuQuantizeLayer(
  w: LayerWeightsF32, dims: NativeDims, windows: CpuLayerWindows | null, opts: GptqOptions,
  cfg: CpuLayerConfig, plan: NativeLayerPlan,
): Promise<CpuLayerResult> {
  checkDims(dims);
  checkLayerWeights(w, dims);
  for (const k of [dims.hidden, dims.heads * dims.headDim, dims.ffn]) checkGptqOptions(opts, k);
  check(cfg.rtn === (windows === null), 'windows', cfg.rtn ? 'null with rtn' : 'the activation windows', windows);
  const qep = cfg.qep ?? null;
  if (qep !== null) {
    check(!cfg.rtn, 'config.qep', 'null with rtn (QEP needs calibration windows)', qep);
    checkAlpha(qep.alpha, 'config.qep.alpha');
    checkNames(qep.linears, 'config.qep.linears');
  }
  const gptaq = cfg.gptaq ?? null;
  if (gptaq !== null) {
    check(!cfg.rtn, 'config.gptaq', 'null with rtn (GPTAQ needs calibration windows)', gptaq);
    check(qep === null, 'config.gptaq', 'null with config.qep (one correction toward the fp16 path at a time)', gptaq);
    checkAlpha(gptaq.alpha, 'config.gptaq.alpha');
  }
  const fpPath = qep !== null || gptaq !== null;
  if (windows !== null) {
    checkSeqlen(windows.seqlen);
    const n = windows.x.length;
    check(n > 0, 'windows.x', 'at least one window', n);
    const widths = { x: dims.hidden, att: dims.heads * dims.headDim, h1: dims.hidden, xf: dims.hidden, attf: dims.heads * dims.headDim, h1f: dims.hidden };
    for (const key of fpPath ? ['x', 'att', 'h1', 'xf', 'attf', 'h1f'] as const : ['x', 'att', 'h1'] as const) {
      const ws = windows[key];
      check(Array.isArray(ws) && ws.length === n, `windows.${key}`, `${n} windows (as x)`, Array.isArray(ws) ? ws.length : ws);
      ws!.forEach((a, i) => checkLength(a, `windows.${key}[${i}]`, windows.seqlen * widths[key]));
    }
  }
  checkPlanShape(plan);
  return callNative('cpuQuantizeLayer', w, dims, windows, opts, cfg, plan);
}

/** The plan's form (arrays of names); what the names must be is checked natively. */
export function checkPlanShape(plan: NativeLayerPlan): void {
  const names = (v: unknown, what: string) => {
    check(Array.isArray(v) && v.every((x) => typeof x === 'string'), what, 'an array of names', v);
  };
  check(Array.isArray(plan?.groups), 'plan.groups', 'an array', plan?.groups);
  plan.groups.forEach((g, i) => {
    check(typeof g?.input === 'string', `plan.groups[${i}].input`, 'a forward point name', g?.input);
    names(g.linears, `plan.groups[${i}].linears`);
  });
  names(plan.stacks?.qkv, 'plan.stacks.qkv');
  names(plan.stacks?.gateUp, 'plan.stacks.gateUp');
}
