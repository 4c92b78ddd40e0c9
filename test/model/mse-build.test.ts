/**
 * A `gptq quantize --mse` build records the option the same way on both engines: the manifest's
 * settings (mse: true, everything else as asked; only `device` names the engine), the weights
 * file's metadata (gptq_forge_mse_grid, AutoGPTQ's config having no field for it) and an
 * unchanged quantize_config.json. The CUDA build runs where a GPU is visible (test:cuda).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cudaAvailable } from '../../src/native';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-mse-build-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const args = ['--bits', '4', '--group-size', '128', '--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--quiet'];

interface Built {
  manifest: { device: string; settings: Record<string, unknown> };
  metadata: Record<string, string>;
  quantizeConfig: unknown;
}

function build(name: string, extra: string[]): Built {
  const out = path.join(tmp, name);
  const r = runCli(['quantize', '--model', LLAMA2_S, '--out', out, ...args, ...extra], { timeoutMs: 300000 });
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  const weights = fs.readFileSync(path.join(out, 'model.safetensors'));
  const n = Number(weights.readBigUInt64LE(0));
  const header = JSON.parse(weights.subarray(8, 8 + n).toString('utf8')) as { __metadata__: Record<string, string> };
  return {
    manifest: JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8')),
    metadata: header.__metadata__,
    quantizeConfig: JSON.parse(fs.readFileSync(path.join(out, 'quantize_config.json'), 'utf8')),
  };
}

let cpu: Built, cpuPlain: Built;

test('--device cpu --mse: the manifest and the weights metadata record the mse grid', () => {
  cpu = build('cpu-mse', ['--device', 'cpu', '--mse']);
  cpuPlain = build('cpu-plain', ['--device', 'cpu']);
  expect(cpu.manifest.device).toBe('cpu');
  expect(cpu.manifest.settings.mse).toBe(true);
  expect(cpuPlain.manifest.settings.mse).toBe(false);
  expect(cpu.metadata.gptq_forge_mse_grid).toBe('True');
  expect(cpuPlain.metadata.gptq_forge_mse_grid).toBeUndefined();
  expect(cpu.quantizeConfig).toEqual(cpuPlain.quantizeConfig);
}, 600000);

(cudaAvailable() ? test : test.skip)('--device cuda --mse: built, and recorded as on the CPU engine', () => {
  const gpu = build('cuda-mse', ['--device', 'cuda', '--mse']);
  expect(gpu.manifest.device).toBe('cuda');
  expect(gpu.manifest.settings).toEqual(cpu.manifest.settings);
  expect(gpu.metadata).toEqual(cpu.metadata);
  expect(gpu.quantizeConfig).toEqual(cpu.quantizeConfig);
}, 600000);
