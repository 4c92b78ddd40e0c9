/**
 * QEP through the addon: the cross term and the weight correction against TypeScript fp64
 * references of their formulas, and the CPU layer call with QEP (alpha → 0 is plain GPTQ bit
 * for bit; the first group's solve is GPTQ on W* of that group's own H and C; the fp16 path
 * leaves the unquantized layer's outputs; argument errors).
 */
import { LAYER_PLAN } from '../../src/model/layer-plan';
import { QEP_CORRECTED } from '../../src/gptq/settings';
import {
  cpuQuantizeLayer, CpuLayerWindows, crossTerm, decoderLayer, f32ArrayToF16, f16ToF32, GptqOptions, gptqQuantize,
  LayerWeightsF32, NativeDims, qepCorrect, xtx,
} from '../../src/native';
import { lcg } from '../helpers/lcg';

const U32 = 2 ** -24;
const rand = (n: number, scale: number, seed: number) => {
  const r = lcg(seed);
  return Float32Array.from({ length: n }, () => scale * r());
};

/** fp64 (Xf − X)ᵀ X and Σ|(Xf − X)·X| per entry. */
function crossRef(xf: Float32Array, x: Float32Array, t: number, k: number) {
  const c = new Float64Array(k * k), abs = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      for (let s = 0; s < t; s++) {
        const p = (xf[s * k + i] - x[s * k + i]) * x[s * k + j];
        c[i * k + j] += p;
        abs[i * k + j] += Math.abs(p);
      }
    }
  }
  return { c, abs };
}

describe('crossTerm', () => {
  test('blocked fp32 and the fp64 loop against (Xf − X)ᵀX in fp64, within (T + 3)·u32·Σ|d·x|', async () => {
    for (const [t, k] of [[9, 5], [300, 130]]) {
      const x = rand(t * k, 2, 1), xf = x.map((v, i) => v + 0.1 * Math.sin(i));
      const ref = crossRef(xf, x, t, k);
      for (const reference of [false, true]) {
        const c = await crossTerm(xf, x, t, k, reference);
        const over = Array.from(c).flatMap((v, i) => (Math.abs(v - ref.c[i]) <= (t + 3) * U32 * ref.abs[i] + 2 * U32 * Math.abs(ref.c[i]) ? [] : [i]));
        expect([t, k, reference, over]).toEqual([t, k, reference, []]);
      }
    }
  });
});

/** TypeScript fp64 W* = W + α W_live C (H_d + λI)⁻¹ (dead columns: diag H = 0 → 1, out of W·C), and A⁻¹. */
function correctRef(w: Float32Array, h: Float32Array, c: Float32Array, n: number, k: number, alpha: number, damp: number) {
  const A = Float64Array.from(h);
  const dead: boolean[] = [];
  let mean = 0;
  for (let i = 0; i < k; i++) {
    dead.push(A[i * k + i] === 0);
    if (dead[i]) A[i * k + i] = 1;
    mean += A[i * k + i];
  }
  for (let i = 0; i < k; i++) A[i * k + i] += damp * (mean / k);
  // A⁻¹ by Gauss-Jordan (A is SPD).
  const M = Float64Array.from(A), inv = new Float64Array(k * k);
  for (let i = 0; i < k; i++) inv[i * k + i] = 1;
  for (let col = 0; col < k; col++) {
    const p = M[col * k + col];
    for (let j = 0; j < k; j++) { M[col * k + j] /= p; inv[col * k + j] /= p; }
    for (let i = 0; i < k; i++) {
      if (i === col) continue;
      const f = M[i * k + col];
      for (let j = 0; j < k; j++) { M[i * k + j] -= f * M[col * k + j]; inv[i * k + j] -= f * inv[col * k + j]; }
    }
  }
  const out = new Float64Array(n * k), tol = new Float64Array(n * k);
  for (let r = 0; r < n; r++) {
    const R = new Float64Array(k), dR = new Float64Array(k);
    for (let j = 0; j < k; j++) {
      for (let p = 0; p < k; p++) {
        if (dead[p]) continue;
        R[j] += w[r * k + p] * c[p * k + j];
        dR[j] += Math.abs(w[r * k + p] * c[p * k + j]);
      }
      dR[j] *= (k + 2) * U32; // the fp32 GEMM's error bound
    }
    for (let i = 0; i < k; i++) {
      let d = 0, e = 0, f = 0;
      for (let j = 0; j < k; j++) {
        d += R[j] * inv[j * k + i];
        e += dR[j] * Math.abs(inv[j * k + i]);
        f += Math.abs(R[j] * inv[j * k + i]);
      }
      out[r * k + i] = w[r * k + i] + alpha * d;
      // fp32 W·C carried through |A⁻¹|, the fp64 solves, and W*'s rounding to fp32 (u32 each side)
      tol[r * k + i] = alpha * (e + 1e3 * k * 2 ** -53 * f) + 2 * U32 * Math.abs(out[r * k + i]);
    }
  }
  return { out, tol, dead };
}

