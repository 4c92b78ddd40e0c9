/**
 * The GPTQ driver over a Llama model, layer by layer, on either engine (engine.ts): the
 * calibration activations stay with the engine; each decoder layer is one engine call that
 * quantizes it along the plan of src/model/layer-plan.ts (true-sequential: [k,v,q] → [o] →
 * [up,gate] → [down]), and the quantized layer's outputs feed the next layer. The driver owns
 * what is the same for both: per-linear reports, damping warnings and progress, the stage
 * times, the sink and the caller's per-layer hooks (checkpoints, LayerRange).
 */
import { CudaLayerConfig } from '../native';
import { planOrder } from '../model/layer-plan';
import { LlamaModel } from '../model/llama-model';
import { Device } from './manifest';
import {
  LayerEngine, LayerRange, LinearReport, LinearSink, PipelineEvents, PipelineResult, StageTimes,
} from './engine';
import { cpuEngine } from './engine-cpu';
import { cudaEngine } from './engine-cuda';
import { NativeCallMeter } from './native-calls';
import { linearShape, QuantizeSettings } from './settings';

const now = () => Number(process.hrtime.bigint()) / 1e9;

/**
 * Quantizes every decoder layer from range.startLayer on `device`. `calib` holds nsamples ×
 * seqlen token ids (unused with rtn); `cudaConfig` is the CUDA engine's (see cudaEngine).
 */
export async function quantizeLayers(
  model: LlamaModel, calib: Int32Array, seqlen: number, s: QuantizeSettings, sink: LinearSink,
  events: PipelineEvents = {}, range: LayerRange = { startLayer: 0, x: null }, device: Device = 'cpu',
  cudaConfig: CudaLayerConfig = {},
): Promise<PipelineResult> {
  const meter = new NativeCallMeter(); // from here: layer 0's count includes the embedding
  const engine = device === 'cuda'
    ? await cudaEngine(model, calib, seqlen, s, range, cudaConfig)
    : await cpuEngine(model, calib, seqlen, s, range);
  return runLayers(engine, model, s, sink, events, range, meter);
}

/** The layer loop over an engine (closed at the end, also after a failure). */
export async function runLayers(
  engine: LayerEngine, model: LlamaModel, s: QuantizeSettings, sink: LinearSink, events: PipelineEvents,
  range: LayerRange, meter = new NativeCallMeter(),
): Promise<PipelineResult> {
  const c = model.config;
  const times: StageTimes = { load: 0, forward: 0, hessian: 0, solve: 0, sink: 0 };
  const linears: LinearReport[] = [];
  const total = (c.numLayers - range.startLayer) * planOrder().length;
  let done = 0;
  // The caller's work on a finished layer (writing its files); with an engine that allows it,
  // it runs while the next layer is quantized when it did not ask for the layer's outputs.
  let finishing: Promise<void> | null = null;
  try {
    for (let layer = range.startLayer; layer < c.numLayers; layer++) {
      const r = await engine.quantizeLayer(layer);
      await finishing;
      times.load += r.times.load;
      times.forward += r.times.forward;
      times.hessian += r.times.hessian;
      times.solve += r.times.solve;
      for (const { name, solve, seconds } of r.linears) {
        const shape = linearShape(c, name);
        if (solve.dampRaises > 0) {
          events.onWarning?.(
            `layer ${layer} ${name}: the Hessian was not positive definite with damp ${s.dampPercent}; ` +
              `raised ${solve.dampRaises}× to ${solve.dampPercent.toPrecision(3)}`,
          );
        }
        const t1 = now();
        await sink(layer, name, solve, shape);
        times.sink += now() - t1;
        linears.push({
          layer, name, ...shape, loss: solve.loss, seconds, dampPercent: solve.dampPercent,
          dampRaises: solve.dampRaises, deadColumns: solve.deadColumns,
        });
        events.onProgress?.(++done, total, `layer ${layer + 1}/${c.numLayers} ${name} loss ${solve.loss.toPrecision(4)}`);
      }
      if (range.onLayerDone) {
        const keep = !s.rtn && (range.wantX?.(layer) ?? true);
        finishing = range.onLayerDone(layer, keep ? engine.outputs() : null, times);
        finishing.catch(() => undefined);
        if (keep || !engine.overlapsLayerDone) await finishing;
      }
      meter.layerDone(layer);
    }
    await finishing;
    meter.finish();
  } finally {
    await finishing?.catch(() => undefined);
    await engine.close();
  }
  return { linears, times };
}
