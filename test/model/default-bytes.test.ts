/**
 * Without a recipe (or with `--recipe default`), branches are byte for byte what they were
 * before recipes existed: golden digests (test/helpers/branch-bytes.ts) of tiny llama2-s builds
 * by `gptq branches` and `gptq quantize`. The digests were first taken over the whole folders
 * with the code of 086f647 (before recipes) and still matched at 3f06724 (with the builtOn of
 * issue 15 left out, which names the device); they were then split into a format digest (every
 * byte but the tensors' values: checked on every host) and a data digest (the tensors' bytes:
 * checked on the host they were recorded on, since another CPU's native build may differ in the
 * last bit; elsewhere the default build's data must still equal the `--recipe default` build's).
 * The manifest's sha256 of model.safetensors counts as data (a CI host with another CPU failed
 * the format digest on it alone); hostKey names the CPU's flags, since the addon is built with
 * -march=native. An x86-64-v2 build on the recording host passes the format digests and fails
 * its data digests, as it should. The manifest's sizes and hashes of the raw text files count
 * for neither (config.json names the model's path, so they moved with where the checkout and
 * ../shared lay, and CI failed on that next); a clone under a longer path, with another TMPDIR,
 * gives the same digests.
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
  'branches/main': '30108d7955ef67f1b0d15ad65bddb2d66d94d68d4a3159a35e27ea35687575da',
  'branches/g128': 'bef85fc29bea3f6e9cbaf7b63db3b0200d59063dc44cb77996fc8669dd38e2c6',
  'quantize/q4': 'e47524fd9befc21d992b28a17e5459ec9cd034185381812b25b48b4e73b66b01',
};
/** Data digests, by the host (hostKey) whose native build recorded them. */
const DATA: Record<string, Record<string, string>> = {
  'Intel(R) Xeon(R) Processor flags:86d9ce9c09e4': {
    'branches/main': '057ee4d6f10df5532dcdd23b87edbe145819631f6dc13bb320f152db19f6e662',
    'branches/g128': '3ddef756fe59f7ccf1be0d3d0b91ade5889276d1ada9df58b959c86639068426',
    'quantize/q4': '4cc6c48a6f20d90de89a7f8669bb0373c3207baab4d04feddca8674601918729',
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
