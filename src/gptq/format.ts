/**
 * The AutoGPTQ "gptq" (v1) checkpoint format as data: quantize_config.json, the safetensors
 * `__metadata__`, the names, dtypes and shapes of a quantized linear's tensors, and g_idx.
 *
 * Followed: AutoGPTQ (the last `main`, which has `checkpoint_format`):
 * - auto_gptq/quantization/config.py, `BaseQuantizeConfig`: fields, defaults (bits 4,
 *   group_size −1, damp_percent 0.01, desc_act true, static_groups false, sym true,
 *   true_sequential true, quant_method "gptq", checkpoint_format "gptq"), validation
 *   (bits ∈ {2, 3, 4, 8}; group_size −1 or > 0; 0 < damp_percent < 1) and `to_dict()`, whose
 *   key order QuantizeConfig keeps. `from_quant_config` lower-cases keys, maps the synonyms
 *   w_bit / q_group_size, infers a missing checkpoint_format as "gptq", reads quant_method
 *   "marlin" or is_marlin_format as the Marlin format and ignores unknown keys; so does
 *   parseQuantizeConfig (which then refuses every format but v1 "gptq").
 * - auto_gptq/modeling/_base.py, `save_quantized`: quantize_config.json is `json.dump(to_dict(),
 *   indent=2)`; config.json gets the same dict as `quantization_config` (written by transformers,
 *   which sorts keys); AutoGPTQ sets model_name_or_path to the save folder and
 *   model_file_base_name to "model" (its default with safetensors) before writing
 *   quantize_config.json. The safetensors metadata is in safetensorsMetadata below.
 * - TheBloke's Llama-2 GPTQ branches (made with older AutoGPTQ): quantize_config.json has
 *   bits, group_size, damp_percent, desc_act, static_groups (later ones), sym,
 *   true_sequential, model_name_or_path null, model_file_base_name "model", and no quant_method
 *   or checkpoint_format; config.json's quantization_config adds "quant_method": "gptq".
 *
 * GPTQModel (gptqmodel/quantization/config.py) differs: the same "checkpoint_format" key (its
 * code calls it `format`) may be "gptq_v2" (zeros stored without the −1), and it moves
 * damp_percent, static_groups and true_sequential into a "meta" object (with "quantizer",
 * "uri", "damp_auto_increment", "mse"), adds "pack_dtype", "lm_head", "dynamic". We write
 * AutoGPTQ's flat form; when reading, a missing top-level value is taken from "meta".
 */
import { UserError } from '../errors';
import type { TensorSpec } from '../io/safetensors-header';
import { checkSetting, SUPPORTED_BITS } from './settings';

export { SUPPORTED_BITS };

// eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json lies outside rootDir (src/), so it cannot be imported
const VERSION = (require('../../package.json') as { version: string }).version;

export const QUANTIZE_CONFIG_FILE = 'quantize_config.json';

/** quantize_config.json of AutoGPTQ, keys in `BaseQuantizeConfig.to_dict()` order. */
export interface QuantizeConfig {
  bits: number;
  group_size: number;
  damp_percent: number;
  desc_act: boolean;
  static_groups: boolean;
  sym: boolean;
  true_sequential: boolean;
  model_name_or_path: string | null;
  model_file_base_name: string;
  quant_method: 'gptq';
  checkpoint_format: 'gptq';
}

export interface QuantizeConfigOptions {
  bits: number;
  /** −1: one group of all K columns. */
  groupSize: number;
  dampPercent: number;
  /** desc_act. */
  actOrder: boolean;
  staticGroups: boolean;
  sym: boolean;
  trueSequential: boolean;
  modelNameOrPath: string | null;
  modelFileBaseName: string;
}

// The rules are src/gptq/settings.ts's (one per setting, shared with the CLI and the matrix);
// here they are worded with quantize_config.json's keys, and a bad file is a UserError (exit 1).
function checkBits(bits: unknown, where: string): number {
  return checkSetting('bits', bits, `${where}bits`, UserError) as number;
}

function checkGroupSize(g: unknown, where: string): number {
  return checkSetting('groupSize', g, `${where}group_size`, UserError) as number;
}

function checkDamp(d: unknown, where: string): number {
  return checkSetting('damp', d, `${where}damp_percent`, UserError) as number;
}

