/**
 * QEP branches on llama2-s (CPU engine, small calibration): `gptq quantize --qep` records α in
 * the manifest, the weights file's metadata and the model card, keeps AutoGPTQ's
 * quantize_config.json, and changes the weights; a matrix branch with `qep` killed mid-build
 * resumes from its checkpoint (the fp16 path's activations kept beside the quantized path's)
 * and finishes bit-identically to an uninterrupted build.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hashBranch } from '../../src/gptq/branch-hash';
import { Manifest } from '../../src/gptq/manifest';
import { QEP_CORRECTED } from '../../src/gptq/settings';
import { commitTitle, describeBranch } from '../../src/hub/model-card';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';
import { runKilled } from '../helpers/work-folder';

jest.setTimeout(600_000);
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-qep-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const calib = ['--dataset', WIKI_V1_VALID, '--nsamples', '4', '--seqlen', '256', '--device', 'cpu', '--quiet'];
const readJson = (...p: string[]) => JSON.parse(fs.readFileSync(path.join(...p), 'utf8'));

test('quantize --qep: α recorded in the manifest, the metadata and the card; quantize_config.json is AutoGPTQ\'s; the weights change', async () => {
  const plain = path.join(tmp, 'plain'), qep = path.join(tmp, 'qep');
  const base = ['quantize', '--model', LLAMA2_S, '--bits', '3', '--group-size', '128', ...calib];
  expect(runCli([...base, '--out', plain]).code).toBe(0);
  const r = runCli([...base, '--out', qep, '--qep']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('QEP α 0.5');

  const m: Manifest = readJson(qep, 'manifest.json');
  expect(m.settings.qep).toBe(0.5);
  expect('qep' in readJson(plain, 'manifest.json').settings).toBe(false);
  expect(describeBranch(m)).toContain('QEP (quantization error propagation) with α 0.5.');
  expect(commitTitle(m)).toContain('QEP α 0.5');
  const qc = readJson(qep, 'quantize_config.json');
  expect(qc).toEqual(readJson(plain, 'quantize_config.json')); // the format says nothing of QEP
  const f = await SafetensorsFile.open(path.join(qep, 'model.safetensors'));
  const p = await SafetensorsFile.open(path.join(plain, 'model.safetensors'));
  try {
    expect(f.metadata.gptq_forge_qep_alpha).toBe('0.5');
    expect(f.metadata.gptq_forge_qep_linears).toBe(QEP_CORRECTED.join(','));
    expect(p.metadata.gptq_forge_qep_alpha).toBeUndefined();
    const { gptq_forge_qep_alpha: _a, gptq_forge_qep_linears: _l, ...rest } = f.metadata;
    expect(rest).toEqual(p.metadata);
  } finally {
    await f.close();
    await p.close();
  }
  const hq = await hashBranch(qep), hp = await hashBranch(plain);
  // Both paths enter layer 0 with the embeddings: C = 0 for its [k, v, q] and W* = W exactly, so
  // q_proj is plain GPTQ's; after o_proj is quantized the paths differ (up_proj is corrected),
  // and from layer 1 on every input has drifted.
  expect(hq.tensors['model.layers.0.self_attn.q_proj.qweight']).toBe(hp.tensors['model.layers.0.self_attn.q_proj.qweight']);
  expect(hq.tensors['model.layers.1.self_attn.q_proj.qweight']).not.toBe(hp.tensors['model.layers.1.self_attn.q_proj.qweight']);
  expect(hq.tensors['model.layers.0.mlp.up_proj.qweight']).not.toBe(hp.tensors['model.layers.0.mlp.up_proj.qweight']);
  expect(runCli(['verify', qep, '--quiet']).code).toBe(0);
});

test('a qep matrix branch killed mid-build resumes from its checkpoint and equals an uninterrupted build', async () => {
  const matrix = path.join(tmp, 'm.json');
  fs.writeFileSync(matrix, JSON.stringify({
    dataset: WIKI_V1_VALID, seqlen: 512, nsamples: 8,
    branches: [{ name: 'q3', bits: 3, groupSize: 128, actOrder: true, damp: 0.01, qep: 0.5 }],
  }));
  const args = (out: string) => ['branches', '--model', LLAMA2_S, '--matrix', matrix, '--out', out, '--device', 'cpu', '--checkpoint-every', '0', '--quiet'];
  const ref = path.join(tmp, 'ref');
  expect(runCli(args(ref)).code).toBe(0);

  const out = path.join(tmp, 'killed'), work = path.join(out, 'q3.partial');
  const first = await runKilled(args(out), { work, layers: 1 });
  expect(first.signal).toBe('SIGKILL');
  const state = readJson(work, 'state.json');
  expect(state.settings.qep).toBe(0.5);
  expect(state.layersDone).toBeGreaterThanOrEqual(1);
  expect(state.layersDone).toBeLessThan(4);
  const x = await SafetensorsFile.open(path.join(work, state.activations));
  try {
    // The fp16 path's windows beside the quantized path's, fp16 values both.
    expect(x.names().filter((n) => n.startsWith('xf.')).length).toBe(8);
    expect(x.info('xf.0')).toMatchObject({ dtype: 'F16', shape: [512 * 256] });
  } finally {
    await x.close();
  }
  const resumed = runCli([...args(out), '--resume']);
  expect(resumed.stderr).toBe('');
  expect(resumed.code).toBe(0);
  const a = await hashBranch(path.join(ref, 'q3')), k = await hashBranch(path.join(out, 'q3'));
  expect(k.files).toEqual(a.files);
  expect(k.tensors).toEqual(a.tensors);
  expect(readJson(out, 'q3', 'manifest.json').resumes).toBe(1);
});
