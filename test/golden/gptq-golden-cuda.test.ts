/**
 * The CUDA solve on the GPTQ golden, where the addon was built with CUDA and a GPU is visible
 * (skipped otherwise: CI has none). The same bar as gptq-golden.test.ts against the authors'
 * outputs, and against the CPU engine on the same W, H: the two differ only in summation order
 * (fp64 factor on both, fp32 updates), so ≥ 99 % identical codes and losses within 0.5 %.
 * On a GPU host without jest, test/cuda/cuda-golden.js runs the same checks from dist/.
 */
import * as fs from 'node:fs';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { cudaAvailable, cudaGptqQuantize, f16ToF32, gptqQuantize } from '../../src/native';
import { f32ToF16Bits } from '../../src/io/dtypes';
import { sharedPath } from '../helpers/shared';

const maybe = cudaAvailable() ? describe : describe.skip;

maybe('GPTQ golden on the CUDA engine', () => {
  const golden = JSON.parse(fs.readFileSync(sharedPath('reference', 'golden', 'gptq-golden.json'), 'utf8'));
  let file: SafetensorsFile;
  beforeAll(async () => {
    file = await SafetensorsFile.open(sharedPath('reference', 'golden', 'gptq-golden.safetensors'));
  });
  afterAll(() => file.close());

  async function tensor(name: string): Promise<Float32Array> {
    const info = file.info(name);
    const bytes = new Uint8Array(await file.read(name));
    if (info.dtype === 'F32') return new Float32Array(bytes.buffer);
    return f16ToF32(new Uint16Array(bytes.buffer));
  }

  for (const run of golden.runs as { linear: string; bits: number; group_size: number; desc_act: boolean; tensor: string; loss: number }[]) {
    test(`${run.tensor}: GPU vs authors and vs the CPU engine`, async () => {
      const W = await tensor(`${run.linear}.W`);
      const H = await tensor(`${run.linear}.H`);
      const ref = await tensor(run.tensor);
      const [N, K] = file.info(`${run.linear}.W`).shape;
      const opts = {
        bits: run.bits, groupSize: run.group_size, actOrder: run.desc_act, staticGroups: false,
        sym: golden.sym, dampPercent: golden.damp_percent, blockSize: golden.blocksize,
      };
      const gpu = await cudaGptqQuantize(W.slice(), H, N, K, opts);
      const cpu = await gptqQuantize(W.slice(), H, N, K, opts);
      let same = 0;
      for (let i = 0; i < ref.length; i++) if (f32ToF16Bits(gpu.q[i]) === f32ToF16Bits(ref[i])) same++;
      expect(Math.abs(gpu.loss / run.loss - 1)).toBeLessThan(0.01);
      expect(same / ref.length).toBeGreaterThanOrEqual(0.95);
      let codes = 0;
      for (let i = 0; i < gpu.codes.length; i++) if (gpu.codes[i] === cpu.codes[i]) codes++;
      expect(codes / gpu.codes.length).toBeGreaterThanOrEqual(0.99);
      expect(Math.abs(gpu.loss / cpu.loss - 1)).toBeLessThan(5e-3);
      expect(Array.from(gpu.gIdx)).toEqual(Array.from(cpu.gIdx));
    });
  }
});

if (!cudaAvailable()) {
  test('CUDA engine not available here: the GPU golden is skipped', () => {
    expect(cudaAvailable()).toBe(false);
  });
}
