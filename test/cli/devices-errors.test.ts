/**
 * `--devices` / `--max-workers` refusals: bad values, GPUs that are not there, and host memory or
 * disk that N workers would exceed (the figures injected through GPTQ_FORGE_HOST_MEM_BYTES and
 * GPTQ_FORGE_DISK_FREE_BYTES): one line, the exit code, and no folder created.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { workerNeeds } from '../../src/gptq/host-limits';
import { parseLlamaConfig } from '../../src/model/config';
import { runCli } from '../helpers/cli';
import { expectOneError } from '../helpers/hostile';
import { settings } from '../helpers/manifest-fixture';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(120_000);

const MATRIX = path.resolve(__dirname, '../../configs/llama-2-70b-gptq.json');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-devices-errors-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const branches = (out: string, ...more: string[]) =>
  ['branches', '--model', LLAMA2_S, '--matrix', MATRIX, '--out', out, '--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '64', '--quiet', ...more];

test.each([
  [['--devices', '0,0', '--device', 'cpu'], /--devices.*device 0 is listed twice, got 0,0/],
  [['--devices', 'x', '--device', 'cpu'], /--devices.*expected all, a number of workers or a list of device ids like 0,1,3, got x/],
  [['--devices', '0', '--device', 'cpu'], /--devices.*expected all, a number of workers ≥ 1/],
  [['--devices', '2', '--max-workers', '0', '--device', 'cpu'], /--max-workers.*expected a positive integer/],
  [['--max-workers', '2', '--device', 'cpu'], /--max-workers 2 needs --devices/],
  [['--devices', 'all', '--device', 'cpu'], /--devices all: with --device cpu give a number of CPU workers, e\.g\. --devices 2/],
])('branches %j is a usage error', (flags, pattern) => {
  const out = path.join(tmp, 'usage');
  expectOneError(runCli(branches(out, ...flags)), 2, pattern);
  expect(fs.existsSync(out)).toBe(false);
});

test('GPUs that are not visible are refused before anything (the count injected: this host has none)', () => {
  const out = path.join(tmp, 'gpus');
  const env = { GPTQ_FORGE_TEST_CUDA_DEVICES: '2' };
  expectOneError(runCli(branches(out, '--devices', '3', '--device', 'cuda'), { env }), 2, /--devices 3: 3 workers need 3 GPUs, 2 visible/);
  expectOneError(runCli(branches(out, '--devices', '0,5', '--device', 'cuda'), { env }), 2, /--devices 0,5: device 5 is not visible \(2 CUDA device\(s\): 0-1\)/);
  expectOneError(runCli(branches(out, '--devices', 'all', '--device', 'cuda'), { env: { GPTQ_FORGE_TEST_CUDA_DEVICES: '0' } }), 2, /--devices all: no CUDA device is visible/);
  expect(fs.existsSync(out)).toBe(false);
});

test('host memory and disk that the workers would exceed: one line naming the need, what is there and how many fit', () => {
  const c = parseLlamaConfig(JSON.parse(fs.readFileSync(path.join(LLAMA2_S, 'config.json'), 'utf8')), 'config.json');
  const need = workerNeeds(c, { device: 'cpu', nsamples: 2, seqlen: 64, settings: settings(4, 128, false) });
  expect(need.memory).toBeGreaterThan(0.5e9);
  const out = path.join(tmp, 'limits');
  // Room for 2 workers' memory, not 3.
  const mem = runCli(branches(out, '--devices', '3', '--device', 'cpu'), { env: { GPTQ_FORGE_HOST_MEM_BYTES: String(Math.ceil(2.5 * need.memory)) } });
  expectOneError(mem, 1, /^gptq: error: --devices 3: 3 workers need about \S+ GB of host memory, \S+ GB available \(use --max-workers 2\)$/);
  const disk = runCli(branches(out, '--devices', '2', '--device', 'cpu'), { env: { GPTQ_FORGE_DISK_FREE_BYTES: '1000' } });
  expectOneError(disk, 1, /^gptq: error: --devices 2: 2 workers need about \S+ GB of free disk for .*limits, 0\.00 GB free \(one worker needs about \S+ GB\)$/);
  expect(fs.existsSync(out)).toBe(false);
  // Fewer workers pass the memory check (the bad disk knob then stops the run before any work;
  // two branches, so that two workers start: one would build in this process, unchecked)
  const ok = runCli(branches(out, '--devices', '3', '--max-workers', '2', '--device', 'cpu', '--only', 'main,gptq-4bit-32g-actorder_True'), { env: { GPTQ_FORGE_HOST_MEM_BYTES: String(Math.ceil(2.5 * need.memory)), GPTQ_FORGE_DISK_FREE_BYTES: 'x' } });
  expectOneError(ok, 1, /GPTQ_FORGE_DISK_FREE_BYTES: expected a number of bytes, got x/);
  expect(fs.existsSync(out)).toBe(false);
});
