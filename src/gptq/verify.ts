/**
 * Checks one GPTQ branch: structure (config, quantize_config, tensor names, dtypes, shapes),
 * g_idx consistency, file and tensor sha256 against its manifest, and — given the base model —
 * each linear's dequantized weight error against round-to-nearest on the same grid.
 */
import * as path from 'node:path';
import { UserError } from '../errors';
import { readJsonFile } from '../io/json-file';
import { WEIGHT_KEY } from '../model/layer-plan';
import { LlamaModel } from '../model/llama-model';
import { LINEARS, LinearName, linearWeight } from '../model/weights';
import { gptqQuantize } from '../native';
import { hashBranch } from './branch-hash';
import { copiedTensorNames } from './branch-writer';
import { gIdxProblem, QUANTIZE_CONFIG_FILE, quantizedTensorNames, quantizedTensorSpecs } from './format';
import { readManifest, Manifest, MANIFEST_FILE } from './manifest';
import { BLOCK_SIZE, linearShape } from './settings';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface LinearError {
  layer: number;
  name: LinearName;
  /** ‖Q − W‖_F / ‖W‖_F of the branch, and of round-to-nearest on the same grid. */
  relError: number;
  rtnRelError: number;
}

/**
 * A GPTQ weight may sit further from W than round-to-nearest does (it trades weight error for
 * output error), but on the same grid it cannot be far worse without something being broken:
 * a clipped or shifted code moves an element by up to a whole grid range. Measured ratios per
 * linear: 1.23–1.90 over the eight seed branches of llama2-s calibrated on only 4 × 256 tokens
 * (the tests' setting; little data makes GPTQ move weights more), 0.83–1.54 on llama2-m
 * branches calibrated on 128 × 4096. 2.5 flags broken branches with a margin over both.
 */
export const MAX_ERROR_RATIO = 2.5;

export async function checkStructure(dir: string, add: (c: Check) => void): Promise<LlamaModel | null> {
  let model: LlamaModel;
  try {
    model = await LlamaModel.open(dir);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    add({ name: 'structure', ok: false, detail: e.message });
    return null;
  }
  const q = model.quantization;
  if (!q) {
    add({ name: 'structure', ok: false, detail: `${dir} has no ${QUANTIZE_CONFIG_FILE} nor quantization_config: not a GPTQ branch` });
    await model.close();
    return null;
  }
  const c = model.config;
  const expected = new Set<string>();
  for (let layer = 0; layer < c.numLayers; layer++) {
    for (const name of LINEARS) {
      const { n, k } = linearShape(c, name);
      for (const t of quantizedTensorSpecs(linearWeight(layer, name).replace(/\.weight$/, ''), k, n, q.bits, q.group_size)) expected.add(t.name);
    }
  }
  const names = model.checkpoint.names();
  const extra = names.filter((t) => !expected.has(t) && /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\./.test(t));
  add({
    name: 'structure', ok: extra.length === 0,
    detail: extra.length === 0
      ? `${q.bits}-bit, group ${q.group_size}, desc_act ${q.desc_act}: every tensor present with its dtype and shape`
      : `unexpected linear tensor(s): ${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ` and ${extra.length - 3} more` : ''}`,
  });
  const qc = await readJsonFile(path.join(dir, QUANTIZE_CONFIG_FILE));
  const inConfig = c.quantization;
  if (qc !== undefined && inConfig) {
    const keys = ['bits', 'group_size', 'desc_act', 'sym', 'static_groups'] as const;
    const differ = keys.filter((key) => JSON.stringify((qc as Record<string, unknown>)[key]) !== JSON.stringify((inConfig as Record<string, unknown>)[key]));
    add({
      name: 'config', ok: differ.length === 0,
      detail: differ.length === 0 ? 'quantize_config.json and config.json agree' : `quantize_config.json and config.json's quantization_config differ in ${differ.join(', ')}`,
    });
  }
  return model;
}

