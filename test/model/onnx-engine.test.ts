/**
 * @jest-environment ./test/helpers/ort-environment.js
 */
/**
 * The ONNX export run by onnxruntime against the native engine, token by token, on real
 * checkpoints: llama2-s fp16, a small 4-bit act-order branch (MatMulNBits + K permutation),
 * a 3-bit branch (dequantized MatMul), and the 4-bit branch with one qweight word flipped.
 *
 * Tolerances. Both engines compute activations in fp32 here (native with round16 off), in
 * different summation orders (MLAS vs our GEMM). With the same fp16 weights (fp16 model,
 * dequantized 3-bit MatMul), fp32 rounding (2⁻²⁴ relative per operation) accumulated over
 * sums of ≤ 768 terms and 4 layers perturbs logits of magnitude ~10 by ~10⁻⁴ at most, so a
 * token's NLL moves by < 10⁻³ and the window mean (errors of both signs) by < 10⁻⁴.
 * MatMulNBits dequantizes scale · (code − zero) in fp32, while the native engine rounds it to
 * fp16 as AutoGPTQ does: each weight differs by up to 2⁻¹¹ relative, which moves a logit by up
 * to ~10 · 2⁻¹¹ ≈ 5·10⁻³ before cancellation: 2·10⁻² per token, 10⁻³ on the mean (0.1 % of
 * perplexity). A real disagreement (a wrong zero point, a misplaced block or permutation, a
 * wrong RoPE half) moves the mean NLL by 10⁻² or more.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tokenizeCached } from '../../src/data/tokenizer';
import { evaluatePerplexity } from '../../src/eval/perplexity';
import { exportLlamaOnnx } from '../../src/eval/onnx/llama-graph';
import { evaluatePerplexityOnnx, openOnnxSession } from '../../src/eval/onnx/perplexity-onnx';
import { readOnnxModel } from '../../src/io/onnx-file';
import { LlamaModel } from '../../src/model/llama-model';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_TEST_RAW, WIKI_V1_VALID } from '../helpers/shared';

const SEQLEN = 256;
const SAME_WEIGHTS = { token: 1e-3, mean: 1e-4 };
const NBITS = { token: 2e-2, mean: 1e-3 };

let tmp: string;
let tokens: Int32Array;
beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-onnx-'));
  const text = fs.readFileSync(WIKI_TEST_RAW, 'utf8').slice(0, 20000);
  tokens = (await tokenizeCached(LLAMA2_S, text, { addBos: true, cacheDir: path.join(tmp, 'cache') })).slice(0, SEQLEN);
}, 60000);
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Both { onnx: Float32Array; native: Float32Array; ops: string[] }

async function bothEngines(dir: string, name: string): Promise<Both> {
  const model = await LlamaModel.open(dir);
  try {
    const file = path.join(tmp, `${name}.onnx`);
    await exportLlamaOnnx(model, file);
    const ops = (await readOnnxModel(file)).graph!.node!.map((n) => n.opType!);
    const session = await openOnnxSession(file, 2);
    const o = await evaluatePerplexityOnnx(session, tokens, SEQLEN, { threads: 2, keepTokens: true });
    await session.release();
    const n = await evaluatePerplexity(model, tokens, SEQLEN, { round16: false, keepTokens: true });
    return { onnx: o.tokenNll!, native: n.tokenNll!, ops };
  } finally {
    await model.close();
  }
}

function expectAgree(b: Both, tol: { token: number; mean: number }): number {
  expect(b.onnx.length).toBe(SEQLEN - 1);
  let sum = 0, sumN = 0, worst = 0;
  for (let t = 0; t < b.onnx.length; t++) {
    worst = Math.max(worst, Math.abs(b.onnx[t] - b.native[t]));
    sum += b.onnx[t];
    sumN += b.native[t];
  }
  expect(worst).toBeLessThan(tol.token);
  expect(Math.abs(sum - sumN) / b.onnx.length).toBeLessThan(tol.mean);
  return sumN / b.onnx.length;
}

function quantize(out: string, args: string[]): void {
  const r = runCli(['quantize', '--model', LLAMA2_S, '--out', out, ...args,
    '--dataset', WIKI_V1_VALID, '--nsamples', '4', '--seqlen', '256', '--quiet']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
}

/** Inverts every bit of one int32 word of `tensor` in the branch's model.safetensors. */
function flipWord(dir: string, tensor: string, word: number): void {
  const file = path.join(dir, 'model.safetensors');
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const entry = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'))[tensor];
  const at = 8 + n + entry.data_offsets[0] + 4 * word;
  buf.writeInt32LE(~buf.readInt32LE(at), at);
  fs.writeFileSync(file, buf);
}

