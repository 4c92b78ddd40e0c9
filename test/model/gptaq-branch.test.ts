/**
 * GPTAQ on llama2-s (CPU engine, small calibration). The property GPTAQ is built for: each
 * layer's quantized outputs stay closer to the fp16 model's than plain GPTQ's do (it fits Ŵ X to
 * W X̃ where GPTQ fits W X), measured by the engine on both paths (plain GPTQ = α 0, which is
 * bit-identical to it and carries the fp16 path too). And `gptq quantize --gptaq` records α in
 * the manifest, the weights file's metadata and the model card, keeps AutoGPTQ's
 * quantize_config.json, leaves layer 0's q_proj as plain GPTQ's (X̃ = X there) and passes verify.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hashBranch } from '../../src/gptq/branch-hash';
import { cpuEngine } from '../../src/gptq/engine-cpu';
import { Manifest } from '../../src/gptq/manifest';
import { QuantizeSettings } from '../../src/gptq/settings';
import { commitTitle, describeBranch } from '../../src/hub/model-card';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { LlamaModel } from '../../src/model/llama-model';
import { runCli } from '../helpers/cli';
import { mulberry32 } from '../helpers/lcg';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(600_000);
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-gptaq-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const readJson = (...p: string[]) => JSON.parse(fs.readFileSync(path.join(...p), 'utf8'));

test('each layer\'s outputs are closer to the fp16 model\'s with GPTAQ α 0.25 than with plain GPTQ', async () => {
  const model = await LlamaModel.open(LLAMA2_S);
  try {
    const seqlen = 128, n = 8, rnd = mulberry32(5);
    const calib = Int32Array.from({ length: n * seqlen }, () => 3 + Math.floor(rnd() * (model.config.vocabSize - 3)));
    const s: QuantizeSettings = { bits: 3, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true };
    // Σ (x − x̃)² over the windows after each layer: the quantized path against the fp16 path.
    const drift = async (alpha: number) => {
      const e = await cpuEngine(model, calib, seqlen, { ...s, gptaq: alpha }, { startLayer: 0, x: null });
      const out: number[] = [];
      try {
        for (let l = 0; l < model.config.numLayers; l++) {
          await e.quantizeLayer(l);
          const x = e.outputs() as { f32: Float32Array[]; fp: { f32: Float32Array[] } };
          let d = 0;
          x.f32.forEach((a, i) => a.forEach((v, j) => { d += (v - x.fp.f32[i][j]) ** 2; }));
          out.push(d);
        }
      } finally {
        await e.close();
      }
      return out;
    };
    const plain = await drift(0), gptaq = await drift(0.25);
    expect(plain.every((d) => d > 0)).toBe(true);
    const closer = gptaq.filter((d, l) => d < plain[l]).length;
    expect({ plain, gptaq, closer }).toEqual({ plain, gptaq, closer: model.config.numLayers });
  } finally {
    await model.close();
  }
});

test('quantize --gptaq: α recorded in the manifest, the metadata and the card; quantize_config.json is AutoGPTQ\'s; verify passes', async () => {
  const plain = path.join(tmp, 'plain'), gptaq = path.join(tmp, 'gptaq');
  const base = ['quantize', '--model', LLAMA2_S, '--bits', '3', '--group-size', '128', '--dataset', WIKI_V1_VALID, '--nsamples', '4', '--seqlen', '256', '--device', 'cpu', '--quiet'];
  expect(runCli([...base, '--out', plain]).code).toBe(0);
  const r = runCli([...base, '--out', gptaq, '--gptaq']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('GPTAQ α 0.25');

  const m: Manifest = readJson(gptaq, 'manifest.json');
  expect(m.settings.gptaq).toBe(0.25);
  expect('gptaq' in readJson(plain, 'manifest.json').settings).toBe(false);
  expect(describeBranch(m)).toContain('GPTAQ (asymmetric calibration) with α 0.25.');
  expect(commitTitle(m)).toContain('GPTAQ α 0.25');
  expect(readJson(gptaq, 'quantize_config.json')).toEqual(readJson(plain, 'quantize_config.json'));
  const f = await SafetensorsFile.open(path.join(gptaq, 'model.safetensors'));
  const p = await SafetensorsFile.open(path.join(plain, 'model.safetensors'));
  try {
    expect(f.metadata.gptq_forge_gptaq_alpha).toBe('0.25');
    expect(p.metadata.gptq_forge_gptaq_alpha).toBeUndefined();
    const { gptq_forge_gptaq_alpha: _a, ...rest } = f.metadata;
    expect(rest).toEqual(p.metadata);
  } finally {
    await f.close();
    await p.close();
  }
  const hg = await hashBranch(gptaq), hp = await hashBranch(plain);
  // Both paths enter layer 0 with the embeddings: C = 0 for its [k, v, q], whose solves are then
  // plain GPTQ's; o_proj already sees the quantized q/k/v, and from layer 1 on every input drifted.
  expect(hg.tensors['model.layers.0.self_attn.q_proj.qweight']).toBe(hp.tensors['model.layers.0.self_attn.q_proj.qweight']);
  expect(hg.tensors['model.layers.0.self_attn.o_proj.qweight']).not.toBe(hp.tensors['model.layers.0.self_attn.o_proj.qweight']);
  expect(hg.tensors['model.layers.1.self_attn.q_proj.qweight']).not.toBe(hp.tensors['model.layers.1.self_attn.q_proj.qweight']);
  expect(runCli(['verify', gptaq, '--quiet']).code).toBe(0);
  expect(runCli([...base, '--out', path.join(tmp, 'both'), '--gptaq', '--qep']).code).toBe(2);
});
