import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../../src/errors';
import { loadLlamaConfig, parseLlamaConfig } from '../../src/model/config';

const MODELS = path.resolve(__dirname, '../../../shared/models');
const S = path.join(MODELS, 'llama2-s');
const M = path.join(MODELS, 'llama2-m');
const L70 = path.join(MODELS, 'llama-2-70b');

async function readJson(dir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await fsp.readFile(path.join(dir, 'config.json'), 'utf8'));
}

/** The parse error message for a variant of llama2-s's config. */
function errorFor(base: Record<string, unknown>, patch: Record<string, unknown>, drop: string[] = []): string {
  const json: Record<string, unknown> = { ...base, ...patch };
  for (const k of drop) delete json[k];
  try {
    parseLlamaConfig(json, 'config.json');
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return (e as Error).message;
  }
  throw new Error('expected parseLlamaConfig to throw');
}

describe('loadLlamaConfig on the real example configs', () => {
  test('llama2-s', async () => {
    const c = await loadLlamaConfig(S);
    expect(c).toMatchObject({
      hiddenSize: 256, intermediateSize: 768, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 64,
      vocabSize: 32000, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false, dtype: 'float16',
      maxPositionEmbeddings: 4096, bosTokenId: 1, eosTokenId: 2,
    });
    expect(c.quantization).toBeUndefined();
    expect(c.raw.model_type).toBe('llama');
  });

  test('llama2-m is tied', async () => {
    const c = await loadLlamaConfig(M);
    expect(c).toMatchObject({ hiddenSize: 384, numHeads: 6, numKvHeads: 2, headDim: 64, numLayers: 8, tieWordEmbeddings: true });
  });

  test('llama-2-70b (GQA 64/8)', async () => {
    const c = await loadLlamaConfig(L70);
    expect(c).toMatchObject({ hiddenSize: 8192, intermediateSize: 28672, numLayers: 80, numHeads: 64, numKvHeads: 8, headDim: 128 });
  });
});

describe('loadLlamaConfig file errors', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'cfg-test-'));
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  test('missing folder', async () => {
    const dir = path.join(tmp, 'nope');
    await expect(loadLlamaConfig(dir)).rejects.toThrow(new UserError(`model folder not found: ${dir}`));
  });

  test('missing config.json', async () => {
    const dir = path.join(tmp, 'empty');
    await fsp.mkdir(dir);
    await expect(loadLlamaConfig(dir)).rejects.toThrow(`no config.json in model folder ${dir}`);
  });

  test('invalid JSON', async () => {
    const dir = path.join(tmp, 'bad');
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'config.json'), '{"model_type": "llama",');
    const err = await loadLlamaConfig(dir).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/config\.json: invalid JSON/);
  });

  test('a file instead of a folder', async () => {
    const file = path.join(tmp, 'file');
    await fsp.writeFile(file, 'x');
    await expect(loadLlamaConfig(file)).rejects.toThrow(UserError);
  });
});

