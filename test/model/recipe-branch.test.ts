/**
 * `--recipe` on llama2-s (CPU engine, tiny calibration): the branch records its recipe in the
 * manifest, the weights file's metadata and the model card, with the recipe's settings; an
 * explicit flag overrides the recipe's value; an unknown name is one usage error (exit 2); a
 * matrix build interrupted under one recipe is not resumed under another.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Manifest } from '../../src/gptq/manifest';
import { RECIPE_NAMES, RECIPE_OPTIONS, RecipeKey, RECIPES } from '../../src/gptq/recipes';
import { commitTitle, describeBranch } from '../../src/hub/model-card';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';
import { runKilled } from '../helpers/work-folder';

jest.setTimeout(300_000);
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-recipe-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const NAME = 'best';
const calib = ['--dataset', WIKI_V1_VALID, '--split', 'validation', '--nsamples', '2', '--seqlen', '128', '--device', 'cpu', '--quiet'];
const quantize = (out: string, ...extra: string[]) =>
  runCli(['quantize', '--model', LLAMA2_S, '--out', out, '--bits', '3', '--group-size', '128', ...calib, ...extra]);
const readJson = (...p: string[]) => JSON.parse(fs.readFileSync(path.join(...p), 'utf8'));

test(`quantize --recipe ${NAME}: recorded in the manifest, the metadata and the card, with the recipe's settings`, async () => {
  const out = path.join(tmp, 'r');
  const r = quantize(out, '--recipe', NAME);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(`recipe ${NAME}`);
  const m: Manifest = readJson(out, 'manifest.json');
  expect(m.settings.recipe).toBe(NAME);
  for (const [k, v] of Object.entries(RECIPES[NAME].set) as [RecipeKey, unknown][]) expect(m.settings[RECIPE_OPTIONS[k].setting]).toBe(v);
  expect(describeBranch(m)).toContain(`Recipe \`${NAME}\``);
  expect(commitTitle(m)).toContain(`recipe ${NAME}`);
  const f = await SafetensorsFile.open(path.join(out, 'model.safetensors'));
  try {
    expect(f.metadata.gptq_forge_recipe).toBe(NAME);
    expect(f.metadata.gptq_forge_recipe_skipped).toBeUndefined();
  } finally {
    await f.close();
  }
  expect(runCli(['verify', out, '--quiet']).code).toBe(0);
});

test('an explicit flag overrides the recipe\'s value', () => {
  const out = path.join(tmp, 'o');
  const r = quantize(out, '--recipe', NAME, '--damp', '0.05', '--qep', '0.25');
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const s = (readJson(out, 'manifest.json') as Manifest).settings;
  expect(s).toMatchObject({ recipe: NAME, dampPercent: 0.05, qep: 0.25 });
});

test.each([['quantize'], ['branches']])('%s --recipe with an unknown name: one usage error listing the recipes, exit 2', (cmd) => {
  const r = runCli([cmd, '--model', LLAMA2_S, '--out', path.join(tmp, 'x'), '--matrix', 'configs/llama-2-70b-gptq.json', '--dataset', 'd', '--recipe', 'nope']);
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toContain(`one of ${RECIPE_NAMES.join(', ')}, got "nope"`);
  expect(fs.existsSync(path.join(tmp, 'x'))).toBe(false);
});

test('--resume refuses a work folder made under another recipe', async () => {
  const matrix = path.join(tmp, 'm.json');
  fs.writeFileSync(matrix, JSON.stringify({
    dataset: WIKI_V1_VALID, split: 'validation', seqlen: 256, nsamples: 8,
    branches: [{ name: 'q3', bits: 3, groupSize: 128, actOrder: true, damp: 0.01 }],
  }));
  const out = path.join(tmp, 'killed'), work = path.join(out, 'q3.partial');
  const args = ['branches', '--model', LLAMA2_S, '--matrix', matrix, '--out', out, '--device', 'cpu', '--checkpoint-every', '0', '--quiet'];
  const first = await runKilled(args, { work, layers: 1 });
  expect(first.signal).toBe('SIGKILL');
  expect('recipe' in readJson(work, 'state.json').settings).toBe(false);
  const r = runCli([...args, '--resume', '--recipe', NAME]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/cannot continue: other settings \([^)]*recipe[^)]*\)/);
  expect(fs.existsSync(work)).toBe(true);
});