describe('qepCorrect', () => {
  const n = 6, k = 12, t = 40;
  const x = rand(t * k, 2, 2), xf = x.map((v, i) => v + 0.2 * Math.cos(3 * i));
  for (let s = 0; s < t; s++) x[s * k + 4] = 0; // a dead column of the quantized path
  const w = rand(n * k, 0.5, 3);
  let h: Float32Array, c: Float32Array;
  beforeAll(async () => {
    h = (await xtx(x, t, k, true)).map((v) => 2 * v / 1);
    c = (await crossTerm(xf, x, t, k, true)).map((v) => 2 * v);
  });

  test('both routes equal the fp64 formula within the fp32 product\'s error carried through (H + λI)⁻¹', async () => {
    for (const alpha of [0.5, 1]) {
      const ref = correctRef(w, h, c, n, k, alpha, 0.01);
      expect(ref.dead[4]).toBe(true);
      for (const reference of [false, true]) {
        const r = await qepCorrect(w, h, c, n, k, alpha, 0.01, reference);
        expect([r.dampPercent, r.dampRaises]).toEqual([Math.fround(0.01), 0]);
        const over = Array.from(r.w).flatMap((v, i) => (Math.abs(v - ref.out[i]) <= ref.tol[i] ? [] : [i]));
        expect([alpha, reference, over]).toEqual([alpha, reference, []]);
        // The dead column is left as it was; elsewhere W moves.
        for (let row = 0; row < n; row++) expect(r.w[row * k + 4]).toBe(w[row * k + 4]);
        expect(Math.max(...r.w.map((v, i) => Math.abs(v - w[i])))).toBeGreaterThan(1e-3);
      }
    }
  });

  test('alpha 0 leaves W bit for bit; arguments are checked before the call', async () => {
    expect(Array.from((await qepCorrect(w, h, c, n, k, 0, 0.01, false)).w)).toEqual(Array.from(w));
    await expect(qepCorrect(w, h, c, n, k, 1.5, 0.01, false)).rejects.toThrow('alpha: expected a number in [0, 1], got 1.5');
    await expect(qepCorrect(w, h, c.subarray(1), n, k, 0.5, 0.01, false)).rejects.toThrow('C: expected 144 elements, got 143');
  });
});

// ---- the CPU layer call with QEP ----
const dims: NativeDims = { hidden: 64, ffn: 128, heads: 4, kvHeads: 2, headDim: 16, eps: 1e-5, ropeTheta: 10000, round16: true };
const S = 16;
const qd = dims.heads * dims.headDim;
const opts: GptqOptions = { bits: 3, groupSize: 32, actOrder: true, staticGroups: false, sym: true, dampPercent: 0.01, blockSize: 128 };

/** A layer's weights, fp16 values as a checkpoint's (so that W* rounded to fp16 is W when α → 0). */
async function weights(seed: number): Promise<LayerWeightsF32> {
  const r = lcg(seed);
  const m = (len: number, scale: number, mean = 0) => Float32Array.from({ length: len }, () => mean + scale * r());
  const H = dims.hidden, F = dims.ffn, kvd = dims.kvHeads * dims.headDim;
  const w: LayerWeightsF32 = {
    inputNorm: m(H, 0.2, 1), q: m(qd * H, 0.3), k: m(kvd * H, 0.3), v: m(kvd * H, 0.3), o: m(H * qd, 0.3),
    postNorm: m(H, 0.2, 1), gate: m(F * H, 0.3), up: m(F * H, 0.3), down: m(H * F, 0.3),
  };
  for (const key of Object.keys(w) as (keyof LayerWeightsF32)[]) w[key] = await f16ToF32((await f32ArrayToF16(w[key])).bits);
  return w;
}

/** n windows; with `drift`, QEP's fp16 path enters with x + drift·noise (as after quantized layers). */
async function windows(n: number, seed: number, drift?: number): Promise<CpuLayerWindows> {
  const r = lcg(seed);
  const x = await Promise.all(Array.from({ length: n }, async () => {
    const a = Float32Array.from({ length: S * dims.hidden }, () => 2 * r());
    return f16ToF32((await f32ArrayToF16(a)).bits); // fp16 values, as the engine keeps them
  }));
  const scratch = (width: number) => x.map(() => new Float32Array(S * width));
  const win: CpuLayerWindows = { x, att: scratch(qd), h1: scratch(dims.hidden), seqlen: S };
  if (drift !== undefined) {
    const xf = await Promise.all(x.map(async (a) => f16ToF32((await f32ArrayToF16(a.map((v) => v + drift * r()))).bits)));
    Object.assign(win, { xf, attf: scratch(qd), h1f: scratch(dims.hidden) });
  }
  return win;
}