/** The config a quantization run writes, validated as AutoGPTQ's `__post_init__` does. */
export function makeQuantizeConfig(opts: QuantizeConfigOptions): QuantizeConfig {
  if (opts.modelFileBaseName.length === 0) throw new UserError('model_file_base_name must not be empty');
  return {
    bits: checkBits(opts.bits, ''),
    group_size: checkGroupSize(opts.groupSize, ''),
    damp_percent: checkDamp(opts.dampPercent, ''),
    desc_act: opts.actOrder,
    static_groups: opts.staticGroups,
    sym: opts.sym,
    true_sequential: opts.trueSequential,
    model_name_or_path: opts.modelNameOrPath,
    model_file_base_name: opts.modelFileBaseName,
    quant_method: 'gptq',
    checkpoint_format: 'gptq',
  };
}

const SYNONYMS: Record<string, string> = { w_bit: 'bits', q_group_size: 'group_size' };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Reads quantize_config.json, or config.json's quantization_config (`source` names it in
 * errors). Only AutoGPTQ v1 ("gptq") checkpoints are accepted; bits and group_size are required,
 * everything else takes AutoGPTQ's defaults.
 */
export function parseQuantizeConfig(json: unknown, source: string): QuantizeConfig {
  const where = `${source}: `;
  if (!isObject(json)) throw new UserError(`${where}the quantization config must be a JSON object`);
  const raw: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    const k = key.toLowerCase();
    raw[SYNONYMS[k] ?? k] = value;
  }
  const meta = isObject(raw.meta) ? raw.meta : {};
  const str = (key: string): string | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new UserError(`${where}${key} must be a string, got ${JSON.stringify(v)}`);
    return v.toLowerCase();
  };

  const version = raw.version; // AutoAWQ's marker ("GEMM"), which AutoGPTQ reads as AWQ
  const method = typeof version === 'string' && version.toLowerCase() === 'gemm' ? 'awq' : str('quant_method') ?? 'gptq';
  if (method !== 'gptq' && method !== 'marlin') {
    throw new UserError(`${where}quant_method '${method}' is not supported (only 'gptq')`);
  }
  const marlin = method === 'marlin' || raw.is_marlin_format === true;
  const format = marlin ? 'marlin' : str('checkpoint_format') ?? 'gptq';
  if (format !== 'gptq') {
    throw new UserError(
      `${where}checkpoint_format '${format}' is not supported (only AutoGPTQ's v1 'gptq' format)`,
    );
  }

  const value = (key: string): unknown => (raw[key] !== undefined ? raw[key] : meta[key]);
  const bool = (key: string, dflt: boolean): boolean => {
    const v = value(key);
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') throw new UserError(`${where}${key} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };
  if (raw.bits === undefined) throw new UserError(`${where}bits is missing`);
  if (raw.group_size === undefined) throw new UserError(`${where}group_size is missing`);
  const damp = value('damp_percent');
  const name = raw.model_name_or_path;
  if (name !== undefined && name !== null && typeof name !== 'string') {
    throw new UserError(`${where}model_name_or_path must be a string or null, got ${JSON.stringify(name)}`);
  }
  const base = raw.model_file_base_name;
  if (base !== undefined && base !== null && (typeof base !== 'string' || base.length === 0)) {
    throw new UserError(`${where}model_file_base_name must be a non-empty string or null, got ${JSON.stringify(base)}`);
  }
  return {
    bits: checkBits(raw.bits, where),
    group_size: checkGroupSize(raw.group_size, where),
    damp_percent: damp === undefined || damp === null ? 0.01 : checkDamp(damp, where),
    desc_act: bool('desc_act', true),
    static_groups: bool('static_groups', false),
    sym: bool('sym', true),
    true_sequential: bool('true_sequential', true),
    model_name_or_path: name ?? null,
    model_file_base_name: base ?? 'model',
    quant_method: 'gptq',
    checkpoint_format: 'gptq',
  };
}

/**
 * Python's `repr` / `str` of a float (shortest round-trip digits, as JS; but exponent form
 * below 1e-4 and from 1e16, "e-05" exponents, and ".0" on integral values).
 */
