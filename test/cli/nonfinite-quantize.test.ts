/**
 * `gptq quantize` and `gptq branches` never copy a NaN/Inf into a branch: a tensor the branch
 * takes from its base unchanged (lm_head, the final norm, any other non-linear tensor) is
 * refused by name, before anything is written under the output name.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { expectOnlyError } from '../helpers/hostile';
import { copyFolder, F16_INF, F16_NAN, hashTree, setF16 } from '../helpers/nonfinite-fixtures';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(180_000);

let tmp: string;
let cache: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-nonfinite-quantize-'));
  cache = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-nonfinite-quantize-cache-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(cache, { recursive: true, force: true });
});

const calib = ['--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--device', 'cpu', '--quiet'];

/** A copy of llama2-s, in its own folder, with one fp16 element of `name` set to `bits`. */
function brokenModel(label: string, name: string, bits: number): { root: string; model: string } {
  const root = path.join(tmp, label);
  const model = copyFolder(LLAMA2_S, path.join(root, 'model'));
  setF16(model, name, 11, bits);
  return { root, model };
}

/** exit 1, one `gptq: error:` line, no stack; only the output may change, and it is not written. */
function expectRefused(args: string[], root: string, out: string, pattern: RegExp, outputFolder = out): void {
  const outside = () => Object.fromEntries(Object.entries(hashTree(root))
    .filter(([f]) => !path.join(root, f).startsWith(`${outputFolder}${path.sep}`)));
  const before = outside();
  const shared = hashTree(LLAMA2_S);
  const r = runCli(args, { env: { GPTQ_FORGE_CACHE: cache } });
  expectOnlyError(r, 1, pattern);
  expect(fs.existsSync(out)).toBe(false);
  // Nothing outside the output folder changed, and no temporary folder is left beside it.
  expect(outside()).toEqual(before);
  expect(hashTree(LLAMA2_S)).toEqual(shared);
}

test.each([
  ['lm_head.weight', F16_NAN],
  ['model.norm.weight', F16_NAN],
  ['model.norm.weight', F16_INF],
])('quantize: a non-finite %s is refused by name, no branch written', (name, bits) => {
  const { root, model } = brokenModel(`q-${name}-${bits}`, name, bits);
  const out = path.join(root, 'out');
  expectRefused(['quantize', '--model', model, '--out', out, '--bits', '4', '--group-size', '128', ...calib], root, out,
    new RegExp(`weight ${name.replace(/\./g, '\\.')} has 1 NaN/Inf value`));
});

test('branches: a NaN in lm_head is refused by name before any layer, no branch written', () => {
  const { root, model } = brokenModel('b-lm_head', 'lm_head.weight', F16_NAN);
  const matrix = path.join(tmp, 'matrix-b.json');
  fs.writeFileSync(matrix, JSON.stringify({
    branches: [{ name: 'b4', bits: 4, groupSize: 128, actOrder: false, damp: 0.01, dataset: WIKI_V1_VALID, seqlen: 128, nsamples: 2 }],
  }));
  const out = path.join(root, 'out');
  // Its resumable work folder (out/b4.partial) is the output folder's business; out/b4 is not written.
  expectRefused(['branches', '--model', model, '--matrix', matrix, '--out', out, '--device', 'cpu', '--quiet'], root, path.join(out, 'b4'),
    /weight lm_head\.weight has 1 NaN\/Inf value/, out);
});