test('llama2-s fp16: plain MatMul graph, same per-token NLL as the native engine', async () => {
  const b = await bothEngines(LLAMA2_S, 'fp16');
  expect(b.ops).not.toContain('MatMulNBits');
  expect(b.ops.filter((o) => o === 'MatMul').length).toBe(4 * 7 + 4 * 2 + 1); // linears, attention, lm_head
  expect(fs.statSync(path.join(tmp, 'fp16.onnx.data')).size).toBeGreaterThan(30e6); // weights external
  expectAgree(b, SAME_WEIGHTS);
}, 120000);

test('4-bit act-order branch: MatMulNBits with K permutation agrees; a flipped qweight word is read the same by both', async () => {
  const dir = path.join(tmp, 'b4');
  quantize(dir, ['--bits', '4', '--group-size', '64', '--act-order']);
  const clean = await bothEngines(dir, 'b4');
  expect(clean.ops.filter((o) => o === 'MatMulNBits').length).toBe(28);
  expect(clean.ops).toContain('Gather'); // act-order K permutations (plus the embedding)
  expectAgree(clean, NBITS);

  const bad = path.join(tmp, 'b4-tampered');
  fs.cpSync(dir, bad, { recursive: true });
  // one word of layer 0's v_proj: 8 codes of one output column inverted (c → 15 − c)
  flipWord(bad, 'model.layers.0.self_attn.v_proj.qweight', 5 * 128 + 17);
  const damaged = await bothEngines(bad, 'b4-tampered');
  expectAgree(damaged, NBITS);
  // Both engines see the same damage: the per-token change damaged − clean of one engine is
  // the other's, up to a small fraction (the fp16/fp32 weight difference mostly cancels in it).
  let change = 0, mismatch = 0;
  for (let t = 0; t < SEQLEN - 1; t++) {
    const dn = damaged.native[t] - clean.native[t], dO = damaged.onnx[t] - clean.onnx[t];
    change += Math.abs(dn);
    mismatch += Math.abs(dO - dn);
  }
  expect(change / (SEQLEN - 1)).toBeGreaterThan(1e-3); // the flipped word matters
  expect(mismatch).toBeLessThan(0.2 * change);
}, 300000);

test('3-bit branch: exported as dequantized MatMul (no 3-bit MatMulNBits on CPU), agrees', async () => {
  const dir = path.join(tmp, 'b3');
  quantize(dir, ['--bits', '3', '--group-size', '128', '--no-act-order']);
  const b = await bothEngines(dir, 'b3');
  expect(b.ops).not.toContain('MatMulNBits');
  expectAgree(b, SAME_WEIGHTS);
}, 300000);

describe('errors are one line', () => {
  const oneLine = (args: string[], pattern: RegExp) => {
    const r = runCli(args);
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
  };
  test('export-onnx: missing model, existing output, missing folder', () => {
    oneLine(['export-onnx', path.join(tmp, 'nope'), '--out', path.join(tmp, 'x.onnx'), '--quiet'], /^gptq: error: model folder not found/);
    fs.writeFileSync(path.join(tmp, 'exists.onnx'), 'x');
    oneLine(['export-onnx', LLAMA2_S, '--out', path.join(tmp, 'exists.onnx'), '--quiet'], /already exists \(use --force/);
    oneLine(['export-onnx', LLAMA2_S, '--out', path.join(tmp, 'no', 'dir', 'x.onnx'), '--quiet'], /does not exist/);
  });
  test('eval: --onnx without --engine onnx, an unreadable ONNX file, an unknown engine', () => {
    const base = ['eval', '--model', LLAMA2_S, '--dataset', WIKI_TEST_RAW, '--seqlen', '64', '--max-windows', '1', '--quiet'];
    oneLine([...base, '--onnx', path.join(tmp, 'exists.onnx')], /--onnx needs --engine onnx/);
    oneLine([...base, '--engine', 'onnx', '--onnx', path.join(tmp, 'exists.onnx')], /onnxruntime cannot load the model/);
    const r = runCli([...base, '--engine', 'tvm']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Allowed choices are native, onnx/);
  });
});
