/**
 * The CPU engine: one native call per decoder layer (cpuQuantizeLayer) runs the layer's forward
 * steps, gathers every Hessian and solves every linear in the plan's order; the Hessians and
 * the weights never come into JS. The calibration activations are fp32 windows held here (fp16
 * values: round16), replaced by each layer's outputs. Every mode: rtn (no windows), mse,
 * static groups, act-order, trueSequential on or off, resume from a layer, and QEP or GPTAQ: a second
 * set of windows, the fp16 model's activations, carried through each unquantized layer beside
 * the quantized path's (twice the activation memory; outputs() gives both, for checkpoints).
 */
import { LAYER_PLAN } from '../model/layer-plan';
import { LlamaModel } from '../model/llama-model';
import { LinearName } from '../model/weights';
import { cpuQuantizeLayer, CpuLayerWindows, embed } from '../native';
import { activationWindows, EngineLinear, LayerEngine, LayerRange } from './engine';
import { gptaqConfig, needsFpPath, qepConfig, QuantizeSettings, solverOptions } from './settings';

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** `calib` holds nsamples × seqlen token ids (unused with rtn). */
export async function cpuEngine(
  model: LlamaModel, calib: Int32Array, seqlen: number, s: QuantizeSettings, range: LayerRange,
): Promise<LayerEngine> {
  const c = model.config;
  const dims = model.dims(true);
  const opts = solverOptions(s);
  const qep = qepConfig(s), gptaq = gptaqConfig(s);
  const cfg = { rtn: !!s.rtn, trueSequential: s.trueSequential, ...(qep ? { qep } : {}), ...(gptaq ? { gptaq } : {}) };
  const fpPath = needsFpPath(s);
  let windows: CpuLayerWindows | null = null;
  if (!s.rtn) {
    const n = calib.length / seqlen, per = seqlen * c.hiddenSize;
    const alloc = (width: number) => Array.from({ length: n }, () => new Float32Array(seqlen * width));
    let x: Float32Array[];
    let xf: Float32Array[] | undefined;
    if (range.startLayer === 0) {
      x = alloc(c.hiddenSize);
      await embed(calib, await model.embedding(), c.vocabSize, x);
      if (fpPath) xf = x.map((a) => a.slice()); // both paths enter layer 0 with the embeddings
    } else {
      const who = `quantizeLayers: layer ${range.startLayer}`;
      x = await activationWindows(range.x, n, per, who);
      if (fpPath) {
        if (!range.x?.fp) throw new Error(`${who} needs the fp16 path's activations too (${qep ? 'QEP' : 'GPTAQ'})`);
        xf = await activationWindows(range.x.fp, n, per, `${who} (the fp16 path)`);
      }
    }
    windows = { x, att: alloc(c.numHeads * c.headDim), h1: alloc(c.hiddenSize), seqlen };
    if (xf) Object.assign(windows, { xf, attf: alloc(c.numHeads * c.headDim), h1f: alloc(c.hiddenSize) });
  }
  return {
    overlapsLayerDone: false,
    async quantizeLayer(layer) {
      const t0 = now();
      const w = await model.layer(layer);
      const load = now() - t0;
      const r = await cpuQuantizeLayer(w, dims, windows, opts, cfg, LAYER_PLAN);
      const linears = r.linears.map((L): EngineLinear => ({
        name: L.name as LinearName,
        seconds: L.seconds,
        solve: {
          codes: L.codes, scales: L.scales, zeros: L.zeros, gIdx: L.gIdx, perm: L.perm, loss: L.loss,
          dampPercent: L.dampPercent, dampRaises: L.dampRaises, deadColumns: L.deadColumns,
        },
      }));
      return { linears, times: { load, forward: r.times.forward, hessian: r.times.hessian, solve: r.times.solve } };
    },
    outputs() {
      if (!windows) throw new Error('the CPU engine keeps no activations with rtn');
      return windows.xf ? { f32: windows.x, fp: { f32: windows.xf } } : { f32: windows.x };
    },
    async close() {
      windows = null;
    },
  };
}
