/**
 * Where a layer's weights are for the CUDA engine's pinned slots (LlamaModel.layerWeightEntries):
 * every part is covered once, in slot order, and each entry's file bytes are the tensor's.
 * Plus the native fp32 → fp16 conversion the activations go through.
 */
import * as fs from 'node:fs';
import { LlamaModel } from '../../src/model/llama-model';
import { f16ToF32, f32ArrayToF16, weightPartCounts, WEIGHT_PARTS } from '../../src/native';
import { LLAMA2_S } from '../helpers/shared';

test('llama2-s layer 1: entries tile every part and point at the tensors\' bytes', async () => {
  const model = await LlamaModel.open(LLAMA2_S);
  try {
    const entries = await model.layerWeightEntries(1);
    expect(entries.map((e) => e.name.replace('model.layers.1.', ''))).toEqual([
      'self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight', 'self_attn.o_proj.weight',
      'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight', 'input_layernorm.weight', 'post_attention_layernorm.weight',
    ]);
    const c = model.config;
    const counts = weightPartCounts({ hidden: c.hiddenSize, ffn: c.intermediateSize, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim });
    for (const part of WEIGHT_PARTS) {
      const mine = entries.filter((e) => e.part === part);
      let at = 0;
      for (const e of mine) {
        expect(e.at).toBe(at);
        at += e.count;
      }
      expect(at).toBe(counts[part]);
    }
    for (const e of entries) {
      expect(e.dtype).toBe('F16');
      if (!('file' in e)) throw new Error('expected a file entry');
      const fd = fs.openSync(e.file, 'r');
      const bytes = Buffer.alloc(e.count * 2);
      fs.readSync(fd, bytes, 0, bytes.length, e.offset);
      fs.closeSync(fd);
      expect(bytes.equals(await model.checkpoint.read(e.name))).toBe(true);
    }
  } finally {
    await model.close();
  }
});

test('f32ArrayToF16 rounds to nearest even and counts what fp16 does not hold', async () => {
  const src = new Float32Array([0, -0, 1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65504, 70000, 2 ** -24, 2 ** -26, NaN, -2.5]);
  const { bits, inexact } = await f32ArrayToF16(src);
  const back = await f16ToF32(bits);
  // 1 + 2^-11 is a tie → 1 (even); 1 + 3·2^-11 is a tie → 1 + 2^-9 (even); 70000 → Inf;
  // 2^-26 → 0; NaN stays NaN but is counted.
  expect(Array.from(back)).toEqual([0, -0, 1, 1, 1 + 2 ** -9, 65504, Infinity, 2 ** -24, 0, NaN, -2.5]);
  expect(inexact).toBe(5);
  const big = Float32Array.from({ length: 3_000_001 }, (_, i) => (i % 2048) / 1024);
  expect((await f32ArrayToF16(big)).inexact).toBe(0);
});