/** g_idx: values in [0, G); k // g without act-order or with static groups; g members per group otherwise. */
export async function checkGIdx(model: LlamaModel, add: (c: Check) => void): Promise<void> {
  const q = model.quantization!;
  const c = model.config;
  const bad: string[] = [];
  for (let layer = 0; layer < c.numLayers; layer++) {
    for (const name of LINEARS) {
      const { k } = linearShape(c, name);
      const t = quantizedTensorNames(linearWeight(layer, name).replace(/\.weight$/, '')).g_idx;
      const buf = await model.checkpoint.read(t);
      const g = new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
      const problem = gIdxProblem(g, k, q.group_size, q.desc_act, q.static_groups);
      if (problem !== undefined) bad.push(`${t}: ${problem}`);
    }
  }
  const actOrder = q.desc_act && !q.static_groups;
  add({
    name: 'g_idx', ok: bad.length === 0,
    detail: bad.length > 0
      ? bad.slice(0, 3).join('; ') + (bad.length > 3 ? `; and ${bad.length - 3} more` : '')
      : actOrder
        // The column order comes from the calibration Hessian's diagonal, which the base alone does not give.
        ? `a grouping of exactly ${q.group_size === -1 ? 'K' : q.group_size} columns per group in every linear (act-order); not checked: that it follows the descending order of the Hessian diagonal (needs the calibration activations)`
        : 'k // group_size in every linear',
  });
}

/** sha256 of every file and tensor against manifest.json (when the branch has one). */
export async function checkManifest(dir: string, add: (c: Check) => void): Promise<Manifest | null> {
  let m: Manifest;
  try {
    m = await readManifest(dir);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    // A branch built elsewhere has no manifest: nothing to check the hashes against.
    const missing = e.message.includes(`has no ${MANIFEST_FILE}`);
    add({ name: 'sha256', ok: missing, detail: missing ? `not checked: no ${MANIFEST_FILE}` : e.message });
    return null;
  }
  const got = await hashBranch(dir);
  const problems: string[] = [];
  const want = new Map(m.files.map((f) => [f.path, f]));
  for (const f of got.files) {
    const w = want.get(f.path);
    if (!w) problems.push(`${f.path} is not in the manifest`);
    else if (w.sha256 !== f.sha256 || w.size !== f.size) problems.push(`${f.path}: sha256 differs from the manifest`);
    want.delete(f.path);
  }
  for (const p of want.keys()) problems.push(`${p} is missing`);
  for (const [t, sha] of Object.entries(m.tensors)) {
    if (got.tensors[t] === undefined) problems.push(`tensor ${t} is missing`);
    else if (got.tensors[t] !== sha) problems.push(`tensor ${t}: sha256 differs from the manifest`);
  }
  add({
    name: 'sha256', ok: problems.length === 0,
    detail: problems.length === 0 ? `${got.files.length} files and ${Object.keys(got.tensors).length} tensors match ${MANIFEST_FILE}` : problems.slice(0, 4).join('; ') + (problems.length > 4 ? `; and ${problems.length - 4} more` : ''),
  });
  return m;
}

/**
 * NaN/Inf in any floating-point tensor of the branch (scales, norms, embeddings, lm_head), by
 * name: counted natively over every tensor.
 */
export async function checkFinite(model: LlamaModel, add: (c: Check) => void, onTensor?: (done: number, total: number) => void): Promise<boolean> {
  const bad = await model.nonFiniteTensors(onTensor);
  add({
    name: 'finite', ok: bad.length === 0,
    detail: bad.length === 0
      ? 'no NaN/Inf in any floating-point tensor'
      : bad.slice(0, 3).map((b) => `tensor ${b.name} has ${b.nonFinite} NaN/Inf value(s)`).join('; ') + (bad.length > 3 ? `; and ${bad.length - 3} more tensor(s)` : ''),
  });
  return bad.length === 0;
}

/**
 * What a branch copies from its base must be the base's, byte for byte: every tensor that is
 * not a decoder linear (embeddings, norms, lm_head) with its dtype and shape; and no tensor
 * the base does not have.
 */
export async function checkCopied(branch: LlamaModel, base: LlamaModel, add: (c: Check) => void): Promise<void> {
  const problems: string[] = [];
  const wanted = copiedTensorNames(base);
  const have = new Set(copiedTensorNames(branch));
  for (const t of wanted) {
    if (!branch.checkpoint.has(t)) {
      problems.push(`tensor ${t} is missing`);
      continue;
    }
    have.delete(t);
    const a = branch.checkpoint.info(t), b = base.checkpoint.info(t);
    if (a.dtype !== b.dtype || a.shape.length !== b.shape.length || a.shape.some((v, i) => v !== b.shape[i])) {
      problems.push(`tensor ${t}: ${a.dtype} [${a.shape.join(', ')}], the base's is ${b.dtype} [${b.shape.join(', ')}]`);
    } else if (!(await branch.checkpoint.read(t)).equals(await base.checkpoint.read(t))) {
      problems.push(`tensor ${t} differs from the base's`);
    }
  }
  // Tensors that are neither a quantized linear's nor the base's (a quantized linear's four are
  // checked by structure).
  for (const t of have) {
    if (!/\.(qweight|qzeros|scales|g_idx)$/.test(t)) problems.push(`tensor ${t} is not in the base`);
  }
  add({
    name: 'copied', ok: problems.length === 0,
    detail: problems.length === 0
      ? `${wanted.length} unquantized tensors (embeddings, norms, lm_head) equal the base's byte for byte`
      : problems.slice(0, 3).join('; ') + (problems.length > 3 ? `; and ${problems.length - 3} more` : ''),
  });
}