let w: LayerWeightsF32;
beforeAll(async () => {
  w = await weights(7);
});
const seq = { rtn: false, trueSequential: true };
const same = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('cpuQuantizeLayer with QEP', () => {
  for (const trueSequential of [true, false]) {
    test(`alpha → 0 (1e-12) is plain GPTQ bit for bit${trueSequential ? '' : ', without true-sequential'}`, async () => {
      const plain = await windows(2, 11), withQep = await windows(2, 11, 0.05);
      const a = await cpuQuantizeLayer(w, dims, plain, opts, { rtn: false, trueSequential }, LAYER_PLAN);
      const b = await cpuQuantizeLayer(w, dims, withQep, opts, { rtn: false, trueSequential, qep: { alpha: 1e-12, linears: QEP_CORRECTED } }, LAYER_PLAN);
      for (const [i, la] of a.linears.entries()) {
        const lb = b.linears[i];
        expect([la.name, same(la.codes, lb.codes), same(la.scales, lb.scales), la.loss]).toEqual([lb.name, true, true, lb.loss]);
      }
      plain.x.forEach((x, i) => expect(same(x, withQep.x[i])).toBe(true));
    });
  }

  test('the fp16 path leaves the unquantized layer\'s outputs (decoderLayer with the original weights)', async () => {
    const win = await windows(2, 12, 0.05);
    const xf0 = win.xf!.map((a) => a.slice());
    await cpuQuantizeLayer(w, dims, win, opts, { ...seq, qep: { alpha: 0.5, linears: QEP_CORRECTED } }, LAYER_PLAN);
    await decoderLayer(xf0, w, dims, S);
    xf0.forEach((x, i) => expect(same(x, win.xf![i])).toBe(true));
  });

  test('alpha 0.5: the first group is GPTQ on W* = fp16(W + α W C (H + λI)⁻¹) of its own H and C', async () => {
    // One window without fp16 rounding: H = 2·XᵀX and C = 2·(X̃ − X)ᵀX exactly as add_batch_cross
    // gives them for X = input_layernorm(x), X̃ = input_layernorm(x̃), computed here as the kernel does.
    const d = { ...dims, round16: false };
    const win = await windows(1, 13, 0.1);
    const norm = (x: Float32Array) => {
      const H = d.hidden, out = new Float32Array(S * H), f = Math.fround;
      for (let t = 0; t < S; t++) {
        let ss = 0;
        for (let i = 0; i < H; i++) ss = f(ss + f(x[t * H + i] * x[t * H + i]));
        const inv = f(1 / f(Math.sqrt(f(f(ss / H) + d.eps))));
        for (let i = 0; i < H; i++) out[t * H + i] = f(f(x[t * H + i] * inv) * w.inputNorm[i]);
      }
      return out;
    };
    const X = norm(win.x[0]), Xf = norm(win.xf![0]);
    const h = (await xtx(X, S, d.hidden, false)).map((v) => 2 * v);
    const c = (await crossTerm(Xf, X, S, d.hidden, false)).map((v) => 2 * v);
    const r = await cpuQuantizeLayer(w, d, win, opts, { ...seq, qep: { alpha: 0.5, linears: QEP_CORRECTED } }, LAYER_PLAN);
    const plain = await cpuQuantizeLayer(w, d, await windows(1, 13), opts, seq, LAYER_PLAN);
    for (const [name, key] of [['self_attn.k_proj', 'k'], ['self_attn.v_proj', 'v'], ['self_attn.q_proj', 'q']] as const) {
      const l = r.linears.find((x) => x.name === name)!;
      const star = await qepCorrect(w[key], h, c, l.n, l.k, 0.5, opts.dampPercent, false);
      const star16 = await f16ToF32((await f32ArrayToF16(star.w)).bits);
      const ref = await gptqQuantize(star16, h, l.n, l.k, opts);
      expect([name, same(l.codes, ref.codes), same(l.scales, ref.scales), l.loss]).toEqual([name, true, true, ref.loss]);
      // …and QEP did change what GPTQ fitted.
      expect(same(l.codes, plain.linears.find((x) => x.name === name)!.codes)).toBe(false);
    }
  });

  test('argument errors: the fp16 path\'s windows with qep, alpha, linears, rtn', async () => {
    const q = { alpha: 0.5, linears: QEP_CORRECTED };
    await expect(cpuQuantizeLayer(w, dims, await windows(1, 14), opts, { ...seq, qep: q }, LAYER_PLAN)).rejects.toThrow('windows.xf: expected 1 windows (as x), got undefined');
    const win = await windows(1, 14, 0.1);
    await expect(cpuQuantizeLayer(w, dims, { ...win, h1f: [new Float32Array(3)] }, opts, { ...seq, qep: q }, LAYER_PLAN))
      .rejects.toThrow(`windows.h1f[0]: expected ${S * dims.hidden} elements, got 3`);
    await expect(cpuQuantizeLayer(w, dims, win, opts, { ...seq, qep: { ...q, alpha: 2 } }, LAYER_PLAN)).rejects.toThrow('config.qep.alpha: expected a number in [0, 1], got 2');
    await expect(cpuQuantizeLayer(w, dims, null, opts, { rtn: true, trueSequential: true, qep: q }, LAYER_PLAN)).rejects.toThrow('config.qep: expected null with rtn');
    // A name only the native side knows to refuse.
    await expect(cpuQuantizeLayer(w, dims, win, opts, { ...seq, qep: { alpha: 0.5, linears: ['mlp.x_proj'] } }, LAYER_PLAN))
      .rejects.toThrow("config.qep.linears[0]: unknown linear 'mlp.x_proj'");
  });
});
