/**
 * The settings of one GPTQ branch, checked against the model before any work starts; and the
 * rule for each setting (bits, group size, damping, calibration window length, sample count,
 * seed, and the combinations that are refused), in ONE place: the CLI (src/cli/main.ts checks
 * every command's flags with them before its action runs), the matrix (src/gptq/matrix.ts) and
 * the format (src/gptq/format.ts, quantize_config.json) all word their errors with these.
 */
import { UsageError, UserError } from '../errors';
import { LlamaConfig } from '../model/config';
import { LINEARS, LinearName } from '../model/weights';
import { GptqOptions } from '../native';

/** AutoGPTQ's `BaseQuantizeConfig` accepts these bit widths only. */
export const SUPPORTED_BITS: readonly number[] = [2, 3, 4, 8];

/** The names of the checked settings: the CLI's option attribute names (commander camelCase). */
export type SettingName = 'bits' | 'groupSize' | 'damp' | 'qep' | 'gptaq' | 'seqlen' | 'nsamples' | 'seed' | 'maxWindows';

export interface SettingRule {
  /** The CLI flag. */
  flag: string;
  /** The key in a branch matrix entry (configs/*.json). */
  matrixKey: string;
  /** The key in quantize_config.json, where the format has one. */
  configKey?: string;
  /** What is accepted, as it reads after "must be". */
  expected: string;
  ok(v: unknown): boolean;
}

const isInt = (v: unknown, min: number): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;

export const SETTING_RULES: Readonly<Record<SettingName, SettingRule>> = {
  bits: {
    flag: '--bits', matrixKey: 'bits', configKey: 'bits', expected: '2, 3, 4 or 8',
    ok: (v) => typeof v === 'number' && SUPPORTED_BITS.includes(v),
  },
  groupSize: {
    flag: '--group-size', matrixKey: 'groupSize', configKey: 'group_size', expected: '-1 or a positive integer',
    ok: (v) => v === -1 || isInt(v, 1),
  },
  damp: {
    // AutoGPTQ: `if not (0 < self.damp_percent < 1)`; the same interval for 0 and for 1.
    flag: '--damp', matrixKey: 'damp', configKey: 'damp_percent', expected: 'between 0 and 1 (exclusive), e.g. 0.01',
    ok: (v) => typeof v === 'number' && v > 0 && v < 1,
  },
  qep: {
    // QEP's propagation strength α (Arai & Ichikawa's perccorr): 0 would be plain GPTQ, 1 the
    // full correction; the authors' code uses 0.5. Not part of AutoGPTQ's format.
    flag: '--qep', matrixKey: 'qep', expected: 'a number in (0, 1] (QEP\'s α, e.g. 0.5)',
    ok: (v) => typeof v === 'number' && v > 0 && v <= 1,
  },
  gptaq: {
    // GPTAQ's α (Li et al.'s fasterquant(alpha)): the scale of its asymmetric term P; 0 would be
    // plain GPTQ; the authors' code uses 0.25. Not part of AutoGPTQ's format.
    flag: '--gptaq', matrixKey: 'gptaq', expected: 'a number in (0, 1] (GPTAQ\'s α, e.g. 0.25)',
    ok: (v) => typeof v === 'number' && v > 0 && v <= 1,
  },
  seqlen: {
    // a window of L tokens has L − 1 next-token targets
    flag: '--seqlen', matrixKey: 'seqlen', expected: 'an integer ≥ 2', ok: (v) => isInt(v, 2),
  },
  nsamples: { flag: '--nsamples', matrixKey: 'nsamples', expected: 'an integer ≥ 1', ok: (v) => isInt(v, 1) },
  seed: { flag: '--seed', matrixKey: 'seed', expected: 'an integer ≥ 0', ok: (v) => isInt(v, 0) },
  maxWindows: { flag: '--max-windows', matrixKey: 'maxWindows', expected: 'an integer ≥ 1', ok: (v) => isInt(v, 1) },
};

/** A value as it appears in a message: numbers as given (never a computed fraction), others as JSON. */
function shown(v: unknown): string {
  return typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v);
}

/**
 * The problem with `value` for `name`, worded `<label> must be <expected>, got <value>`, or
 * undefined when the value is valid. `label` names the setting where it came from: the flag
 * (default), `m.json: branches[0].bits`, `quantize_config.json: damp_percent`.
 */
export function settingProblem(name: SettingName, value: unknown, label: string = SETTING_RULES[name].flag): string | undefined {
  const rule = SETTING_RULES[name];
  return rule.ok(value) ? undefined : `${label} must be ${rule.expected}, got ${shown(value)}`;
}

