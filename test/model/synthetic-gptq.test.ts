/**
 * bench/make-synthetic-gptq.js (the synthetic Llama-2-70B-shaped GPTQ branch of the `gptq eval`
 * benchmarks) on llama2-s's dimensions: the folder must be what our branch writer makes (configs,
 * safetensors header byte for byte as buildHeader lays it out), open with LlamaModel, pack as the
 * project's packer does, dequantize to the intended scale, and run a forward pass.
 *
 * Uses dist/ (build it with `npx tsc -p tsconfig.json`), as the script's users do.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LLAMA2_S } from '../helpers/shared';

/* eslint-disable @typescript-eslint/no-require-imports */
const DIST = path.resolve(__dirname, '../../dist');
const { LlamaModel } = require(path.join(DIST, 'model/llama-model')) as typeof import('../../src/model/llama-model');
const native = require(path.join(DIST, 'native')) as typeof import('../../src/native');
const format = require(path.join(DIST, 'gptq/format')) as typeof import('../../src/gptq/format');
const { buildHeader } = require(path.join(DIST, 'io/safetensors-header')) as typeof import('../../src/io/safetensors-header');
/* eslint-enable @typescript-eslint/no-require-imports */

const SCRIPT = path.resolve(__dirname, '../../bench/make-synthetic-gptq.js');
const CONFIG = path.join(LLAMA2_S, 'config.json'); // hidden 256, ffn 768, 4 heads × 64, 2 kv heads

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-synthetic-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function make(out: string, args: string[]) {
  return spawnSync(process.execPath, [SCRIPT, '--config', CONFIG, '--layers', '2', '--tokenizer-from', LLAMA2_S, '--out', out, ...args], {
    encoding: 'utf8', timeout: 60000,
  });
}

const sha = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const int32 = (b: Buffer) => new Int32Array(new Uint8Array(b).buffer);
const uint16 = (b: Buffer) => new Uint16Array(new Uint8Array(b).buffer);
function moments(x: ArrayLike<number>): { mean: number; std: number; finite: boolean } {
  let s = 0, s2 = 0, finite = true;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (!Number.isFinite(v)) finite = false;
    s += v;
    s2 += v * v;
  }
  const mean = s / x.length;
  return { mean, std: Math.sqrt(s2 / x.length - mean * mean), finite };
}

// [N, K] and the output standard deviation the script aims at, for llama2-s
const H = 256, F = 768, QD = 256, KVD = 128;
const LINEARS = {
  q: { name: 'self_attn.q_proj', n: QD, k: H, target: 1 },
  k: { name: 'self_attn.k_proj', n: KVD, k: H, target: 1 },
  v: { name: 'self_attn.v_proj', n: KVD, k: H, target: 1 },
  o: { name: 'self_attn.o_proj', n: H, k: QD, target: 0.3 },
  gate: { name: 'mlp.gate_proj', n: F, k: H, target: 1 },
  up: { name: 'mlp.up_proj', n: F, k: H, target: 1 },
  down: { name: 'mlp.down_proj', n: H, k: F, target: 0.3 },
} as const;

const CASES = [
  { bits: 4, groupSize: 128, actOrder: true },
  { bits: 3, groupSize: 64, actOrder: true }, // codes and zeros cross 32-bit words
  { bits: 2, groupSize: 64, actOrder: false },
  { bits: 8, groupSize: -1, actOrder: false },
];

