/**
 * Branch names of a matrix become folder names (`DIR/<name>`) and Hub branches: a name that is
 * not one safe folder of its own is refused before any work, with one line and exit 2.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { expectOneError, treeHash } from '../helpers/hostile';
import { LLAMA2_S } from '../helpers/shared';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-matrix-names-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const entry = (name: unknown) => ({ name, bits: 4, groupSize: 128, actOrder: true, damp: 0.01 });

test.each([
  [['Main', 'main'], /branches\[1\]\.name: "main" differs from another branch only in case/],
  [['gptq-4bit', 'GPTQ-4bit'], /branches\[1\]\.name: "GPTQ-4bit" differs from another branch only in case/],
  [['report.json'], /branches\[0\]\.name: "report\.json" is the name of a file gptq report writes/],
  [['report.svg'], /branches\[0\]\.name: "report\.svg" is the name of a file gptq report writes/],
  [['NUL'], /branches\[0\]\.name: "NUL" is a device name on Windows/],
  [['com1.gptq'], /branches\[0\]\.name: "com1\.gptq" is a device name on Windows/],
  [['../escape'], /branches\[0\]\.name: "\.\.\/escape" is not a single folder name/],
  [['a\\b'], /branches\[0\]\.name: "a\\\\b" is not a single folder name/],
])('%j: exit 2, one line, nothing written (--list and a build)', (names, pattern) => {
  const dir = path.join(tmp, `m-${names.join('-').replace(/\W+/g, '_')}`);
  fs.mkdirSync(dir);
  const matrix = path.join(dir, 'm.json');
  fs.writeFileSync(matrix, JSON.stringify({ dataset: 'wikitext2', seqlen: 128, branches: names.map(entry) }));
  const before = treeHash(tmp);
  expectOneError(runCli(['branches', '--matrix', matrix, '--list']), 2, pattern);
  const out = path.join(dir, 'out');
  expectOneError(runCli(['branches', '--model', LLAMA2_S, '--matrix', matrix, '--out', out, '--nsamples', '2', '--seqlen', '32', '--quiet']), 2, pattern);
  expect(treeHash(tmp)).toEqual(before);
});