export function pythonFloat(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mantissa, expText] = x.toExponential().split('e');
  const e = Number(expText);
  const sign = x < 0 ? '-' : '';
  const digits = mantissa.replace('-', '').replace('.', '');
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  if (e < 0) return `${sign}0.${'0'.repeat(-e - 1)}${digits}`;
  if (digits.length <= e + 1) return `${sign}${digits}${'0'.repeat(e + 1 - digits.length)}.0`;
  return `${sign}${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
}

/**
 * The `__metadata__` of the weights file, as AutoGPTQ's `save_quantized` writes it (same keys,
 * order and Python `str()` conversions: "True"/"False", "0.01", "-1"), except that where it
 * writes `auto_gptq_version` (str(auto_gptq.__version__)) we write `gptq_forge_version`: the
 * file was not made by AutoGPTQ and no reader needs that key (accelerate/transformers need
 * only "format": "pt").
 */
export function safetensorsMetadata(cfg: QuantizeConfig, version: string = VERSION): Record<string, string> {
  return {
    format: 'pt',
    gptq_forge_version: version,
    gptq_bits: String(cfg.bits),
    gptq_group_size: String(cfg.group_size),
    gptq_desc_act: cfg.desc_act ? 'True' : 'False',
    gptq_damp_percent: pythonFloat(cfg.damp_percent),
    gptq_checkpoint_format: cfg.checkpoint_format,
    gptq_quant_method: cfg.quant_method,
  };
}

export interface QuantizedTensorNames {
  qweight: string;
  qzeros: string;
  scales: string;
  g_idx: string;
}

/**
 * The tensors of a quantized linear `prefix` (e.g. "model.layers.0.self_attn.q_proj"); its
 * `.weight` is not stored. AutoGPTQ's QuantLinear registers a `bias` buffer only when the
 * original Linear had one (`make_quant`: bias = submodule.bias is not None): Llama's linears
 * have none, so no bias is written.
 */
export function quantizedTensorNames(prefix: string): QuantizedTensorNames {
  return {
    qweight: `${prefix}.qweight`,
    qzeros: `${prefix}.qzeros`,
    scales: `${prefix}.scales`,
    g_idx: `${prefix}.g_idx`,
  };
}

/** G: the number of groups, ceil(K / group_size) as AutoGPTQ's QuantLinear; 1 without groups. */
export function numGroups(k: number, groupSize: number): number {
  return groupSize === -1 ? 1 : Math.ceil(k / groupSize);
}

/**
 * dtypes and shapes of a quantized linear with K inputs and N outputs, in the order
 * qweight, qzeros, scales, g_idx: I32 [K·bits/32, N], I32 [G, N·bits/32], F16 [G, N], I32 [K].
 */
export function quantizedTensorSpecs(
  prefix: string, k: number, n: number, bits: number, groupSize: number,
): TensorSpec[] {
  checkBits(bits, '');
  checkGroupSize(groupSize, '');
  for (const [what, v] of [['in_features (K)', k], ['out_features (N)', n]] as const) {
    if (!Number.isInteger(v) || v <= 0 || v % 32 !== 0) {
      throw new UserError(`${prefix}: ${what} = ${v} is not a positive multiple of 32, which AutoGPTQ packing needs`);
    }
  }
  const g = numGroups(k, groupSize);
  const names = quantizedTensorNames(prefix);
  return [
    { name: names.qweight, dtype: 'I32', shape: [(k * bits) / 32, n] },
    { name: names.qzeros, dtype: 'I32', shape: [g, (n * bits) / 32] },
    { name: names.scales, dtype: 'F16', shape: [g, n] },
    { name: names.g_idx, dtype: 'I32', shape: [k] },
  ];
}

/**
 * The problem with one linear's g_idx [K] (original column order), or undefined: the format's
 * rule, for checking a stored branch (src/gptq/verify.ts). g_idx itself is computed by the solver
 * (native/kernels/common/gptq_math.h gf::g_idx_of, both engines; docs/gptq.md "g_idx") and
 * written as it comes: TS never derives its own. With g = group size (K when −1):
 * - every entry is a group in [0, G);
 * - no act-order, or act-order with static groups: g_idx[k] = k // g;
 * - act-order without static groups: the column quantized i-th is in group i // g, so, the
 *   order being the calibration Hessian's, every group has exactly g members.
 */
export function gIdxProblem(
  gIdx: ArrayLike<number>, k: number, groupSize: number, actOrder: boolean, staticGroups: boolean,
): string | undefined {
  const groups = numGroups(k, groupSize);
  const size = groupSize === -1 ? k : groupSize;
  const counts = new Int32Array(groups);
  for (let i = 0; i < k; i++) {
    const g = gIdx[i];
    if (!(g >= 0 && g < groups)) return `g_idx[${i}] = ${g} is outside [0, ${groups})`;
    if ((!actOrder || staticGroups) && g !== Math.floor(i / size)) {
      return `g_idx[${i}] = ${g}, expected ${Math.floor(i / size)} (no act-order or static groups)`;
    }
    counts[g]++;
  }
  const off = counts.findIndex((n) => n !== size);
  return off >= 0 ? `group ${off} has ${counts[off]} columns, expected ${size}` : undefined;
}
