/**
 * A branch matrix (configs/*.json): the branches of one GPTQ repository as data. Top-level
 * `dataset`, `split`, `seqlen`, `nsamples` and `seed` are defaults each branch may override;
 * every branch names its `bits`, `groupSize`, `actOrder` and `damp`. `recipe` (top level or per
 * branch, src/gptq/recipes.ts) names a recipe applied where the branch writes no key of its own
 * (so never to `damp`, which every branch writes). Unknown keys are errors
 * (a typo must not silently fall back to a default).
 */
import { UsageError, UserError } from '../errors';
import { REPORT_FILE } from '../eval/report-types';
import { unsafeSegment } from '../hub/safe-names';
import { readJsonFile } from '../io/json-file';
import { SPLITS, Split } from '../data/datasets';
import { isValidBranchName } from './branches-dir';
import { RECIPE_OPTIONS, RecipeKey, recipeProblem } from './recipes';
import { comboProblem, SettingName, settingProblem } from './settings';

export interface CalibrationSpec {
  dataset: string;
  split: Split;
  seqlen: number;
  nsamples: number;
  seed: number;
}

export interface MatrixBranch extends CalibrationSpec {
  name: string;
  bits: number;
  groupSize: number;
  actOrder: boolean;
  damp: number;
  staticGroups: boolean;
  mse: boolean;
  /** QEP's α (src/gptq/settings.ts `qep`); absent: plain GPTQ. */
  qep?: number;
  /** GPTAQ's α (src/gptq/settings.ts `gptaq`); absent: plain GPTQ. */
  gptaq?: number;
  /**
   * The recipe (src/gptq/recipes.ts) of this branch: its own `recipe`, else the top-level one;
   * absent: none. The fields above are the matrix's own values: settingsOf (branches-dir.ts)
   * applies the recipe where the entry did not write the key (`explicit`).
   */
  recipe?: string;
  /** The keys a recipe could set that the matrix entry wrote (they override the recipe). */
  explicit?: readonly RecipeKey[];
}

export interface BranchMatrix {
  source: string;
  description?: string;
  branches: MatrixBranch[];
}

const TOP_KEYS = ['$schema', 'description', 'dataset', 'split', 'seqlen', 'nsamples', 'seed', 'recipe', 'branches'];
const BRANCH_KEYS = [
  'name', 'bits', 'groupSize', 'actOrder', 'damp', 'staticGroups', 'mse', 'qep', 'gptaq', 'recipe', 'dataset', 'split', 'seqlen', 'nsamples', 'seed', 'description',
];
const DEFAULTS = { split: 'train' as Split, nsamples: 128, seed: 0, staticGroups: false, mse: false };


/** Files `gptq report` writes beside the branch folders: no branch may take their names. */
const RESERVED_NAMES = [REPORT_FILE, 'report.md', 'report.svg'];
/** Device names Windows will not create as folders (a branch cloned there could not be checked out). */
const WINDOWS_DEVICES = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$/i;

/**
 * Why a matrix branch name is not usable as the single folder `DIR/<name>` and as a Hub branch,
 * or undefined. `taken` holds the names (lower-cased) of the branches before it: two names that
 * differ only in case share one folder on a case-insensitive file system.
 */
