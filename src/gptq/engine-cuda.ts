/**
 * The CUDA engine (`--device cuda`): the calibration activations stay on the GPU (fp16) in a
 * CudaSession; each decoder layer is one native call that gathers the Hessians, solves every
 * linear (stacks of the plan solved as one) and leaves the quantized layer's outputs as the next
 * layer's inputs. Weights stream from the checkpoint's shards into two pinned host slots: the
 * next layer's are read on native threads while this one is quantized; the packed AutoGPTQ
 * tensors come back from the GPU. Not supported on the GPU (a UserError before any work, see
 * device.ts): rtn, trueSequential = false (--mse runs here: the grids' search on the GPU). QEP
 * (--qep) runs here as on the CPU engine: the session also holds the fp16 model's activations
 * (both paths start as the embeddings; 8.6 GB more for 70B at 128 × 4096), carried through each
 * unquantized layer in the same call; outputs() gives both, for checkpoints and --resume. GPTAQ
 * (--gptaq) keeps the same fp16 path, every stack's solve taking its group's cross term.
 * Activations are fp16 throughout, as an fp16
 * model runs in transformers (the CPU engine's round16 mode); the solve uses an fp64 Cholesky
 * and fp32 updates like the CPU engine.
 */
import { UserError } from '../errors';
import { LAYER_PLAN } from '../model/layer-plan';
import { LlamaModel } from '../model/llama-model';
import { LinearName } from '../model/weights';
import { CudaLayerConfig, CudaLinear, CudaSession, embed, f32ArrayToF16 } from '../native';
import { checkCudaSettings } from './device';
import { Activations, activationWindows, EngineLinear, LayerEngine, LayerRange, QuantizedLinear } from './engine';
import { gptaqConfig, needsFpPath, qepConfig, QuantizeSettings, solverOptions } from './settings';

const now = () => Number(process.hrtime.bigint()) / 1e9;

/** What the sink gets from one of the layer call's linears. */
function quantizedLinear(L: CudaLinear): QuantizedLinear {
  const common = { gIdx: L.gIdx, perm: L.perm, loss: L.loss, dampPercent: L.dampPercent, dampRaises: L.dampRaises, deadColumns: L.deadColumns };
  if (L.packed) return { ...common, packed: L.packed };
  return { ...common, codes: L.codes!, scales: L.scales!, zeros: L.zeros! };
}

/**
 * `calib` holds nsamples × seqlen token ids. `config` chooses the solve's precision (defaults
 * as the CPU engine) and the memory budget; with `wantCodes` the sink gets codes and fp32 grids
 * (for comparisons) instead of packed tensors. The `load` stage counts only the time spent
 * waiting for weights that were not read yet.
 */
export async function cudaEngine(
  model: LlamaModel, calib: Int32Array, seqlen: number, s: QuantizeSettings, range: LayerRange,
  config: CudaLayerConfig = {},
): Promise<LayerEngine> {
  checkCudaSettings(s);
  const c = model.config;
  const d = model.dims(true);
  const dims = { hidden: d.hidden, ffn: d.ffn, heads: d.heads, kvHeads: d.kvHeads, headDim: d.headDim, eps: d.eps, ropeTheta: d.ropeTheta };
  const start = range.startLayer;
  const opts = solverOptions(s);
  const packed = !config.wantCodes;
  const qep = qepConfig(s), gptaq = gptaqConfig(s);
  const layerConfig: CudaLayerConfig = { ...config, wantCodes: !packed, wantPacked: packed, ...(qep ? { qep } : {}), ...(gptaq ? { gptaq } : {}) };
  const fpPath = needsFpPath(s);
  const windows = calib.length / seqlen, tokens = windows * seqlen, per = seqlen * c.hiddenSize;
  // Activations of all windows as fp16 bits (8.6 GB for 70B at 128 × 4096), made a window at a
  // time from fp32 ones: no fp32 copy of them all.
  const asF16 = async (a: Activations | null, who: string): Promise<Uint16Array> => {
    if (a !== null && !('f32' in a) && a.windows === windows && a.perWindow === per) return a.read(0, windows);
    const x = await activationWindows(a, windows, per, who);
    const bits = new Uint16Array(tokens * c.hiddenSize);
    for (let w = 0; w < windows; w++) bits.set((await f32ArrayToF16(x[w])).bits, w * per);
    return bits;
  };
  // The activations entering `start`, and with QEP or GPTAQ the fp16 path's.
  let xh: Uint16Array | null;
  let xfh: Uint16Array | null = null;
  if (start === 0) {
    xh = new Uint16Array(tokens * c.hiddenSize);
    const table = await model.embedding();
    const x = new Float32Array(per);
    for (let w = 0; w < windows; w++) {
      await embed(calib.subarray(w * seqlen, (w + 1) * seqlen), table, c.vocabSize, [x]);
      xh.set((await f32ArrayToF16(x)).bits, w * per);
    }
    if (fpPath) xfh = xh.slice(); // both paths enter layer 0 with the embeddings
  } else {
    const who = `quantizeLayersCuda: layer ${start}`;
    xh = await asF16(range.x, who);
    if (fpPath) {
      const method = qep ? 'QEP' : 'GPTAQ';
      if (!range.x?.fp) throw new Error(`${who} needs the fp16 path's activations too (${method})`);
      xfh = await asF16(range.x.fp, `${who} (${method}'s fp16 path)`);
    }
  }
  const session = await CudaSession.create(xh, tokens, seqlen, c.hiddenSize, xfh);
  xh = xfh = null; // from here the activations live on the GPU only
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
  return {
    overlapsLayerDone: true,
    async quantizeLayer(layer) {
      const t0 = now();
      await next;
      const loadSeconds = now() - t0;
      next = layer + 1 < c.numLayers ? load(layer + 1) : null;
      const r = await session.quantizeLayer(layer % 2, dims, opts, layerConfig, LAYER_PLAN);
      const linears = r.linears.map((L): EngineLinear => ({ name: L.name as LinearName, seconds: L.seconds, solve: quantizedLinear(L) }));
      return {
        linears,
        // QEP's corrections count as solve time (they precede each corrected stack's solve).
        times: { load: loadSeconds, forward: r.times.forward, hessian: r.times.hessian, solve: r.times.cholesky + r.times.solve + r.times.qep },
      };
    },
    // The layer's outputs (fp16 bits), read from the GPU a few windows at a time, before the
    // next layer replaces them.
    outputs: (): Activations => {
      const x = { windows, perWindow: per, read: (first: number, count: number) => session.read(first, count) };
      if (!fpPath) return x;
      return { ...x, fp: { windows, perWindow: per, read: (first: number, count: number) => session.read(first, count, true) } };
    },
    async close() {
      await next?.catch(() => undefined);
      await session.free();
    },
  };
}
