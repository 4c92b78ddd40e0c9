/**
 * Non-finite numbers in `gptq eval` (CPU engine): a NaN/Inf perplexity is an error naming the
 * first decoder layer after which the hidden states were not finite, or the logits; a NaN/Inf
 * in a tensor (a branch's fp16 scales included) is refused by name. Every weight of the
 * overflow cases is finite: the activations overflow fp16.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { expectOnlyError } from '../helpers/hostile';
import { copyFolder, f16, F16_INF, F16_NAN, hashTree, patchTensor, setF16 } from '../helpers/nonfinite-fixtures';
import { LLAMA2_S, WIKI_TEST_RAW, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(180_000);

let tmp: string;
let cache: string;
let text: string;
let branch: string;
const env = () => ({ GPTQ_FORGE_CACHE: cache });

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-nonfinite-eval-'));
  cache = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-nonfinite-eval-cache-'));
  // A few KB of wiki.test.raw: the tokenizer's time stays out of the test.
  text = path.join(tmp, 'text.txt');
  fs.writeFileSync(text, fs.readFileSync(WIKI_TEST_RAW, 'utf8').slice(0, 6000));
  branch = path.join(tmp, 'branch');
  const r = runCli(['quantize', '--model', LLAMA2_S, '--out', branch, '--bits', '4', '--group-size', '64', '--no-act-order',
    '--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--device', 'cpu', '--quiet'], { env: env() });
  if (r.code !== 0) throw new Error(r.stderr);
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(cache, { recursive: true, force: true });
});

/** Runs eval on `model`: exit 1, one `gptq: error:` line matching `pattern`, no stack, nothing written. */
function expectEvalError(model: string, pattern: RegExp, extra: string[] = []): void {
  const listing = fs.readdirSync(tmp).sort();
  const before = hashTree(model);
  const shared = hashTree(LLAMA2_S);
  const r = runCli(['eval', '--model', model, '--dataset', text, '--seqlen', '128', '--max-windows', '2', '--device', 'cpu',
    '--json', '--quiet', ...extra], { env: env() });
  expect(r.stdout).toBe(''); // no perplexity printed, not even NaN / null
  expectOnlyError(r, 1, pattern);
  expect(fs.readdirSync(tmp).sort()).toEqual(listing);
  expect(hashTree(model)).toEqual(before);
  expect(hashTree(LLAMA2_S)).toEqual(shared);
}

test('the clean model evaluates (the fixture is sound)', () => {
  const r = runCli(['eval', '--model', LLAMA2_S, '--dataset', text, '--seqlen', '128', '--max-windows', '2', '--device', 'cpu', '--json', '--quiet'], { env: env() });
  expect(r.code).toBe(0);
  expect(Number.isFinite(JSON.parse(r.stdout).perplexity)).toBe(true);
});

test('a huge but finite norm weight of layer 1 overflows fp16: the error names decoder layer 1', () => {
  const m = copyFolder(LLAMA2_S, path.join(tmp, 'norm-overflow'));
  patchTensor(m, 'model.layers.1.post_attention_layernorm.weight', (b) => {
    for (let i = 0; i < b.length; i += 2) b.writeUInt16LE(f16(30000), i); // finite: fp16 max is 65504
  });
  expectEvalError(m, /hidden states are not finite after decoder layer 1 \(\d+ NaN\/Inf/);
});

test('a huge but finite linear weight of layer 1 overflows fp16: the error names decoder layer 1', () => {
  const m = copyFolder(LLAMA2_S, path.join(tmp, 'linear-overflow'));
  const big = f16(20000);
  patchTensor(m, 'model.layers.1.mlp.up_proj.weight', (b) => {
    for (let i = 0; i < b.length; i += 2) b.writeUInt16LE(big, i);
  });
  expectEvalError(m, /hidden states are not finite after decoder layer 1 /);
});

test('only lm_head overflows: the error names the logits', () => {
  const m = copyFolder(LLAMA2_S, path.join(tmp, 'head-overflow'));
  const hi = f16(30000), lo = f16(-30000);
  patchTensor(m, 'lm_head.weight', (b) => {
    for (let i = 0; i < b.length; i += 2) b.writeUInt16LE(i % 4 === 0 ? hi : lo, i);
  });
  expectEvalError(m, /the logits are not finite for \d+ token\(s\)/);
});

test('a NaN in a branch\'s fp16 scales (not the first linear) is refused by name', () => {
  const b = copyFolder(branch, path.join(tmp, 'nan-scales'));
  setF16(b, 'model.layers.2.mlp.gate_proj.scales', 5, F16_NAN);
  expectEvalError(b, /weight model\.layers\.2\.mlp\.gate_proj\.scales has 1 NaN\/Inf value/);
});

test('an Inf in a branch\'s fp16 scales is refused by name', () => {
  const b = copyFolder(branch, path.join(tmp, 'inf-scales'));
  setF16(b, 'model.layers.3.self_attn.o_proj.scales', 0, F16_INF);
  expectEvalError(b, /weight model\.layers\.3\.self_attn\.o_proj\.scales has 1 NaN\/Inf value/);
});

test('finite scales whose dequantized weight overflows fp16 are refused, naming the linear', () => {
  const b = copyFolder(branch, path.join(tmp, 'huge-scales'));
  patchTensor(b, 'model.layers.1.mlp.down_proj.scales', (buf) => {
    for (let i = 0; i < buf.length; i += 2) buf.writeUInt16LE(f16(60000), i);
  });
  expectEvalError(b, /decoder layer 1 mlp\.down_proj: \d+ dequantized weight\(s\) are NaN\/Inf/);
});

test.each([
  ['model.embed_tokens.weight'], ['model.norm.weight'], ['lm_head.weight'], ['model.layers.0.input_layernorm.weight'],
])('a NaN in %s of a branch is refused by name', (name) => {
  const b = copyFolder(branch, path.join(tmp, `nan-${name}`));
  setF16(b, name, 3, F16_NAN);
  expectEvalError(b, new RegExp(`weight ${name.replace(/\./g, '\\.')} has 1 NaN/Inf value`));
});
