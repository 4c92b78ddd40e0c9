/**
 * The byte layout of the CUDA inference path's slots (src/eval/cuda-plan.ts), checked without a
 * GPU: every entry 256-byte aligned, inside its slot, not overlapping another, of the tensor's
 * size, with the layout pointing at the entries; GPTQ branches keep their four tensors as stored.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { embeddingPlan, headPlan, layerPlan, SlotPlan } from '../../src/eval/cuda-plan';
import { LlamaModel } from '../../src/model/llama-model';
import { EMBED, LM_HEAD } from '../../src/model/weights';
import { runCli } from '../helpers/cli';
import { LLAMA2_M, LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

function checkPlan(model: LlamaModel, plan: SlotPlan): void {
  expect(plan.bytes % 256).toBe(0);
  const spans = plan.entries.map((e) => {
    const info = model.checkpoint.info(e.name);
    expect(e.count).toBe(info.shape.reduce((a, b) => a * b, 1));
    expect(e.dtype).toBe(info.dtype);
    expect('file' in e && e.file).toBe(info.file);
    expect('offset' in e && e.offset).toBe(info.offset);
    expect(e.at % 256).toBe(0);
    return [e.at, e.at + e.count * (e.dtype === 'I32' ? 4 : 2)];
  }).sort((a, b) => a[0] - b[0]);
  for (let i = 0; i < spans.length; i++) {
    expect(spans[i][1]).toBeLessThanOrEqual(plan.bytes);
    if (i > 0) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
  }
}

test('fp16 llama2-s: embedding, every layer and the untied head', async () => {
  const m = await LlamaModel.open(LLAMA2_S);
  try {
    const e = embeddingPlan(m);
    checkPlan(m, e);
    expect(e.entries.map((x) => x.name)).toEqual([EMBED]);
    const h = headPlan(m);
    checkPlan(m, h);
    expect(h.entries.map((x) => x.name)).toEqual(['model.norm.weight', LM_HEAD]);
    expect(h.headAt).toBe(h.entries[1].at);
    for (let i = 0; i < m.config.numLayers; i++) {
      const p = layerPlan(m, i);
      checkPlan(m, p);
      expect(p.layout.bits).toBeUndefined();
      const names = p.entries.map((x) => x.name);
      expect(names.slice(0, 7)).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((n) => `model.layers.${i}.self_attn.${n}.weight`)
        .concat(['gate_proj', 'up_proj', 'down_proj'].map((n) => `model.layers.${i}.mlp.${n}.weight`)));
      p.layout.linears.forEach((l, k) => expect('at' in l && l.at).toBe(p.entries[k].at));
      expect(p.layout.inputNorm).toBe(p.entries[7].at);
      expect(p.layout.postNorm).toBe(p.entries[8].at);
    }
  } finally {
    await m.close();
  }
});

test('tied llama2-m: the head reads the embedding', async () => {
  const m = await LlamaModel.open(LLAMA2_M);
  try {
    const h = headPlan(m);
    checkPlan(m, h);
    expect(h.entries[1].name).toBe(EMBED);
  } finally {
    await m.close();
  }
});

test('GPTQ branch: qweight, qzeros, scales and g_idx of each linear, with its group count', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-cuda-plan-'));
  try {
    const out = path.join(tmp, 'b');
    const r = runCli(['quantize', '--model', LLAMA2_S, '--out', out, '--bits', '3', '--group-size', '64', '--act-order',
      '--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--device', 'cpu', '--quiet']);
    expect(r.stderr).toBe('');
    const m = await LlamaModel.open(out);
    try {
      const p = layerPlan(m, 1);
      checkPlan(m, p);
      expect(p.layout.bits).toBe(3);
      expect(p.entries).toHaveLength(7 * 4 + 2);
      const c = m.config;
      p.layout.linears.forEach((l, k) => {
        if ('at' in l) throw new Error('expected a GPTQ linear');
        const [qw, qz, sc, gi] = p.entries.slice(4 * k, 4 * k + 4);
        expect([qw.at, qz.at, sc.at, gi.at]).toEqual([l.qweight, l.qzeros, l.scales, l.gIdx]);
        expect([qw.dtype, qz.dtype, sc.dtype, gi.dtype]).toEqual(['I32', 'I32', 'F16', 'I32']);
        const kIn = k === 3 ? c.numHeads * c.headDim : k === 6 ? c.intermediateSize : c.hiddenSize;
        expect(l.groups).toBe(kIn / 64);
      });
    } finally {
      await m.close();
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
