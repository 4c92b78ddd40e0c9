/**
 * The engine seam (src/gptq/driver.ts) on llama2-s: each engine reports every layer's linears in
 * exactly the order of the layer plan (src/model/layer-plan.ts), the CPU engine makes one
 * native quantize call per decoder layer, and the CUDA engine's slots are laid out by the plan's
 * stacks. The CUDA half runs where the addon was built with CUDA and a GPU is visible (skipped
 * otherwise, as test/golden/gptq-golden-cuda.test.ts).
 */
import { quantizeLayers } from '../../src/gptq/driver';
import { callsSince } from '../../src/gptq/native-calls';
import { QuantizeSettings } from '../../src/gptq/settings';
import { LAYER_PLAN, planOrder } from '../../src/model/layer-plan';
import { LlamaModel } from '../../src/model/llama-model';
import { LinearName } from '../../src/model/weights';
import { CudaLayerWeights, CudaSession, cudaAvailable, nativeCallCounts, WEIGHT_PARTS, weightPartCounts } from '../../src/native';
import { LLAMA2_S } from '../helpers/shared';

const base: QuantizeSettings = {
  bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true,
};
const seqlen = 64, nsamples = 2;

function calibration(vocab: number): Int32Array {
  let s = 7;
  return Int32Array.from({ length: nsamples * seqlen }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return 1 + (s % (vocab - 1));
  });
}

let model: LlamaModel;
beforeAll(async () => {
  model = await LlamaModel.open(LLAMA2_S);
});
afterAll(() => model.close());

/** Quantizes llama2-s, recording per layer the sink's linears, the reports and the native calls. */
async function run(s: QuantizeSettings, device: 'cpu' | 'cuda') {
  const sunk: Map<number, LinearName[]> = new Map();
  const calls: Record<string, number>[] = [];
  let at = nativeCallCounts();
  const r = await quantizeLayers(
    model, calibration(model.config.vocabSize), seqlen, s,
    async (layer, name) => void sunk.set(layer, [...(sunk.get(layer) ?? []), name]),
    {},
    {
      startLayer: 0, x: null,
      onLayerDone: async () => {
        calls.push(callsSince(at));
        at = nativeCallCounts();
      },
    },
    device,
  );
  return { sunk, calls, reports: r.linears };
}

function expectPlanOrder(r: Awaited<ReturnType<typeof run>>) {
  const layers = model.config.numLayers;
  expect([...r.sunk.keys()]).toEqual(Array.from({ length: layers }, (_, i) => i));
  for (const names of r.sunk.values()) expect(names).toEqual(planOrder(LAYER_PLAN));
  expect(r.reports.map((l) => `${l.layer} ${l.name}`)).toEqual(
    Array.from({ length: layers }, (_, i) => planOrder().map((n) => `${i} ${n}`)).flat(),
  );
}

describe('CPU engine', () => {
  for (const [label, s] of [
    ['true-sequential', base], ['no true-sequential', { ...base, trueSequential: false }], ['rtn', { ...base, rtn: true }],
  ] as const) {
    test(`${label}: linears in the plan's order; one native quantize call per layer`, async () => {
      const r = await run(s, 'cpu');
      expectPlanOrder(r);
      for (const c of r.calls) {
        expect(c.cpuQuantizeLayer).toBe(1);
        // Before the seam: 5 layerStep + 7 gptqQuantize per layer. Now the layer's weight reads
        // (9 fp16 tensors; layer 0 also reads the embedding and embeds) and the one layer call.
        expect(c.gptqQuantize ?? 0).toBe(0);
        expect(c.layerStep).toBeUndefined();
        const reads = (c.f16ToF32 ?? 0) + (c.embed ?? 0);
        expect(Object.values(c).reduce((a, b) => a + b, 0)).toBe(reads + 1);
      }
      expect(r.calls[1].f16ToF32).toBe(9);
    });
  }
});

test('layerWeightEntries stacks the CUDA slots by the plan', async () => {
  const entries = await model.layerWeightEntries(0);
  const names = (part: string) => entries.filter((e) => e.part === part).map((e) => e.name.replace(/^model\.layers\.0\.(.*)\.weight$/, '$1'));
  expect(names('qkv')).toEqual(LAYER_PLAN.stacks.qkv);
  expect(names('gateUp')).toEqual(LAYER_PLAN.stacks.gateUp);
});

const maybe = cudaAvailable() ? describe : describe.skip;
maybe('CUDA engine', () => {
  test('linears in the plan\'s order; one native quantize call per layer', async () => {
    const r = await run(base, 'cuda');
    expectPlanOrder(r);
    for (const c of r.calls) expect(c.cudaQuantizeLayer).toBe(1);
  });

  test('a plan the GPU layer cannot run is refused, naming the problem', async () => {
    const d = { hidden: 256, ffn: 512, heads: 4, kvHeads: 2, headDim: 64, eps: 1e-5, ropeTheta: 10000 };
    const S = 128;
    const counts = weightPartCounts(d);
    const w = Object.fromEntries(WEIGHT_PARTS.map((p) => [p, new Uint16Array(counts[p])])) as unknown as CudaLayerWeights;
    const session = await CudaSession.create(new Uint16Array(S * d.hidden), S, S, d.hidden);
    const opts = { bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };
    try {
      const bad = { ...LAYER_PLAN, stacks: { ...LAYER_PLAN.stacks, gateUp: ['mlp.up_proj', 'mlp.gate_proj'] } };
      await expect(session.quantizeLayer(w, d, opts, {}, bad)).rejects.toThrow('plan: stacks.gateUp must be [mlp.gate_proj, mlp.up_proj]');
      const swapped = { ...LAYER_PLAN, groups: [LAYER_PLAN.groups[1], LAYER_PLAN.groups[0], ...LAYER_PLAN.groups.slice(2)] };
      await expect(session.quantizeLayer(w, d, opts, {}, swapped)).rejects.toThrow('plan: group 0 (attention): expected forward point input_layernorm');
    } finally {
      await session.free();
    }
  });
});