/** config.json must be the base's, plus `quantization_config` (every other key, every value). */
export function checkBaseConfig(branch: LlamaModel, base: LlamaModel, add: (c: Check) => void): void {
  const mine = { ...branch.config.raw };
  const had = 'quantization_config' in mine;
  delete mine.quantization_config;
  const theirs = base.config.raw;
  const keys = [...new Set([...Object.keys(mine), ...Object.keys(theirs)])].sort();
  const differ = keys.filter((k) => canonical(mine[k]) !== canonical(theirs[k]));
  const describe = (k: string) => (!(k in mine) ? `${k} is missing` : !(k in theirs) ? `${k} is not in the base's` : `${k} is ${canonical(mine[k])}, the base's ${canonical(theirs[k])}`);
  const problems = [...(had ? [] : ['quantization_config is missing']), ...differ.map(describe)];
  add({
    name: 'base-config', ok: problems.length === 0,
    detail: problems.length === 0
      ? "config.json is the base's plus quantization_config"
      : `config.json differs from the base's: ${problems.slice(0, 4).join('; ')}${problems.length > 4 ? `; and ${problems.length - 4} more` : ''}`,
  });
}

/** JSON with sorted keys, so that key order does not count as a difference. */
function canonical(v: unknown): string {
  if (v === undefined) return 'undefined';
  return JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    : x));
}

/** Each linear's dequantized error against the base, compared with round-to-nearest's. */
export async function checkErrors(branch: LlamaModel, base: LlamaModel, add: (c: Check) => void, onLayer?: (layer: number) => void): Promise<LinearError[]> {
  const q = branch.quantization!;
  const c = branch.config;
  const out: LinearError[] = [];
  const opts = { bits: q.bits, groupSize: q.group_size, actOrder: false, staticGroups: false, sym: q.sym, dampPercent: 0.01, blockSize: BLOCK_SIZE };
  const nonFinite: string[] = [];
  for (let layer = 0; layer < c.numLayers; layer++) {
    let wq, w;
    try {
      // Both refuse a NaN/Inf weight (a scale, a dequantized weight, a norm) by name.
      wq = await branch.layer(layer);
      w = await base.layer(layer);
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      add({ name: 'weights', ok: false, detail: e.message });
      return out;
    }
    for (const name of LINEARS) {
      const key = WEIGHT_KEY[name];
      const { n, k } = linearShape(c, name);
      const rtn = await gptqQuantize(w[key], null, n, k, opts);
      const e = { layer, name, relError: relDiff(wq[key], w[key]), rtnRelError: relDiff(rtn.q, w[key]) };
      if (!Number.isFinite(e.relError) || !Number.isFinite(e.rtnRelError)) nonFinite.push(`layer ${layer} ${name}`);
      out.push(e);
    }
    onLayer?.(layer);
  }
  if (nonFinite.length > 0) {
    add({ name: 'weights', ok: false, detail: `the weight error is not finite in ${nonFinite.slice(0, 3).join(', ')}${nonFinite.length > 3 ? ` and ${nonFinite.length - 3} more` : ''}` });
    return out;
  }
  const worst = out.reduce((a, e) => (e.relError / e.rtnRelError > a.relError / a.rtnRelError ? e : a));
  const ratio = worst.relError / worst.rtnRelError;
  add({
    name: 'weights', ok: ratio <= MAX_ERROR_RATIO,
    detail: `worst ‖Q−W‖/‖W‖ is ${ratio.toFixed(2)}× round-to-nearest's (layer ${worst.layer} ${worst.name}: ${worst.relError.toExponential(3)}); bound ${MAX_ERROR_RATIO}×`,
  });
  return out;
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num / den);
}