describe.each(CASES)('bits $bits, group $groupSize, act-order $actOrder', ({ bits, groupSize, actOrder }) => {
  let out: string;
  beforeAll(() => {
    out = path.join(tmp, `b${bits}g${groupSize}${actOrder ? 'a' : ''}`);
    const r = make(out, ['--bits', String(bits), '--group-size', String(groupSize), '--act-order', String(actOrder)]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^wrote .* \d+ bytes \(.* GB\) in [\d.]+ s, [\d.]+ GB\/s\n$/);
  });

  test('configs, tokenizer and the safetensors header are what our branch writer makes', () => {
    const qc = format.makeQuantizeConfig({
      bits, groupSize, dampPercent: 0.01, actOrder, staticGroups: false, sym: true, trueSequential: true,
      modelNameOrPath: null, modelFileBaseName: 'model',
    });
    expect(fs.readFileSync(path.join(out, 'quantize_config.json'), 'utf8')).toBe(`${JSON.stringify(qc, null, 2)}\n`);
    const base = JSON.parse(fs.readFileSync(CONFIG, 'utf8'));
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(cfg).toEqual({ ...base, num_hidden_layers: 2, torch_dtype: 'float16', tie_word_embeddings: false, quantization_config: qc });
    for (const f of ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json']) {
      expect(sha(path.join(out, f))).toBe(sha(path.join(LLAMA2_S, f)));
    }
    expect(fs.readdirSync(out).filter((f) => f.endsWith('.safetensors'))).toEqual(['model.safetensors']);

    const file = fs.readFileSync(path.join(out, 'model.safetensors'));
    const n = Number(file.readBigUInt64LE(0));
    const json = JSON.parse(file.subarray(8, 8 + n).toString('utf8'));
    const metadata = json.__metadata__;
    expect(metadata).toEqual({ ...format.safetensorsMetadata(qc), gptq_forge_synthetic: 'seed=1' });
    delete json.__metadata__;
    const entries = Object.entries(json as Record<string, { dtype: 'I32' | 'F16'; shape: number[] }>);
    const specs = entries.map(([name, v]) => ({ name, dtype: v.dtype, shape: v.shape }));
    expect(specs).toHaveLength(3 + 2 * (2 + 7 * 4));
    const layout = buildHeader(specs, metadata);
    expect(Buffer.compare(layout.header, file.subarray(0, 8 + n))).toBe(0); // same order, offsets, padding
    expect(file.length).toBe(8 + n + layout.dataLength);
  });

  test('LlamaModel opens it; layer 0 dequantizes to the intended scale; packing is the packer\'s', async () => {
    const model = await LlamaModel.open(out); // checks every tensor's dtype and shape
    try {
      expect(model.quantization).toMatchObject({ bits, group_size: groupSize, desc_act: actOrder });
      const w = await model.layer(0);
      const m = 2 ** bits, zero = m / 2;
      for (const [key, l] of Object.entries(LINEARS)) {
        const values = w[key as keyof typeof LINEARS];
        expect(values).toHaveLength(l.n * l.k);
        const { mean, std, finite } = moments(values);
        expect(finite).toBe(true);
        // scale · rms(code − zero) = target / √K, so that unit-scale inputs give outputs of std ≈ target
        const intended = l.target / Math.sqrt(l.k);
        expect(Math.abs(std / intended - 1)).toBeLessThan(0.1);
        expect(Math.abs(mean)).toBeLessThan(0.05 * intended); // random-sign scales: zero-mean weights

        const prefix = `model.layers.0.${l.name}`;
        const read = (t: string) => model.checkpoint.read(`${prefix}.${t}`);
        const qweight = int32(await read('qweight')), qzeros = int32(await read('qzeros'));
        const scales = uint16(await read('scales')), gIdx = int32(await read('g_idx'));
        const G = groupSize === -1 ? 1 : l.k / groupSize;
        // g_idx: exactly group_size columns per group; k // group_size without act-order
        const counts = new Array(G).fill(0);
        gIdx.forEach((g) => counts[g]++);
        expect(counts).toEqual(new Array(G).fill(groupSize === -1 ? l.k : groupSize));
        const plain = Array.from(gIdx).every((g, k) => g === (groupSize === -1 ? 0 : Math.floor(k / groupSize)));
        expect(plain).toBe(!actOrder || groupSize === -1);
        // the project's unpacker: zero points 2^(bits−1), codes uniform in [0, 2^bits)
        const { codes, zeros } = await native.unpackGptq(qweight, qzeros, bits, l.k, l.n, G);
        expect(zeros.every((z) => z === zero)).toBe(true);
        const c = moments(codes);
        expect(Math.abs(c.mean / ((m - 1) / 2) - 1)).toBeLessThan(0.02);
        expect(Math.abs(c.std / Math.sqrt((m * m - 1) / 12) - 1)).toBeLessThan(0.02);
        expect(Math.max(...codes.subarray(0, 4096))).toBe(m - 1);
        // ... and the project's packer gives back the very same words for those codes and zeros
        const packed = await native.packGptq(codes, zeros, bits, l.k, l.n);
        expect(Buffer.compare(Buffer.from(packed.qweight.buffer), Buffer.from(qweight.buffer))).toBe(0);
        expect(Buffer.compare(Buffer.from(packed.qzeros.buffer), Buffer.from(qzeros.buffer))).toBe(0);
        // scales: s · (1 ± 5 %) with both signs
        const f = await native.f16ToF32(scales);
        const s = l.target / (Math.sqrt((m * m + 2) / 12) * Math.sqrt(l.k));
        expect(f.every((v) => Math.abs(v) > 0.94 * s && Math.abs(v) < 1.06 * s)).toBe(true);
        expect(f.some((v) => v < 0) && f.some((v) => v > 0)).toBe(true);
      }
      // the two layers differ (different slices of the pools)
      const w1 = await model.layer(1);
      expect(Buffer.compare(Buffer.from(w.q.buffer), Buffer.from(w1.q.buffer))).not.toBe(0);
    } finally {
      await model.close();
    }
  });

  test('a CPU perplexity run is finite, and 80 decoder layers keep activations of order 1', () => {
    // In a child process: the addon's dequantized weights are Float32Arrays of Node's realm, which
    // decoderLayer's `instanceof Float32Array` refuses inside jest's vm (plain `gptq eval` is fine).
    const r = spawnSync(process.execPath, ['-e', FORWARD, DIST, out], { encoding: 'utf8', timeout: 60000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { perplexity, windows, std, finite } = JSON.parse(r.stdout);
    expect(windows).toBe(2);
    expect(Number.isFinite(perplexity)).toBe(true);
    expect(perplexity).toBeGreaterThan(1);
    expect(finite).toBe(true);
    expect(std).toBeGreaterThan(0.1);
    expect(std).toBeLessThan(30);
  });
});

/**
 * argv: dist, branch. Perplexity of 2 windows of 64 tokens (fp16 activations), then the two
 * layers applied 40 times each (a 70B-deep stack) to one window: std and finiteness of the
 * hidden states.
 */
const FORWARD = `
const [dist, dir] = process.argv.slice(1);
const { LlamaModel } = require(dist + '/model/llama-model');
const { evaluatePerplexity } = require(dist + '/eval/perplexity');
const native = require(dist + '/native');
(async () => {
  const model = await LlamaModel.open(dir);
  const seqlen = 64, c = model.config;
  const tokens = Int32Array.from({ length: 2 * seqlen }, (_, i) => (i * 7919 + 1) % c.vocabSize);
  const r = await evaluatePerplexity(model, tokens, seqlen, { round16: true });
  const hidden = [new Float32Array(seqlen * c.hiddenSize)];
  await native.embed(tokens.subarray(0, seqlen), await model.embedding(), c.vocabSize, hidden);
  const layers = [await model.layer(0), await model.layer(1)];
  for (let i = 0; i < 80; i++) await native.decoderLayer(hidden, layers[i % 2], model.dims(true), seqlen);
  let s = 0, s2 = 0, finite = true;
  for (const v of hidden[0]) { finite = finite && Number.isFinite(v); s += v; s2 += v * v; }
  const mean = s / hidden[0].length;
  await model.close();
  console.log(JSON.stringify({ perplexity: r.perplexity, windows: r.windows, std: Math.sqrt(s2 / hidden[0].length - mean * mean), finite }));
})().catch((e) => { console.error(e.message); process.exit(1); });
`;

test('reproducible for a seed, different for another; usage errors are one line and exit 2', () => {
  const a = path.join(tmp, 'seed-a'), b = path.join(tmp, 'seed-b'), c = path.join(tmp, 'seed-c');
  expect(make(a, ['--seed', '7']).status).toBe(0);
  expect(make(b, ['--seed', '7']).status).toBe(0);
  expect(make(c, ['--seed', '8']).status).toBe(0);
  const weights = (d: string) => sha(path.join(d, 'model.safetensors'));
  expect(weights(a)).toBe(weights(b));
  expect(weights(a)).not.toBe(weights(c));
  for (const bad of [['--bits', '5'], ['--group-size', '100'], ['--act-order', 'yes'], ['--layers', '0'], ['--nope', '1']]) {
    const r = make(path.join(tmp, 'bad'), bad);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: /);
  }
  expect(fs.existsSync(path.join(tmp, 'bad'))).toBe(false);
});