/** Throws (a UsageError by default: exit 2) when `value` breaks the rule of `name`; returns it otherwise. */
export function checkSetting<T>(
  name: SettingName, value: T, label?: string, ErrorClass: new (m: string) => Error = UsageError,
): T {
  const problem = settingProblem(name, value, label);
  if (problem !== undefined) throw new ErrorClass(problem);
  return value;
}

/** The combinations of settings that are refused, whatever the model (`label` maps a setting to its name in messages). */
export interface SettingCombo {
  groupSize: number;
  staticGroups?: boolean;
  sym?: boolean;
  rtn?: boolean;
  qep?: number;
  gptaq?: number;
}

type ComboKey = 'staticGroups' | 'sym' | 'groupSize' | 'qep' | 'gptaq' | 'rtn';

export function comboProblem(s: SettingCombo, label: (key: ComboKey) => string = cliLabel): string | undefined {
  if (s.qep !== undefined && s.rtn) {
    return `${label('qep')} needs calibration (it corrects GPTQ's target from the fp16 model's activations); ${label('rtn')} has none`;
  }
  if (s.gptaq !== undefined && s.rtn) {
    return `${label('gptaq')} needs calibration (its solve fits the fp16 model's activations); ${label('rtn')} has none`;
  }
  if (s.gptaq !== undefined && s.qep !== undefined) {
    // Both fit Ŵ X to W X̃: QEP by moving W to the least-squares target first, GPTAQ inside the
    // solve. Together the same mismatch would be corrected twice (no reference does that).
    return `${label('gptaq')} and ${label('qep')} both fit the quantized model to the fp16 model's activations (QEP moves W first, GPTAQ changes the solve); use one of them`;
  }
  if (s.sym === false) {
    // AutoGPTQ stores zero − 1 in the v1 ('gptq') format and refuses asymmetric grids for it
    // too: a zero point of 0 underflows and reads back as 2^bits. The solver supports them.
    return `${label('sym')}: asymmetric grids cannot be stored faithfully in the AutoGPTQ v1 ("gptq") format (a zero point of 0 underflows); use --sym`;
  }
  if (s.staticGroups && s.groupSize === -1) {
    return `${label('staticGroups')} needs a group size (${label('groupSize')} > 0), got ${label('groupSize')} -1`;
  }
  return undefined;
}

function cliLabel(key: ComboKey): string {
  return { staticGroups: '--static-groups', sym: '--no-sym', groupSize: '--group-size', qep: '--qep', gptaq: '--gptaq', rtn: '--rtn' }[key];
}

/**
 * The problem with a group size (or the AutoGPTQ packing) for this model's linears, or
 * undefined: `<label> 7 does not divide in_features 256 of model.layers.0.self_attn.q_proj`.
 * Never a computed fraction of groups. Every layer has the same shapes, so layer 0 is named.
 */
export function shapeProblem(groupSize: number, c: LlamaConfig, label = '--group-size'): string | undefined {
  for (const name of LINEARS) {
    const { n, k } = linearShape(c, name);
    const linear = `model.layers.0.${name}`;
    if (groupSize !== -1 && k % groupSize !== 0) {
      return `${label} ${groupSize} does not divide in_features ${k} of ${linear}`;
    }
    // AutoGPTQ packs 32 codes per `bits` int32 words along K, and zeros along N.
    if (k % 32 !== 0 || n % 32 !== 0) {
      return `${linear} is ${n}×${k} (out_features × in_features): the AutoGPTQ format needs both to be multiples of 32`;
    }
  }
  return undefined;
}

export const BLOCK_SIZE = 128;

/** The solver's options for these settings (either engine). */
export function solverOptions(s: QuantizeSettings): GptqOptions {
  return {
    bits: s.bits, groupSize: s.groupSize, actOrder: s.actOrder, staticGroups: s.staticGroups,
    sym: s.sym, mse: !!s.mse, dampPercent: s.dampPercent, blockSize: BLOCK_SIZE,
  };
}

