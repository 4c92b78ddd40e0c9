/**
 * Without a recipe (or with `--recipe default`), branches are byte for byte what they were
 * before recipes existed: golden digests (test/helpers/branch-bytes.ts) of tiny llama2-s builds
 * by `gptq branches` and `gptq quantize`, computed with the code of 086f647 (before recipes).
 * A change that moves any byte of a default branch (a new metadata or manifest key included)
 * fails here; if it is meant, say why in the commit that updates the digests.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { branchBytesDigest } from '../helpers/branch-bytes';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, SHARED, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(300_000);
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-default-bytes-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const GOLDEN: Record<string, string> = {
  'branches/main': '6c2d9da23c0e9d0073a1e1627d31b1fe22be265bb01451bea4ac017697f2f4c0',
  'branches/g128': '4ec7d05c5c3b4af6f960452587f178c2ac9669c9ac4bbadf398451f9060053c5',
  'quantize/q4': '02309945159f5823f5a07e4268592f3a8284572e5395b17c1f0bb39ce14fc1f7',
};
const digest = (dir: string) => branchBytesDigest(dir, { [SHARED]: '<shared>', [tmp]: '<tmp>' });

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
  const got = { 'branches/main': digest(path.join(out, 'main')), 'branches/g128': digest(path.join(out, 'g128')) };
  expect(got).toEqual({ 'branches/main': GOLDEN['branches/main'], 'branches/g128': GOLDEN['branches/g128'] });
});

test.each([[[] as string[]], [['--recipe', 'default']]])('gptq quantize %j: the default branch is byte-identical to before recipes', (extra) => {
  const out = path.join(tmp, 'q4'); // quantize names the branch after its folder
  const r = runCli([
    'quantize', '--model', LLAMA2_S, '--out', out, '--bits', '4', '--group-size', '128', '--dataset', WIKI_V1_VALID,
    '--split', 'validation', '--nsamples', '2', '--seqlen', '128', '--device', 'cpu', '--quiet', ...extra,
  ]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(digest(out)).toBe(GOLDEN['quantize/q4']);
  fs.rmSync(out, { recursive: true });
});