describe('parseLlamaConfig variants', () => {
  let base: Record<string, unknown>;
  beforeAll(async () => {
    base = await readJson(S);
  });
  const parse = (patch: Record<string, unknown>, drop: string[] = []) => {
    const json: Record<string, unknown> = { ...base, ...patch };
    for (const k of drop) delete json[k];
    return parseLlamaConfig(json, 'config.json');
  };

  test('newer keys: dtype, rope_parameters.rope_theta, explicit head_dim', () => {
    const c = parse(
      { dtype: 'bfloat16', rope_parameters: { rope_type: 'default', rope_theta: 500000 }, head_dim: 128 },
      ['torch_dtype', 'rope_theta', 'rope_scaling'],
    );
    expect(c.dtype).toBe('bfloat16');
    expect(c.ropeTheta).toBe(500000);
    expect(c.headDim).toBe(128);
  });

  test('defaults: kv heads = heads, untied, rope_theta 10000, head_dim = hidden/heads', () => {
    const c = parse({}, ['num_key_value_heads', 'tie_word_embeddings', 'rope_theta', 'rope_scaling', 'head_dim']);
    expect(c.numKvHeads).toBe(4);
    expect(c.tieWordEmbeddings).toBe(false);
    expect(c.ropeTheta).toBe(10000);
    expect(c.headDim).toBe(64);
  });

  test('eos list, null bos, quantization_config kept raw', () => {
    const q = { quant_method: 'gptq', bits: 4, group_size: 128 };
    const c = parse({ eos_token_id: [128001, 128009], bos_token_id: null, quantization_config: q });
    expect(c.eosTokenId).toEqual([128001, 128009]);
    expect(c.bosTokenId).toBeNull();
    expect(c.quantization).toEqual(q);
  });

  test('model_type other than llama', () => {
    expect(errorFor(base, { model_type: 'mistral' })).toBe('config.json: model_type "mistral" is not supported (only llama)');
    expect(errorFor(base, {}, ['model_type'])).toMatch(/model_type is missing/);
  });

  test('architectures other than LlamaForCausalLM', () => {
    expect(errorFor(base, { architectures: ['LlamaForSequenceClassification'] })).toBe(
      'config.json: architectures ["LlamaForSequenceClassification"] is not supported (only LlamaForCausalLM)',
    );
  });

  test('hidden_act other than silu', () => {
    expect(errorFor(base, { hidden_act: 'gelu' })).toBe('config.json: hidden_act "gelu" is not supported (only silu)');
  });

  test('rope_scaling non-null and rope_parameters.rope_type other than default', () => {
    expect(errorFor(base, { rope_scaling: { rope_type: 'llama3', factor: 8 } })).toMatch(/rope_scaling \(type "llama3"\) is not supported/);
    expect(errorFor(base, { rope_parameters: { rope_type: 'yarn', rope_theta: 10000 } }, ['rope_theta'])).toMatch(
      /rope_parameters\.rope_type "yarn" is not supported/,
    );
  });

  test('attention_bias / mlp_bias true', () => {
    expect(errorFor(base, { attention_bias: true })).toMatch(/attention_bias: true is not supported/);
    expect(errorFor(base, { mlp_bias: true })).toMatch(/mlp_bias: true is not supported/);
    expect(parse({ attention_bias: false, mlp_bias: false }).hiddenSize).toBe(256);
  });

  test('pretraining_tp > 1', () => {
    expect(errorFor(base, { pretraining_tp: 2 })).toBe('config.json: pretraining_tp 2 is not supported (only 1)');
  });

  test('GQA: num_key_value_heads must divide num_attention_heads', () => {
    expect(errorFor(base, { num_key_value_heads: 3 })).toMatch(/num_key_value_heads 3 must divide num_attention_heads 4/);
  });

  test.each(['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size'])(
    'missing or invalid %s',
    (key) => {
      expect(errorFor(base, {}, [key])).toBe(`config.json: ${key} is missing (a positive integer is required)`);
      expect(errorFor(base, { [key]: 12.5 })).toMatch(new RegExp(`${key} must be a positive integer, got 12.5`));
      expect(errorFor(base, { [key]: '256' })).toMatch(new RegExp(`${key} must be a positive integer, got "256"`));
      expect(errorFor(base, { [key]: 0 })).toMatch(/must be a positive integer/);
    },
  );

  test('hidden not divisible by heads without head_dim', () => {
    expect(errorFor(base, { num_attention_heads: 3, num_key_value_heads: 3 })).toMatch(/not divisible by num_attention_heads 3/);
  });

  test('unsupported dtype and bad scalar types', () => {
    expect(errorFor(base, { torch_dtype: 'float8_e4m3fn' })).toMatch(/torch_dtype "float8_e4m3fn" is not supported/);
    expect(errorFor(base, { tie_word_embeddings: 'yes' })).toMatch(/tie_word_embeddings must be true or false/);
    expect(errorFor(base, { rms_norm_eps: -1 })).toMatch(/rms_norm_eps must be a positive number/);
    expect(errorFor(base, { eos_token_id: 'x' })).toMatch(/eos_token_id must be/);
  });

  test('not an object', () => {
    expect(() => parseLlamaConfig([1, 2], 'c.json')).toThrow('c.json: expected a JSON object, got an array');
    expect(() => parseLlamaConfig(null, 'c.json')).toThrow(UserError);
  });
});
