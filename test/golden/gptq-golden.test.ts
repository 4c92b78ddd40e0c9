/**
 * The GPTQ solve against the authors' fasterquant (../shared/reference/golden/gptq-golden.*):
 * the same W and H in, the summed loss within 1 % of theirs, and the fraction of dequantized
 * entries identical to theirs (in fp16, as their layer stores Q) reported and ≥ 95 %.
 */
import * as fs from 'node:fs';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { f16ToF32, gptqQuantize } from '../../src/native';
import { f32ToF16Bits } from '../../src/io/dtypes';
import { sharedPath } from '../helpers/shared';

const golden = JSON.parse(fs.readFileSync(sharedPath('reference', 'golden', 'gptq-golden.json'), 'utf8'));
let file: SafetensorsFile;

async function tensor(name: string): Promise<Float32Array> {
  const info = file.info(name);
  const bytes = new Uint8Array(await file.read(name));
  if (info.dtype === 'F32') return new Float32Array(bytes.buffer);
  return f16ToF32(new Uint16Array(bytes.buffer));
}

beforeAll(async () => {
  file = await SafetensorsFile.open(sharedPath('reference', 'golden', 'gptq-golden.safetensors'));
});
afterAll(() => file.close());

const report: string[] = [];
afterAll(() => {
  // The identical fractions are a measurement worth seeing, not only a pass/fail.
  process.stdout.write(`GPTQ golden (ours vs authors):\n${report.join('\n')}\n`);
});

for (const run of golden.runs as { linear: string; bits: number; group_size: number; desc_act: boolean; tensor: string; loss: number }[]) {
  test(`${run.tensor}: loss within 1 % and ≥ 95 % identical entries`, async () => {
    const W = await tensor(`${run.linear}.W`);
    const H = await tensor(`${run.linear}.H`);
    const ref = await tensor(run.tensor);
    const [N, K] = file.info(`${run.linear}.W`).shape;
    const res = await gptqQuantize(W, H, N, K, {
      bits: run.bits, groupSize: run.group_size, actOrder: run.desc_act, staticGroups: false,
      sym: golden.sym, dampPercent: golden.damp_percent, blockSize: golden.blocksize,
    });
    let same = 0;
    for (let i = 0; i < ref.length; i++) if (f32ToF16Bits(res.q[i]) === f32ToF16Bits(ref[i])) same++;
    const frac = same / ref.length;
    const rel = res.loss / run.loss - 1;
    report.push(`  ${run.tensor.padEnd(28)} loss ${res.loss.toFixed(4)} vs ${run.loss.toFixed(4)} (${(100 * rel).toFixed(3)} %), identical ${(100 * frac).toFixed(2)} %`);
    expect(Math.abs(rel)).toBeLessThan(0.01);
    expect(frac).toBeGreaterThanOrEqual(0.95);
    expect(res.dampRaises).toBe(0);
  });
}