/** The solver's options (GptqOptions, less the fixed block size) plus the pipeline's. */
export interface QuantizeSettings extends Omit<GptqOptions, 'blockSize'> {
  trueSequential: boolean;
  /** Round-to-nearest on the same grid, no Hessians: the baseline GPTQ is measured against. */
  rtn?: boolean;
  /**
   * QEP's α (docs/gptq.md, "QEP"): GPTQ quantizes W* = W + α W C (H + λI)⁻¹ of the linears in
   * QEP_CORRECTED, with C from the fp16 model's activations. Absent: plain GPTQ (the key is then
   * left out of manifests and work states, which stay as they were before QEP existed).
   */
  qep?: number;
  /**
   * The recipe the settings came from (src/gptq/recipes.ts), and the recipe's keys that did not
   * apply to this branch (comma-separated). Absent for the default recipe, as `qep`.
   */
  recipe?: string;
  recipeSkipped?: string;
  /**
   * GPTAQ's α (docs/gptq.md, "GPTAQ"): every linear's GPTQ solve also takes C = 2/n Σ (X̃ − X)ᵀ X
   * through P = α triu₁(C Uᵀ) U, fitting Ŵ X to the fp16 model's W X̃. Absent: plain GPTQ (the
   * key is then left out of manifests and work states). Not with qep.
   */
  gptaq?: number;
}

/** GPTAQ's α when `--gptaq` is given without a value (the authors' fasterquant default). */
export const GPTAQ_DEFAULT_ALPHA = 0.25;

/** The CPU layer call's GPTAQ config for these settings (null: plain GPTQ). */
export function gptaqConfig(s: QuantizeSettings): { alpha: number } | null {
  return s.gptaq === undefined ? null : { alpha: s.gptaq };
}

/**
 * Whether the build carries the fp16 model's activations beside the quantized path's: QEP and
 * GPTAQ both fit the quantized layer to them (twice the calibration activations).
 */
export function needsFpPath(s: QuantizeSettings): boolean {
  return s.qep !== undefined || s.gptaq !== undefined;
}

/** QEP's α when `--qep` is given without a value (the authors' code's perccorr default). */
export const QEP_DEFAULT_ALPHA = 0.5;

/**
 * The linears whose weights QEP corrects: all but down_proj, as the authors' code
 * (QEPConfig.exclude_layer_keywords = ["mlp.down_proj"]). down_proj is still quantized by GPTQ
 * on its quantized-path Hessian, and the fp16 path still runs through it.
 */
export const QEP_CORRECTED: readonly LinearName[] = Object.freeze(LINEARS.filter((l) => l !== 'mlp.down_proj'));

/** The CPU layer call's QEP config for these settings (null: plain GPTQ). */
export function qepConfig(s: QuantizeSettings): { alpha: number; linears: readonly LinearName[] } | null {
  return s.qep === undefined ? null : { alpha: s.qep, linears: QEP_CORRECTED };
}

/** Input width K and output width N of each linear of a decoder layer. */
export function linearShape(c: LlamaConfig, name: LinearName): { n: number; k: number } {
  const qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
  switch (name) {
    case 'self_attn.q_proj': return { n: qd, k: c.hiddenSize };
    case 'self_attn.k_proj':
    case 'self_attn.v_proj': return { n: kvd, k: c.hiddenSize };
    case 'self_attn.o_proj': return { n: c.hiddenSize, k: qd };
    case 'mlp.gate_proj':
    case 'mlp.up_proj': return { n: c.intermediateSize, k: c.hiddenSize };
    case 'mlp.down_proj': return { n: c.hiddenSize, k: c.intermediateSize };
  }
}

/**
 * All checks of a quantization's settings against the model, before any work: each setting's
 * rule, the refused combinations, and the shapes. Usage errors (exit 2), naming the flag.
 */
export function validateSettings(s: QuantizeSettings, c: LlamaConfig): void {
  checkSetting('bits', s.bits);
  checkSetting('groupSize', s.groupSize);
  checkSetting('damp', s.dampPercent);
  if (s.qep !== undefined) checkSetting('qep', s.qep);
  if (s.gptaq !== undefined) checkSetting('gptaq', s.gptaq);
  const combo = comboProblem(s);
  if (combo !== undefined) throw new UsageError(combo);
  const shape = shapeProblem(s.groupSize, c);
  if (shape !== undefined) throw new UsageError(shape);
}

/**
 * A GPTQ branch's quantize_config against its own config.json (a file's contents, not a flag:
 * a UserError, exit 1): `source` names the file, e.g.
 * "b/quantize_config.json: group_size 7 does not divide in_features 256 of model.layers.0.self_attn.q_proj".
 * For LlamaModel.open, before it computes the shapes of the quantized tensors.
 */
export function checkBranchShapes(groupSize: number, c: LlamaConfig, source: string): void {
  const problem = shapeProblem(groupSize, c, `${source}: group_size`);
  if (problem !== undefined) throw new UserError(problem.startsWith(source) ? problem : `${source}: ${problem}`);
}
