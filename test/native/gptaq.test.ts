/**
 * The CPU layer call with GPTAQ (config.gptaq; native/kernels/cpu/gptaq.h): α = 0 is plain GPTQ
 * bit for bit (the same solve with P = 0, not a skipped one); with X̃ = X at the first group
 * (both paths enter with the same x) its linears are plain GPTQ's and the later ones are not;
 * and the argument errors (TypeScript's checks first).
 */
import { LAYER_PLAN } from '../../src/model/layer-plan';
import { cpuQuantizeLayer, CpuLayerWindows, f16ToF32, f32ArrayToF16, GptqOptions, LayerWeightsF32, NativeDims } from '../../src/native';
import { QEP_CORRECTED } from '../../src/gptq/settings';
import { lcg } from '../helpers/lcg';

const dims: NativeDims = { hidden: 64, ffn: 128, heads: 4, kvHeads: 2, headDim: 16, eps: 1e-5, ropeTheta: 10000, round16: true };
const S = 16;
const qd = dims.heads * dims.headDim;
const opts: GptqOptions = { bits: 3, groupSize: 32, actOrder: true, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };
const f16 = async (a: Float32Array) => f16ToF32((await f32ArrayToF16(a)).bits);

async function weights(seed: number): Promise<LayerWeightsF32> {
  const r = lcg(seed);
  const m = (len: number, scale: number, mean = 0) => Float32Array.from({ length: len }, () => mean + scale * r());
  const H = dims.hidden, F = dims.ffn, kvd = dims.kvHeads * dims.headDim;
  return {
    inputNorm: m(H, 0.2, 1), q: m(qd * H, 0.3), k: m(kvd * H, 0.3), v: m(kvd * H, 0.3), o: m(H * qd, 0.3),
    postNorm: m(H, 0.2, 1), gate: m(F * H, 0.3), up: m(F * H, 0.3), down: m(H * F, 0.3),
  };
}

/** n windows of fp16 values; with `drift` (≥ 0), the fp16 path enters with x + drift·noise. */
async function windows(n: number, seed: number, drift?: number): Promise<CpuLayerWindows> {
  const r = lcg(seed);
  const x = await Promise.all(Array.from({ length: n }, () => f16(Float32Array.from({ length: S * dims.hidden }, () => 2 * r()))));
  const scratch = (width: number) => x.map(() => new Float32Array(S * width));
  const win: CpuLayerWindows = { x, att: scratch(qd), h1: scratch(dims.hidden), seqlen: S };
  if (drift !== undefined) {
    const xf = await Promise.all(x.map((a) => f16(a.map((v) => v + drift * r()))));
    Object.assign(win, { xf, attf: scratch(qd), h1f: scratch(dims.hidden) });
  }
  return win;
}

const same = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
let w: LayerWeightsF32;
beforeAll(async () => {
  w = await weights(21);
});

describe('cpuQuantizeLayer with GPTAQ', () => {
  for (const trueSequential of [true, false]) {
    test(`alpha 0 is plain GPTQ bit for bit${trueSequential ? '' : ', without true-sequential'}`, async () => {
      const plain = await windows(2, 31), withFp = await windows(2, 31, 0.05);
      const a = await cpuQuantizeLayer(w, dims, plain, opts, { rtn: false, trueSequential }, LAYER_PLAN);
      const b = await cpuQuantizeLayer(w, dims, withFp, opts, { rtn: false, trueSequential, gptaq: { alpha: 0 } }, LAYER_PLAN);
      const c = await cpuQuantizeLayer(w, dims, await windows(2, 31, 0.05), opts, { rtn: false, trueSequential, gptaq: { alpha: 0.25 } }, LAYER_PLAN);
      let changed = 0;
      for (const [i, la] of a.linears.entries()) {
        const lb = b.linears[i];
        expect([la.name, same(la.codes, lb.codes), same(la.scales, lb.scales), la.loss]).toEqual([lb.name, true, true, lb.loss]);
        changed += same(la.codes, c.linears[i].codes) ? 0 : 1;
      }
      plain.x.forEach((x, i) => expect(same(x, withFp.x[i])).toBe(true));
      expect(changed).toBe(a.linears.length); // with drift every group's C ≠ 0: α 0.25 changes every linear
    });
  }

  test('X̃ = X at the first group: k, v, q are plain GPTQ\'s; the groups after it fit the fp16 path', async () => {
    const a = await cpuQuantizeLayer(w, dims, await windows(2, 32), opts, { rtn: false, trueSequential: true }, LAYER_PLAN);
    const b = await cpuQuantizeLayer(w, dims, await windows(2, 32, 0), opts, { rtn: false, trueSequential: true, gptaq: { alpha: 0.25 } }, LAYER_PLAN);
    const differs = Object.fromEntries(a.linears.map((la, i) => [la.name, !same(la.codes, b.linears[i].codes)]));
    expect(differs).toEqual({
      'self_attn.k_proj': false, 'self_attn.v_proj': false, 'self_attn.q_proj': false,
      'self_attn.o_proj': true, 'mlp.up_proj': true, 'mlp.gate_proj': true, 'mlp.down_proj': true,
    });
  });

  test('argument errors: alpha, rtn, qep, the fp16 path\'s windows', async () => {
    const seq = { rtn: false, trueSequential: true };
    const win = await windows(1, 33, 0.05);
    await expect(cpuQuantizeLayer(w, dims, win, opts, { ...seq, gptaq: { alpha: 1.5 } }, LAYER_PLAN)).rejects.toThrow('config.gptaq.alpha: expected a number in [0, 1], got 1.5');
    await expect(cpuQuantizeLayer(w, dims, null, opts, { rtn: true, trueSequential: true, gptaq: { alpha: 0.25 } }, LAYER_PLAN)).rejects.toThrow('config.gptaq: expected null with rtn');
    await expect(cpuQuantizeLayer(w, dims, win, opts, { ...seq, gptaq: { alpha: 0.25 }, qep: { alpha: 0.5, linears: QEP_CORRECTED } }, LAYER_PLAN))
      .rejects.toThrow('config.gptaq: expected null with config.qep');
    await expect(cpuQuantizeLayer(w, dims, await windows(1, 34), opts, { ...seq, gptaq: { alpha: 0.25 } }, LAYER_PLAN)).rejects.toThrow('windows.xf: expected 1 windows (as x), got undefined');
  });
});
