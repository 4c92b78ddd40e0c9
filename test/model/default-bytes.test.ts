/**
 * Without a recipe (or with `--recipe default`), branches are byte for byte what they were
 * before recipes existed: golden digests (test/helpers/branch-bytes.ts) of tiny llama2-s builds
 * by `gptq branches` and `gptq quantize`. The digests were first taken over the whole folders
 * with the code of 086f647 (before recipes) and still matched at 3f06724 (with the builtOn of
 * issue 15 left out, which names the device); they were then split into a format digest (every
 * byte but the tensors' values: checked on every host) and a data digest (the tensors' bytes:
 * checked on the host they were recorded on, since another CPU's native build may differ in the
 * last bit; elsewhere the default build's data must still equal the `--recipe default` build's).
 * A change that moves any byte of a default branch (a new metadata or manifest key included)
 * fails here; if it is meant, say why in the commit that updates the digests.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BranchDigests, branchBytesDigests, hostKey } from '../helpers/branch-bytes';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, SHARED, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(300_000);
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-default-bytes-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Format digests: every host. */
const FORMAT: Record<string, string> = {
  'branches/main': '4b7542dcf67be86943a2fe0132705cafbc594e4f1c46822c095af1bd96eb8b67',
  'branches/g128': '5fe9d3fbcb838b0e62b66c467c7b60fce7d09283df1fc5a6f8fc1f032cc5eb93',
  'quantize/q4': '3e5c1e31e8344056bbabb9323952d79d5781fbde24de203eaa0f64e5a722712d',
};
/** Data digests, by the host (hostKey) whose native build recorded them. */
const DATA: Record<string, Record<string, string>> = {
  'Intel(R) Xeon(R) Processor avx512f': {
    'branches/main': '245d1734492f1fb6495be3ce8a6c9a0e5dccd1ec5c9f7c8ad5cae194fbe6d3c1',
    'branches/g128': 'fa015dfd944211477e77734be0c053d84c1ba99283378d72f023c7e43df2d0e5',
    'quantize/q4': 'c8d02dde24b3c9b0adeda16cf233f7d6e521a05ca88a718cccde0e80a4e2b80e',
  },
};
const digests = (dir: string) => branchBytesDigests(dir, { [SHARED]: '<shared>', [tmp]: '<tmp>' });
const here = DATA[hostKey()];
/** The data digest of each build without a recipe, to compare `--recipe default` with where no golden is recorded for this host. */
const plain: Record<string, string> = {};

function check(name: string, got: BranchDigests, recipe: boolean): void {
  if (process.env.GPTQ_FORGE_PRINT_DIGESTS) console.log(JSON.stringify({ host: hostKey(), name, ...got }));
  expect(got.format).toBe(FORMAT[name]);
  if (here) expect(got.data).toBe(here[name]);
  else if (recipe) expect(got.data).toBe(plain[name]);
  else plain[name] = got.data;
}

test.each([[[] as string[]], [['--recipe', 'default']]])('gptq branches %j: default branches are byte-identical to before recipes', (extra) => {
  const matrix = path.join(tmp, 'm.json');
  fs.writeFileSync(matrix, JSON.stringify({
    dataset: WIKI_V1_VALID, split: 'validation', seqlen: 128, nsamples: 2, seed: 0,
    branches: [
      { name: 'main', bits: 4, groupSize: -1, actOrder: true, damp: 0.01 },
      { name: 'g128', bits: 3, groupSize: 128, actOrder: false, damp: 0.01 },
    ],
  }));
  const out = path.join(tmp, `out${extra.length}`);
  const r = runCli(['branches', '--model', LLAMA2_S, '--matrix', matrix, '--out', out, '--device', 'cpu', '--quiet', ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  check('branches/main', digests(path.join(out, 'main')), extra.length > 0);
  check('branches/g128', digests(path.join(out, 'g128')), extra.length > 0);
});

test.each([[[] as string[]], [['--recipe', 'default']]])('gptq quantize %j: the default branch is byte-identical to before recipes', (extra) => {
  const out = path.join(tmp, `q4-${extra.length}`, 'q4'); // quantize names the branch after its folder
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const r = runCli([
    'quantize', '--model', LLAMA2_S, '--out', out, '--bits', '4', '--group-size', '128', '--dataset', WIKI_V1_VALID,
    '--split', 'validation', '--nsamples', '2', '--seqlen', '128', '--device', 'cpu', '--quiet', ...extra,
  ]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  check('quantize/q4', digests(out), extra.length > 0);
});
