/**
 * `--device` on `gptq eval` and `gptq report`: cpu where no GPU is visible (CI), one clear line
 * and a non-zero exit for `--device cuda` where the addon has no CUDA or sees no device.
 * The GPU path itself is checked on a GPU host (test/cuda/eval-cuda-check.js, test/cuda/eval-cuda-errors.sh).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { expectOnlyError } from '../helpers/hostile';
import { LLAMA2_S, WIKI_TEST_RAW } from '../helpers/shared';
import { cudaAvailable } from '../../src/native';

const data = ['--dataset', WIKI_TEST_RAW, '--seqlen', '128', '--max-windows', '2'];
const noGpu = !cudaAvailable();

function oneLine(args: string[], pattern: RegExp, code = 1): void {
  const r = runCli([...args, '--quiet']);
  expectOnlyError(r, code, pattern);
  expect(r.stdout).toBe('');
}

const unavailable = /--device cuda: (the native addon was built without CUDA|no CUDA device is visible)/;

(noGpu ? test : test.skip)('eval --device cuda without a usable GPU: one line, exit 1', () => {
  oneLine(['eval', '--model', LLAMA2_S, ...data, '--device', 'cuda'], unavailable);
});

(noGpu ? test : test.skip)('report --device cuda without a usable GPU: one line, exit 1, before any work', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-report-device-'));
  try {
    oneLine(['report', dir, '--dataset', WIKI_TEST_RAW, '--device', 'cuda'], unavailable);
    expect(fs.readdirSync(dir)).toEqual([]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an unknown device is a usage error (exit 2)', () => {
  const r = runCli(['eval', '--model', LLAMA2_S, ...data, '--device', 'gpu', '--quiet']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--device.*gpu.*(cpu|cuda)/s);
});

test('--engine onnx with --device cuda, --fp32-activations with --device cuda: usage errors (exit 2)', () => {
  oneLine(['eval', '--model', LLAMA2_S, ...data, '--engine', 'onnx', '--device', 'cuda'], /--engine onnx runs on the CPU/, 2);
  if (!noGpu) oneLine(['eval', '--model', LLAMA2_S, ...data, '--device', 'cuda', '--fp32-activations'], /--fp32-activations is for --device cpu/, 2);
});

(noGpu ? test : test.skip)('without a GPU the default is the CPU engine, and the JSON says so', () => {
  const r = runCli(['eval', '--model', LLAMA2_S, ...data, '--json', '--quiet']);
  expect(r.code).toBe(0);
  const j = JSON.parse(r.stdout);
  expect(j.engine).toBe('native-cpu');
  expect(j.device).toBe('cpu');
  expect(j.tflops).toBeUndefined();
  expect(j.maxRssGb).toBeGreaterThan(0);
  const cpu = runCli(['eval', '--model', LLAMA2_S, ...data, '--json', '--quiet', '--device', 'cpu']);
  expect(JSON.parse(cpu.stdout).perplexity).toBe(j.perplexity);
});