export function branchNameProblem(name: unknown, taken: Set<string>): string | undefined {
  if (typeof name !== 'string') return `expected a branch name (a string), got ${JSON.stringify(name)}`;
  const seg = unsafeSegment(name);
  if (seg) return `${JSON.stringify(name)} is not a single folder name (it ${seg})`;
  if (!isValidBranchName(name)) {
    return `expected a branch name of letters, digits, '.', '_' and '-' (no '..', not ending in '.', .lock or .partial), got ${JSON.stringify(name)}`;
  }
  if (RESERVED_NAMES.includes(name.toLowerCase())) return `"${name}" is the name of a file gptq report writes beside the branches`;
  if (WINDOWS_DEVICES.test(name)) return `"${name}" is a device name on Windows; a folder of that name cannot be created there`;
  if (taken.has(name.toLowerCase())) return `"${name}" differs from another branch only in case (they would share one folder on a case-insensitive file system)`;
  return undefined;
}

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseMatrix(json: unknown, source: string): BranchMatrix {
  const fail = (where: string, msg: string): never => {
    throw new UserError(`${source}: ${where}${where ? ': ' : ''}${msg}`);
  };
  if (!isObject(json)) return fail('', 'a branch matrix must be a JSON object with a "branches" array');
  checkKeys(json, TOP_KEYS, '', fail);
  if (!Array.isArray(json.branches) || json.branches.length === 0) {
    return fail('branches', 'expected a non-empty array of branches');
  }
  const top = json;
  const names = new Set<string>();
  const lowered = new Set<string>();
  const branches = json.branches.map((b: unknown, i: number): MatrixBranch => {
    const at = `branches[${i}]`;
    if (!isObject(b)) return fail(at, `expected an object, got ${JSON.stringify(b)}`);
    checkKeys(b, BRANCH_KEYS, at, fail);
    const pick = (key: string): unknown => (b[key] !== undefined ? b[key] : top[key]);
    const where = (key: string) => (b[key] !== undefined ? `${at}.${key}` : key);
    // The name becomes a folder and a Hub branch: a bad one is a usage error (exit 2), before any work.
    if (typeof b.name === 'string' && names.has(b.name)) throw new UsageError(`${source}: ${at}.name: "${b.name}" appears twice`);
    const bad = branchNameProblem(b.name, lowered);
    if (bad) throw new UsageError(`${source}: ${at}.name: ${bad}`);
    const name = b.name as string;
    names.add(name);
    lowered.add(name.toLowerCase());
    // Each setting's one rule (settings.ts), worded with the matrix's place of the value.
    const setting = (key: SettingName, value: unknown = b[key], label = `${at}.${key}`): void => {
      const problem = settingProblem(key, value, `${source}: ${label}`);
      if (problem !== undefined) throw new UserError(problem);
    };
    setting('bits');
    setting('groupSize');
    const actOrder = b.actOrder;
    if (typeof actOrder !== 'boolean') return fail(`${at}.actOrder`, `expected true or false, got ${JSON.stringify(actOrder)}`);
    setting('damp');
    const bits = b.bits as number, groupSize = b.groupSize as number, damp = b.damp as number;
    const flag = (key: 'staticGroups' | 'mse'): boolean => {
      const v = b[key] ?? DEFAULTS[key];
      return typeof v === 'boolean' ? v : fail(`${at}.${key}`, `expected true or false, got ${JSON.stringify(v)}`);
    };
    const staticGroups = flag('staticGroups');
    // QEP's and GPTAQ's α are optional: absent is plain GPTQ.
    if (b.qep !== undefined) setting('qep');
    if (b.gptaq !== undefined) setting('gptaq');
    const qep = b.qep as number | undefined, gptaq = b.gptaq as number | undefined;
    // The refused combinations of settings.ts (gptaq with qep, static groups without groups),
    // worded with the matrix's keys.
    const combo = comboProblem({ groupSize, staticGroups, qep, gptaq }, (k) => `${at}.${k}`);
    if (combo !== undefined) throw new UserError(`${source}: ${combo}`);
    const dataset = pick('dataset');
    if (typeof dataset !== 'string' || dataset.length === 0) {
      return fail(where('dataset'), `expected a dataset name or file, got ${JSON.stringify(dataset)}`);
    }
    const split = pick('split') ?? DEFAULTS.split;
    if (!SPLITS.includes(split as Split)) return fail(where('split'), `expected one of ${SPLITS.join(', ')}, got ${JSON.stringify(split)}`);
    const int = (key: 'seqlen' | 'nsamples' | 'seed'): number => {
      const v = pick(key) ?? (key === 'seqlen' ? undefined : DEFAULTS[key]);
      setting(key, v, where(key));
      return v as number;
    };
    const recipe = pick('recipe');
    if (recipe !== undefined) {
      const problem = recipeProblem(recipe);
      if (problem !== undefined) return fail(where('recipe'), problem);
    }
    return {
      name, bits, groupSize, actOrder, damp, staticGroups, mse: flag('mse'),
      ...(qep !== undefined ? { qep } : {}),
      ...(gptaq !== undefined ? { gptaq } : {}),
      ...(recipe !== undefined ? { recipe: recipe as string } : {}),
      explicit: (Object.keys(RECIPE_OPTIONS) as RecipeKey[]).filter((k) => b[k] !== undefined),
      dataset, split: split as Split, seqlen: int('seqlen'), nsamples: int('nsamples'), seed: int('seed'),
    };
  });
  const description = typeof json.description === 'string' ? json.description : undefined;
  return { source, description, branches };
}

function checkKeys(o: Obj, allowed: string[], at: string, fail: (w: string, m: string) => never): void {
  for (const key of Object.keys(o)) {
    if (!allowed.includes(key)) fail(at, `unknown key "${key}" (allowed: ${allowed.filter((k) => k !== '$schema').join(', ')})`);
  }
}

export async function loadMatrix(file: string): Promise<BranchMatrix> {
  const json = await readJsonFile(file);
  if (json === undefined) throw new UserError(`--matrix ${file}: no such file`);
  return parseMatrix(json, file);
}

/** The branches named by `--only` (comma-separated), in the matrix's order; all without it. */
export function selectBranches(m: BranchMatrix, only?: string): MatrixBranch[] {
  if (only === undefined) return m.branches;
  const wanted = only.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (wanted.length === 0) throw new UserError('--only needs at least one branch name');
  const known = new Set(m.branches.map((b) => b.name));
  const unknown = wanted.filter((w) => !known.has(w));
  if (unknown.length > 0) {
    throw new UserError(`--only: unknown branch ${unknown.map((u) => `"${u}"`).join(', ')}; ${m.source} has ${[...known].join(', ')}`);
  }
  return m.branches.filter((b) => wanted.includes(b.name));
}
