/**
 * Named recipes (`--recipe <name>`, a matrix branch's `"recipe"`): a set of quantizer settings
 * applied on top of a branch's own bits, group size and act-order, as DATA in one place. A
 * recipe's value is taken where the user did not set that setting explicitly (a CLI flag given
 * on the command line, a key written in the matrix branch): explicit settings win. The resolved
 * settings are then checked by the one set of rules (settings.ts validateSettings), and the
 * branch records the recipe's name (`settings.recipe` in manifest.json and the work state,
 * `gptq_forge_recipe` in the weights file's metadata, the model card's Desc column).
 *
 * The `default` recipe is today's behaviour exactly and is not recorded: a branch built with it
 * (or without --recipe) is byte for byte what it was before recipes existed.
 *
 * To add a setting to a recipe: one line in its `set`. To let recipes set a new option: one
 * entry in RECIPE_OPTIONS (its flag, matrix key, how it is applied, where it does not apply).
 */
import { QuantizeSettings } from './settings';

/** What a recipe may set, by its matrix key. */
export interface RecipeValues {
  mse?: boolean;
  qep?: number;
  gptaq?: number;
  damp?: number;
  staticGroups?: boolean;
}
export type RecipeKey = keyof RecipeValues;

export interface Recipe {
  /** What it turns on, for --help and the README. */
  description: string;
  /**
   * Build time against the default recipe, as measured (bench/quality-recipes.js); printed in
   * --help. A recipe that costs more than 2× the default says so here.
   */
  cost: string;
  set: RecipeValues;
}

export interface RecipeOption {
  /** The `gptq quantize` flag that sets it explicitly. */
  flag: string;
  /** The QuantizeSettings attribute (also the quantize command's option attribute). */
  setting: keyof QuantizeSettings;
  /**
   * Why the recipe's value does not apply to this branch (its own settings), or undefined. Such
   * a value is SKIPPED for that branch (it is built without it) and the key is recorded in
   * `settings.recipeSkipped` (and the metadata's `gptq_forge_recipe_skipped`).
   */
  notApplicable?(s: QuantizeSettings): string | undefined;
}

export const RECIPE_OPTIONS: Readonly<Record<RecipeKey, RecipeOption>> = {
  mse: { flag: '--mse', setting: 'mse' },
  qep: {
    flag: '--qep', setting: 'qep',
    notApplicable: (s) => (s.rtn ? 'round-to-nearest has no calibration' : undefined),
  },
  gptaq: {
    flag: '--gptaq', setting: 'gptaq',
    notApplicable: (s) => (s.rtn ? 'round-to-nearest has no calibration' : undefined),
  },
  damp: { flag: '--damp', setting: 'dampPercent' },
  staticGroups: {
    flag: '--static-groups', setting: 'staticGroups',
    notApplicable: (s) => (s.groupSize === -1 ? 'the branch has no groups (group size -1)' : undefined),
  },
};

export const DEFAULT_RECIPE = 'default';

export const RECIPES: Readonly<Record<string, Recipe>> = {
  [DEFAULT_RECIPE]: {
    description: 'plain GPTQ as AutoGPTQ makes it (nothing turned on; not recorded in the branch)',
    cost: '1× (the reference)',
    set: {},
  },
  best: {
    // Chosen from bench/quality-recipes.js on llama2-m, H200, seeds 0-2 (bench/results/quality-recipes-h200.md):
    // the MSE grid and QEP each help on their own and more together; QEP's α stays the authors' 0.5
    // (α 1 goes lower still, further below the fp16 model itself: bench/results/quality-recipes.md);
    // damp 0.1 made 6 of 8 branches worse, static groups 3 of 6, GPTAQ helped less than QEP (and is not
    // combined with it).
    description: 'the measured winners together: the MSE grid search and QEP (α 0.5)',
    cost: '1.84× the default on a Llama-2-70B-shaped layer (H200: 8.51 s against 4.62 s); twice the calibration activations in memory and checkpoints',
    set: { mse: true, qep: 0.5 },
  },
};

export const RECIPE_NAMES: readonly string[] = Object.freeze(Object.keys(RECIPES));

/** `expected one of default, best, got "x"`, or undefined for a known recipe name. */
export function recipeProblem(name: unknown): string | undefined {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(RECIPES, name)
    ? undefined
    : `expected a recipe name, one of ${RECIPE_NAMES.join(', ')}, got ${JSON.stringify(name)}`;
}

/** What a recipe sets, in words: `mse true, qep 0.5`. */
export function recipeSettingsText(r: Recipe): string {
  const parts = (Object.keys(r.set) as RecipeKey[]).map((k) => `${RECIPE_OPTIONS[k].flag.replace(/^--/, '')} ${String(r.set[k])}`);
  return parts.length > 0 ? parts.join(', ') : 'nothing';
}

/** The recipes for --help: one line each, with what it sets and its cost. */
export function recipesHelp(): string {
  return RECIPE_NAMES.map((n) => {
    const r = RECIPES[n];
    return `  ${n}: ${r.description}; sets ${recipeSettingsText(r)}; cost: ${r.cost}`;
  }).join('\n');
}

/**
 * `s` with the recipe `name` applied: each of its values where `explicit(key)` is false and the
 * value applies to the branch (RECIPE_OPTIONS notApplicable); `recipe` (and `recipeSkipped`,
 * the keys that did not apply, comma-separated) recorded. The default recipe (or none) returns
 * `s` itself, unchanged. The caller validates the result (validateSettings).
 */
export function applyRecipe(name: string | undefined, s: QuantizeSettings, explicit: (key: RecipeKey) => boolean): QuantizeSettings {
  if (name === undefined || name === DEFAULT_RECIPE) return s;
  const problem = recipeProblem(name);
  if (problem !== undefined) throw new Error(`applyRecipe: ${problem}`); // callers check names first
  return applyRecipeValues(name, RECIPES[name].set, s, explicit);
}

/** applyRecipe's work for the values `set` recorded under `name` (exported for the tests). */
export function applyRecipeValues(name: string, set: RecipeValues, s: QuantizeSettings, explicit: (key: RecipeKey) => boolean): QuantizeSettings {
  let out: QuantizeSettings = { ...s };
  const skipped: string[] = [];
  for (const key of Object.keys(set) as RecipeKey[]) {
    const opt = RECIPE_OPTIONS[key];
    if (explicit(key)) continue;
    if (opt.notApplicable?.(s) !== undefined) {
      skipped.push(key);
      continue;
    }
    out = { ...out, [opt.setting]: set[key] };
  }
  return { ...out, recipe: name, ...(skipped.length > 0 ? { recipeSkipped: skipped.join(',') } : {}) };
}

/** For an error about settings a recipe may have set: ` (recipe best sets mse true, qep 0.5)`, or '' without one. */
export function recipeContext(name: string | undefined): string {
  return name === undefined || name === DEFAULT_RECIPE || recipeProblem(name) !== undefined
    ? '' : ` (recipe ${name} sets ${recipeSettingsText(RECIPES[name])})`;
}
