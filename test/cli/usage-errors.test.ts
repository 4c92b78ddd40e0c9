/**
 * Usage errors (a bad flag value, a bad combination of flags) are one line
 * "gptq: error: <flag> …" and exit 2, whatever the command; the rule of each setting is worded
 * the same way for every value it refuses; nothing is written.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_TEST_RAW, WIKI_V1_VALID } from '../helpers/shared';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-usage-errors-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const calib = ['--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--quiet'];
const MATRIX = path.resolve(__dirname, '../../configs/llama-2-70b-gptq.json');

function expectUsage(args: string[], pattern: RegExp): string {
  const before = fs.readdirSync(tmp).sort();
  const r = runCli([...args, '--quiet']);
  expect(r.code).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^gptq: error: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at |GPTQ_FORGE_DEBUG/);
  expect(r.stdout).toBe('');
  expect(fs.readdirSync(tmp).sort()).toEqual(before); // nothing written, no .partial left
  return lines[0];
}

const quantize = (...args: string[]) => ['quantize', '--model', LLAMA2_S, '--out', path.join(tmp, 'out'), ...calib, ...args];

test('quantize: a bad value of each setting exits 2 naming the flag', () => {
  expectUsage(quantize('--bits', '5'), /--bits must be 2, 3, 4 or 8, got 5$/);
  expectUsage(quantize('--seqlen', '1'), /--seqlen must be an integer ≥ 2, got 1$/);
  expectUsage(quantize('--group-size', '0'), /--group-size/);
  expectUsage(quantize('--static-groups', '--group-size', '-1'), /--static-groups needs a group size \(--group-size > 0\)/);
  expectUsage(quantize('--no-sym'), /^gptq: error: --no-sym: asymmetric grids/);
});

test('--qep: α in (0, 1] by the one rule, a number, and not with --rtn', () => {
  expectUsage(quantize('--qep', '0'), /^gptq: error: --qep must be a number in \(0, 1\] \(QEP's α, e\.g\. 0\.5\), got 0$/);
  expectUsage(quantize('--qep', '1.5'), /--qep must be a number in \(0, 1\].*, got 1\.5$/);
  expectUsage(quantize('--qep', 'half'), /option '--qep \[alpha\]' argument 'half' is invalid/);
  expectUsage(quantize('--qep', '--rtn'), /^gptq: error: --qep needs calibration .*; --rtn has none$/);
});

test('--damp: one message for the interval, whichever end is broken', () => {
  const zero = expectUsage(quantize('--damp', '0'), /--damp must be between 0 and 1 \(exclusive\), e\.g\. 0\.01, got 0$/);
  const one = expectUsage(quantize('--damp', '1'), /--damp must be between 0 and 1 \(exclusive\), e\.g\. 0\.01, got 1$/);
  const neg = expectUsage(quantize('--damp', '-0.5'), /got -0\.5$/);
  const strip = (s: string) => s.replace(/got .*$/, '');
  expect(strip(zero)).toBe(strip(one));
  expect(strip(neg)).toBe(strip(one));
});

test('a group size that does not divide a linear names the linear, with no fractional shapes', () => {
  const line = expectUsage(quantize('--group-size', '7'), /--group-size 7 does not divide in_features 256 of model\.layers\.0\.self_attn\.q_proj$/);
  expect(line).not.toMatch(/\d\.\d/);
});

test('eval and branches: the same rules and exit code', () => {
  const data = ['--dataset', WIKI_TEST_RAW, '--max-windows', '1'];
  expectUsage(['eval', '--model', LLAMA2_S, ...data, '--seqlen', '1'], /--seqlen must be an integer ≥ 2, got 1$/);
  expectUsage(['eval', '--model', LLAMA2_S, ...data, '--seqlen', '64', '--onnx', path.join(tmp, 'x.onnx')], /--onnx needs --engine onnx/);
  expectUsage(['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', path.join(tmp, 'b'), '--seqlen', '1', '--dataset', WIKI_V1_VALID],
    /--seqlen must be an integer ≥ 2, got 1$/);
  expectUsage(['report', path.join(tmp, 'none'), '--seqlen', '1'], /--seqlen must be an integer ≥ 2, got 1$/);
});

test("commander's own usage errors are one gptq: error line too", () => {
  expectUsage(quantize('--nope'), /unknown option '--nope'/);
  expectUsage(quantize('--nsamples', '0'), /--nsamples/);
});

test('a branch whose quantize_config has a group size that does not fit: one line naming the file and the linear, exit 1', () => {
  const branch = path.join(tmp, 'b7');
  const made = runCli(['quantize', '--model', LLAMA2_S, '--out', branch, '--bits', '4', '--group-size', '128', '--rtn', ...calib]);
  expect(made.code).toBe(0);
  const file = path.join(branch, 'quantize_config.json');
  const q = JSON.parse(fs.readFileSync(file, 'utf8'));
  fs.writeFileSync(file, JSON.stringify({ ...q, group_size: 7 }, null, 2));
  const r = runCli(['eval', '--model', branch, '--dataset', WIKI_TEST_RAW, '--seqlen', '128', '--max-windows', '1', '--quiet']);
  expect(r.code).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^gptq: error: .*quantize_config\.json: group_size 7 does not divide in_features 256 of model\.layers\.0\.self_attn\.q_proj$/);
  expect(lines[0]).not.toMatch(/\d\.\d/);
  fs.rmSync(branch, { recursive: true });
}, 60000);
