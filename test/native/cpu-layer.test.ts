/**
 * The CPU engine's one call per decoder layer (cpuQuantizeLayer): linears in the plan's order in
 * every mode, the plan really used (a reordered group changes the order, not the results), the
 * solves against gptqQuantize, the layer's outputs left in the windows, and the argument errors
 * (TypeScript's first, then the native plan check's).
 */
import { LAYER_PLAN, LayerPlan, planOrder, WEIGHT_KEY } from '../../src/model/layer-plan';
import { LinearName } from '../../src/model/weights';
import {
  cpuQuantizeLayer, CpuLayerWindows, decoderLayer, GptqOptions, gptqQuantize, LayerWeightsF32, NativeDims,
  NativeLayerPlan, xtx,
} from '../../src/native';
import { lcg } from '../helpers/lcg';

const dims: NativeDims = { hidden: 64, ffn: 128, heads: 4, kvHeads: 2, headDim: 16, eps: 1e-5, ropeTheta: 10000, round16: true };
const S = 16;
const qd = dims.heads * dims.headDim, kvd = dims.kvHeads * dims.headDim;
const opts: GptqOptions = { bits: 4, groupSize: 32, actOrder: true, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };
const seq = { rtn: false, trueSequential: true };

function weights(seed: number): LayerWeightsF32 {
  const rnd = lcg(seed);
  const m = (n: number, scale: number, mean = 0) => Float32Array.from({ length: n }, () => mean + scale * rnd());
  const H = dims.hidden, F = dims.ffn;
  return {
    inputNorm: m(H, 0.2, 1), q: m(qd * H, 0.3), k: m(kvd * H, 0.3), v: m(kvd * H, 0.3), o: m(H * qd, 0.3),
    postNorm: m(H, 0.2, 1), gate: m(F * H, 0.3), up: m(F * H, 0.3), down: m(H * F, 0.3),
  };
}

function windows(n: number, seed: number): CpuLayerWindows {
  const rnd = lcg(seed);
  const x = Array.from({ length: n }, () => Float32Array.from({ length: S * dims.hidden }, () => 2 * rnd()));
  const scratch = (width: number) => x.map(() => new Float32Array(S * width));
  return { x, att: scratch(qd), h1: scratch(dims.hidden), seqlen: S };
}

const w = weights(1);

