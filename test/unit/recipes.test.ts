/**
 * Recipes (src/gptq/recipes.ts): the data obey the settings' rules, explicit settings override
 * a recipe, a value that does not apply to a branch is skipped and recorded, the default recipe
 * changes nothing, the matrix's "recipe" key is validated in its error style, and a work folder
 * made with another recipe is not resumed. Expectations are derived from RECIPES, not repeated.
 */
import { UserError } from '../../src/errors';
import { WorkState } from '../../src/gptq/branch-work';
import { resumeMismatch, settingsOf } from '../../src/gptq/branches-dir';
import { parseMatrix } from '../../src/gptq/matrix';
import {
  applyRecipe, applyRecipeValues, DEFAULT_RECIPE, RECIPE_NAMES, RECIPE_OPTIONS, RecipeKey, RECIPES, recipeProblem, recipesHelp,
} from '../../src/gptq/recipes';
import { comboProblem, QuantizeSettings, settingProblem, SETTING_RULES, SettingName } from '../../src/gptq/settings';

const s: QuantizeSettings = { bits: 3, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true, rtn: false };
const none = () => false;
const named = RECIPE_NAMES.filter((n) => n !== DEFAULT_RECIPE);

test('every recipe has a description and a cost, shown in the help text; its values obey the settings\' rules', () => {
  expect(RECIPE_NAMES).toContain(DEFAULT_RECIPE);
  expect(RECIPES[DEFAULT_RECIPE].set).toEqual({});
  const help = recipesHelp();
  for (const n of RECIPE_NAMES) {
    const r = RECIPES[n];
    expect(r.description.length).toBeGreaterThan(0);
    expect(r.cost.length).toBeGreaterThan(0);
    expect(help).toContain(`${n}: ${r.description}`);
    expect(help).toContain(`cost: ${r.cost}`);
    for (const [key, v] of Object.entries(r.set) as [RecipeKey, unknown][]) {
      expect(RECIPE_OPTIONS[key]).toBeDefined();
      if (key in SETTING_RULES) expect(settingProblem(key as SettingName, v)).toBeUndefined();
      else expect(typeof v).toBe('boolean');
    }
  }
});

test('the default recipe (or none) returns the settings themselves: nothing recorded', () => {
  expect(applyRecipe(undefined, s, none)).toBe(s);
  expect(applyRecipe(DEFAULT_RECIPE, s, none)).toBe(s);
});

test.each(named)('recipe %s: its values applied and its name recorded; explicit settings win', (name) => {
  const set = RECIPES[name].set;
  const got = applyRecipe(name, s, none);
  expect(got.recipe).toBe(name);
  for (const [key, v] of Object.entries(set) as [RecipeKey, unknown][]) expect(got[RECIPE_OPTIONS[key].setting]).toBe(v);
  const keys = Object.keys(set) as RecipeKey[];
  const kept = applyRecipe(name, s, () => true);
  for (const key of keys) expect(kept[RECIPE_OPTIONS[key].setting]).toBe(s[RECIPE_OPTIONS[key].setting]);
  expect(kept.recipe).toBe(name);
});

test('a value that does not apply to the branch is skipped and recorded; the rest apply; the result passes the combo rule', () => {
  const got = applyRecipeValues('t', { staticGroups: true, mse: true, qep: 0.5 }, { ...s, groupSize: -1 }, none);
  expect(got).toMatchObject({ staticGroups: false, mse: true, qep: 0.5, recipe: 't', recipeSkipped: 'staticGroups' });
  expect(comboProblem(got)).toBeUndefined();
  const rtn = applyRecipeValues('t', { staticGroups: true, qep: 0.5 }, { ...s, rtn: true }, none);
  expect(rtn).toMatchObject({ staticGroups: true, recipeSkipped: 'qep' });
  expect(rtn.qep).toBeUndefined();
  expect(comboProblem(rtn)).toBeUndefined();
  expect('recipeSkipped' in applyRecipeValues('t', { staticGroups: true }, s, none)).toBe(false);
});

test('unknown names: one message listing the known recipes', () => {
  expect(recipeProblem('nope')).toBe(`expected a recipe name, one of ${RECIPE_NAMES.join(', ')}, got "nope"`);
  expect(recipeProblem(3)).toMatch(/got 3$/);
  for (const n of RECIPE_NAMES) expect(recipeProblem(n)).toBeUndefined();
  expect(recipeProblem('toString')).toBeDefined();
});

const branch = { name: 'b', bits: 3, groupSize: 128, actOrder: true, damp: 0.01 };
const matrix = (extra: object, top: object = {}) => parseMatrix({ dataset: 'd.txt', seqlen: 8, ...top, branches: [branch, { ...branch, name: 'c', ...extra }] }, 'm.json');

test('matrix "recipe": per branch or top level, validated with the file, branch index and key', () => {
  expect(() => matrix({ recipe: 'nope' })).toThrow(UserError);
  expect(() => matrix({ recipe: 'nope' })).toThrow(`m.json: branches[1].recipe: ${recipeProblem('nope')}`);
  expect(() => matrix({}, { recipe: 7 })).toThrow(`m.json: recipe: ${recipeProblem(7)}`);
  const m = matrix({ recipe: DEFAULT_RECIPE }, { recipe: named[0] });
  expect(m.branches.map((b) => b.recipe)).toEqual([named[0], DEFAULT_RECIPE]);
  expect(settingsOf(m.branches[0])).toEqual(applyRecipe(named[0], settingsOf({ ...m.branches[0], recipe: undefined }), (k) => k === 'damp'));
  expect(settingsOf(m.branches[1])).toEqual(settingsOf({ ...m.branches[1], recipe: undefined }));
  expect('recipe' in settingsOf(matrix({}).branches[1])).toBe(false);
});

test('matrix keys the branch writes override its recipe (damp always: every branch writes it)', () => {
  const name = named[0];
  const keys = Object.keys(RECIPES[name].set) as RecipeKey[];
  const own: Record<RecipeKey, number | boolean> = { mse: false, staticGroups: false, qep: 0.25, gptaq: 0.5, damp: 0.02 };
  const m = matrix({ recipe: name, ...Object.fromEntries(keys.map((k) => [k, own[k]])) });
  const got = settingsOf(m.branches[1]);
  for (const k of keys) expect(got[RECIPE_OPTIONS[k].setting]).toBe(own[k]);
  expect(got.recipe).toBe(name);
});

test('a work folder made with another recipe (or none) is not resumed', () => {
  const name = named[0];
  const b = matrix({ recipe: name }).branches[1];
  const st = { branch: 'c', settings: settingsOf({ ...b, recipe: undefined }), base: { fingerprint: 'f' }, calibration: { digest: 'd' }, device: 'cpu', numLayers: 4 } as unknown as WorkState;
  const want = { branch: 'c', settings: settingsOf(b), fingerprint: 'f', digest: 'd', device: 'cpu', numLayers: 4 };
  expect(resumeMismatch(st, want)).toMatch(/^other settings \(.*recipe.*\)$/);
  expect(resumeMismatch({ ...st, settings: settingsOf(b) }, want)).toBeUndefined();
});
