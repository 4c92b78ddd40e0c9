/**
 * A tiny independent reference of the GPTQ rules (docs/gptq.md), written from the reference's
 * quant.py / gptq.py, not from native/kernels/common/gptq_math.h: fp32 arithmetic through
 * Math.fround after every operation, round half to even, the damping retry, act-order and g_idx
 * as AutoGPTQ builds them. Tests compare the native engines against it.
 */
const f = Math.fround;

/** torch.round: to nearest, ties to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties toward +inf
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface RefGrid { scale: number; zero: number }

/** quant.py find_params (weight=True, perchannel) on one row's slice, without the mse search. */
export function refFindParams(x: ArrayLike<number>, maxq: number, sym: boolean): RefGrid {
  let xmin = 0, xmax = 0; // torch.minimum(x.min(1)[0], 0), torch.maximum(x.max(1)[0], 0)
  for (let i = 0; i < x.length; i++) {
    xmin = Math.min(xmin, x[i]);
    xmax = Math.max(xmax, x[i]);
  }
  if (sym) {
    xmax = Math.max(Math.abs(xmin), xmax);
    if (xmin < 0) xmin = -xmax;
  }
  if (xmin === 0 && xmax === 0) {
    xmin = -1;
    xmax = 1;
  }
  const scale = f(f(xmax - xmin) / maxq);
  const zero = sym ? f((maxq + 1) / 2) : roundHalfEven(f(-xmin / scale)) + 0; // + 0: never −0
  return { scale, zero };
}

/** quant.py quantize: the clamped integer code and scale · (code − zero). */
export function refCode(w: number, g: RefGrid, maxq: number): number {
  return Math.min(Math.max(f(roundHalfEven(f(w / g.scale)) + g.zero), 0), maxq);
}
export function refDequant(code: number, g: RefGrid): number {
  return f(g.scale * f(code - g.zero));
}

/** Σ|quantize(x) − x|^2.4 in fp64: the mse search's objective (for comparing grids, not bits). */
export function refMseError(x: ArrayLike<number>, g: RefGrid, maxq: number): number {
  let e = 0;
  for (let i = 0; i < x.length; i++) e += Math.abs(refDequant(refCode(x[i], g, maxq), g) - x[i]) ** 2.4;
  return e;
}

/**
 * The grids the mse search chooses from: the range shrunk by p = 1 − i/100, i = 0 … 79. `fused`:
 * hi − lo = p·xmax − p·xmin with p·xmax unrounded (one FMA), as the host compiler may contract it
 * (GCC's default -ffp-contract=fast with an FMA-capable -march); p·xmax is exact in fp64.
 */
export function refMseCandidates(x: ArrayLike<number>, maxq: number, sym: boolean, fused = false): RefGrid[] {
  const g0 = refFindParams(x, maxq, sym);
  // The adjusted range back from the unshrunk grid: xmax − xmin = scale · maxq (up to rounding),
  // so recompute it as find_params does.
  let xmin = 0, xmax = 0;
  for (let i = 0; i < x.length; i++) { xmin = Math.min(xmin, x[i]); xmax = Math.max(xmax, x[i]); }
  if (sym) { xmax = Math.max(Math.abs(xmin), xmax); if (xmin < 0) xmin = -xmax; }
  if (xmin === 0 && xmax === 0) { xmin = -1; xmax = 1; }
  const out: RefGrid[] = [];
  for (let i = 0; i < 80; i++) {
    const p = f(1 - f(i / 100));
    const lo = f(p * xmin), hi = f(p * xmax);
    const scale = f(f(fused ? p * xmax - lo : hi - lo) / maxq);
    out.push({ scale, zero: sym ? g0.zero : roundHalfEven(f(-lo / scale)) + 0 });
  }
  return out;
}

/** The damping values tried, in order: the asked one, then doubled (0 → 1 %), at most 10 raises. */
export function refDampSequence(dampPercent: number): number[] {
  const seq = [f(dampPercent)];
  for (let i = 0; i < 10; i++) {
    const d = seq[seq.length - 1];
    seq.push(d > 0 ? f(d * 2) : f(0.01));
  }
  return seq;
}

/** actorder: torch.argsort(torch.diag(H), descending=True), stable (ties in natural order). */
export function refActOrderPerm(diag: ArrayLike<number>): Int32Array {
  const idx = Array.from({ length: diag.length }, (_, i) => i);
  idx.sort((a, b) => (diag[b] - diag[a]) || a - b);
  return Int32Array.from(idx);
}

/**
 * AutoGPTQ's GPTQ.fasterquant g_idx: built in permuted order (i // g, or perm[i] // g with static
 * groups) and indexed with invperm; g = K without groups. perm null: no act-order.
 */
export function refGIdx(k: number, groupSize: number, perm: Int32Array | null, staticGroups: boolean): Int32Array {
  const gs = groupSize === -1 ? k : groupSize;
  const order = perm ?? Int32Array.from({ length: k }, (_, i) => i);
  const permuted = Int32Array.from({ length: k }, (_, i) => Math.floor((staticGroups ? order[i] : i) / gs));
  const invperm = new Int32Array(k);
  order.forEach((p, i) => (invperm[p] = i));
  return Int32Array.from({ length: k }, (_, c) => permuted[invperm[c]]);
}