describe('cpuQuantizeLayer', () => {
  for (const [label, cfg] of [
    ['true-sequential', seq], ['no true-sequential', { rtn: false, trueSequential: false }], ['rtn', { rtn: true, trueSequential: true }],
  ] as const) {
    test(`${label}: linears come back in the plan's order, with their shapes`, async () => {
      const r = await cpuQuantizeLayer(w, dims, cfg.rtn ? null : windows(2, 2), opts, cfg, LAYER_PLAN);
      expect(r.linears.map((l) => l.name)).toEqual(planOrder());
      expect(planOrder()).toEqual([
        'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.q_proj', 'self_attn.o_proj', 'mlp.up_proj', 'mlp.gate_proj', 'mlp.down_proj',
      ]);
      for (const l of r.linears) {
        expect(l.codes.length).toBe(l.n * l.k);
        expect(l.gIdx.length).toBe(l.k);
        expect(l.seconds).toBeGreaterThanOrEqual(0);
        if (!cfg.rtn) expect(l.loss).toBeGreaterThan(0);
      }
      if (!cfg.rtn) expect(r.times.forward).toBeGreaterThan(0);
    });
  }

  test('the plan is used: members reordered inside their groups come back in that order, results unchanged', async () => {
    const reordered: LayerPlan = {
      ...LAYER_PLAN,
      groups: [
        { input: 'input_layernorm', linears: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] },
        LAYER_PLAN.groups[1],
        { input: 'post_attention_layernorm', linears: ['mlp.gate_proj', 'mlp.up_proj'] },
        LAYER_PLAN.groups[3],
      ],
    };
    const [wa, wb] = [windows(2, 3), windows(2, 3)];
    const a = await cpuQuantizeLayer(w, dims, wa, opts, seq, LAYER_PLAN);
    const b = await cpuQuantizeLayer(w, dims, wb, opts, seq, reordered);
    expect(b.linears.map((l) => l.name)).toEqual(planOrder(reordered));
    for (const la of a.linears) {
      const lb = b.linears.find((l) => l.name === la.name)!;
      expect(lb.loss).toBe(la.loss);
      expect(Buffer.from(lb.codes).equals(Buffer.from(la.codes))).toBe(true);
    }
    wa.x.forEach((x, i) => expect(Buffer.from(wb.x[i].buffer).equals(Buffer.from(x.buffer))).toBe(true));
  });

  test('rtn: every linear as gptqQuantize without a Hessian; the weights are not modified', async () => {
    const before = Object.fromEntries(Object.entries(w).map(([k, v]) => [k, (v as Float32Array).slice()]));
    const r = await cpuQuantizeLayer(w, dims, null, opts, { rtn: true, trueSequential: true }, LAYER_PLAN);
    for (const l of r.linears) {
      const ref = await gptqQuantize(w[WEIGHT_KEY[l.name as LinearName]], null, l.n, l.k, opts);
      expect(Buffer.from(l.codes).equals(Buffer.from(ref.codes))).toBe(true);
      expect(Array.from(l.scales)).toEqual(Array.from(ref.scales));
      expect(Array.from(l.zeros)).toEqual(Array.from(ref.zeros));
      expect(l.dampPercent).toBe(0);
    }
    for (const [k, v] of Object.entries(w)) expect(Array.from(v as Float32Array)).toEqual(Array.from(before[k]));
  });

  test('the first group is solved with add_batch\'s H = 2/n Σ XᵀX of input_layernorm(x)', async () => {
    // One window without fp16 rounding: H is exactly 2·XᵀX, X = input_layernorm(x) computed
    // here as the kernel does (fp32, row by row), so the solves must agree bit for bit.
    const d = { ...dims, round16: false };
    const win = windows(1, 4);
    const x = win.x[0].slice();
    const H = d.hidden, X = new Float32Array(S * H);
    const f = Math.fround;
    for (let t = 0; t < S; t++) {
      let ss = 0;
      for (let i = 0; i < H; i++) ss = f(ss + f(x[t * H + i] * x[t * H + i]));
      const inv = f(1 / f(Math.sqrt(f(f(ss / H) + d.eps))));
      for (let i = 0; i < H; i++) X[t * H + i] = f(f(x[t * H + i] * inv) * w.inputNorm[i]);
    }
    const h = (await xtx(X, S, H, false)).map((v) => 2 * v);
    const r = await cpuQuantizeLayer(w, d, win, opts, seq, LAYER_PLAN);
    for (const name of LAYER_PLAN.groups[0].linears) {
      const l = r.linears.find((x) => x.name === name)!;
      const ref = await gptqQuantize(w[WEIGHT_KEY[name]], h, l.n, l.k, opts);
      expect(Buffer.from(l.codes).equals(Buffer.from(ref.codes))).toBe(true);
      expect(l.loss).toBe(ref.loss);
    }
  });

  test('the windows end up holding the layer\'s outputs with every linear quantized', async () => {
    const win = windows(2, 5);
    const x0 = win.x.map((x) => x.slice());
    const r = await cpuQuantizeLayer(w, dims, win, opts, seq, LAYER_PLAN);
    // The quantized weights from the codes: scale · (code − zero), fp16 as the layer uses them.
    const q: LayerWeightsF32 = { ...w };
    for (const l of r.linears) {
      const m = new Float32Array(l.n * l.k);
      for (let n = 0; n < l.n; n++) {
        for (let k = 0; k < l.k; k++) {
          const g = l.gIdx[k];
          m[n * l.k + k] = l.scales[g * l.n + n] * (l.codes[n * l.k + k] - l.zeros[g * l.n + n]);
        }
      }
      q[WEIGHT_KEY[l.name as LinearName]] = m;
    }
    await decoderLayer(x0, q, dims, S);
    const ref = await decoderLayer(x0.map((x) => x.slice()), w, dims, S);
    let worst = 0, scale = 0;
    x0.forEach((x, i) => x.forEach((v, j) => {
      worst = Math.max(worst, Math.abs(win.x[i][j] - v));
      scale = Math.max(scale, Math.abs(v));
    }));
    expect(worst).toBeLessThanOrEqual(0.003 * scale); // fp16 rounding; the input itself is ~1.6 away
    expect(ref).toBe(0); // no NaN/Inf from the unquantized layer either
  });

  describe('argument errors', () => {
    const win = () => windows(1, 6);
    test('TypeScript: windows with rtn, none without, wrong sizes, a plan of the wrong form', async () => {
      await expect(cpuQuantizeLayer(w, dims, null, opts, seq, LAYER_PLAN)).rejects.toThrow('windows: expected the activation windows, got null');
      await expect(cpuQuantizeLayer(w, dims, win(), opts, { rtn: true, trueSequential: true }, LAYER_PLAN)).rejects.toThrow('windows: expected null with rtn');
      const short = { ...win(), att: [] };
      await expect(cpuQuantizeLayer(w, dims, short, opts, seq, LAYER_PLAN)).rejects.toThrow('windows.att: expected 1 windows (as x), got 0');
      const narrow = { ...win(), h1: [new Float32Array(5)] };
      await expect(cpuQuantizeLayer(w, dims, narrow, opts, seq, LAYER_PLAN)).rejects.toThrow(`windows.h1[0]: expected ${S * dims.hidden} elements, got 5`);
      await expect(cpuQuantizeLayer({ ...w, up: new Float32Array(3) }, dims, win(), opts, seq, LAYER_PLAN)).rejects.toThrow('weights.up: expected');
      await expect(cpuQuantizeLayer(w, dims, win(), { ...opts, groupSize: 48 }, seq, LAYER_PLAN)).rejects.toThrow('groupSize: expected -1 or a divisor of 64, got 48');
      const bad = { groups: [{ input: 'input_layernorm', linears: [7] }], stacks: LAYER_PLAN.stacks } as unknown as NativeLayerPlan;
      await expect(cpuQuantizeLayer(w, dims, win(), opts, seq, bad)).rejects.toThrow('plan.groups[0].linears: expected an array of names');
    });

    const variant = (groups: NativeLayerPlan['groups'], stacks: NativeLayerPlan['stacks'] = LAYER_PLAN.stacks): NativeLayerPlan => ({ groups, stacks });
    const [g0, g1, g2, g3] = LAYER_PLAN.groups;
    for (const [label, plan, message] of [
      ['an unknown linear', variant([{ ...g0, linears: ['self_attn.k_proj', 'self_attn.v_proj', 'self_attn.x_proj'] }, g1, g2, g3]),
        "plan.groups[0].linears[2]: unknown linear 'self_attn.x_proj'"],
      ['an unknown forward point', variant([g0, { ...g1, input: 'rope' }, g2, g3]), "plan.groups[1].input: unknown forward point 'rope'"],
      ['a linear at the wrong point', variant([{ ...g0, linears: [...g0.linears, 'self_attn.o_proj'] }, g1, g2, g3]),
        'plan: group 0 (input_layernorm): self_attn.o_proj reads attention'],
      ['a linear twice', variant([g0, g1, { ...g2, linears: ['mlp.up_proj', 'mlp.up_proj'] }, g3]), 'mlp.up_proj appears twice'],
      ['a linear in no group', variant([g0, g1, { ...g2, linears: ['mlp.up_proj'] }, g3]), 'plan: mlp.gate_proj is in no group'],
      ['groups out of forward order', variant([g1, g0, g2, g3]), 'plan: group 0 (attention): expected forward point input_layernorm'],
      ['three groups', variant([g0, g1, g2]), 'plan: expected 4 groups (one per forward point), got 3'],
      ['another qkv stacking', variant([g0, g1, g2, g3], { ...LAYER_PLAN.stacks, qkv: ['self_attn.k_proj', 'self_attn.q_proj', 'self_attn.v_proj'] }),
        'plan: stacks.qkv must be [self_attn.q_proj, self_attn.k_proj, self_attn.v_proj]'],
      ['another gate/up stacking', variant([g0, g1, g2, g3], { ...LAYER_PLAN.stacks, gateUp: ['mlp.up_proj', 'mlp.gate_proj'] }),
        'plan: stacks.gateUp must be [mlp.gate_proj, mlp.up_proj]'],
    ] as const) {
      test(`native plan check: ${label}`, async () => {
        await expect(cpuQuantizeLayer(w, dims, win(), opts, seq, plan)).rejects.toThrow(message);
      });
    }
  });
});
