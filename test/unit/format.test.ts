/** The AutoGPTQ v1 checkpoint format as data (src/gptq/format.ts). */
import { UserError } from '../../src/errors';
import {
  gIdxProblem, makeQuantizeConfig, numGroups, parseQuantizeConfig, pythonFloat, QuantizeConfigOptions,
  quantizedTensorNames, quantizedTensorSpecs, safetensorsMetadata,
} from '../../src/gptq/format';
import { refGIdx } from '../helpers/gptq-math-ref';

const OPTS: QuantizeConfigOptions = {
  bits: 4, groupSize: 128, dampPercent: 0.01, actOrder: true, staticGroups: false, sym: true,
  trueSequential: true, modelNameOrPath: 'meta-llama/Llama-2-7b-hf', modelFileBaseName: 'model',
};

function userError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return (e as Error).message;
  }
  throw new Error('expected a UserError');
}

describe('makeQuantizeConfig', () => {
  test("fields and key order are AutoGPTQ's BaseQuantizeConfig.to_dict()", () => {
    const cfg = makeQuantizeConfig(OPTS);
    // What json.dump(to_dict(), f, indent=2) writes for the same settings.
    expect(JSON.stringify(cfg, null, 2)).toBe(`{
  "bits": 4,
  "group_size": 128,
  "damp_percent": 0.01,
  "desc_act": true,
  "static_groups": false,
  "sym": true,
  "true_sequential": true,
  "model_name_or_path": "meta-llama/Llama-2-7b-hf",
  "model_file_base_name": "model",
  "quant_method": "gptq",
  "checkpoint_format": "gptq"
}`);
    expect(makeQuantizeConfig({ ...OPTS, groupSize: -1, modelNameOrPath: null })).toMatchObject({
      group_size: -1, model_name_or_path: null,
    });
  });

  test('rejects what AutoGPTQ rejects, naming the field and the value', () => {
    expect(userError(() => makeQuantizeConfig({ ...OPTS, bits: 5 }))).toBe('bits must be 2, 3, 4 or 8, got 5');
    expect(userError(() => makeQuantizeConfig({ ...OPTS, groupSize: 0 }))).toBe(
      'group_size must be -1 or a positive integer, got 0',
    );
    expect(userError(() => makeQuantizeConfig({ ...OPTS, dampPercent: 1 }))).toMatch(/damp_percent must be between 0 and 1/);
    expect(userError(() => makeQuantizeConfig({ ...OPTS, dampPercent: 0 }))).toMatch(/got 0$/);
  });
});

describe('parseQuantizeConfig', () => {
  const SRC = 'branch/quantize_config.json';

  test('reads back what makeQuantizeConfig writes', () => {
    const cfg = makeQuantizeConfig({ ...OPTS, bits: 3, groupSize: 64, staticGroups: true, sym: false });
    expect(parseQuantizeConfig(JSON.parse(JSON.stringify(cfg)), SRC)).toEqual(cfg);
  });

  test("TheBloke's quantize_config.json (no quant_method / checkpoint_format) takes the defaults", () => {
    const json = {
      bits: 4, group_size: 128, damp_percent: 0.1, desc_act: false, sym: true, true_sequential: true,
      model_name_or_path: null, model_file_base_name: 'model',
    };
    const cfg = parseQuantizeConfig(json, SRC);
    expect(cfg).toEqual({
      bits: 4, group_size: 128, damp_percent: 0.1, desc_act: false, static_groups: false, sym: true,
      true_sequential: true, model_name_or_path: null, model_file_base_name: 'model',
      quant_method: 'gptq', checkpoint_format: 'gptq',
    });
    expect(Object.keys(cfg)).toEqual(Object.keys(makeQuantizeConfig(OPTS)));
    // config.json's quantization_config carries "quant_method": "gptq" as well.
    expect(parseQuantizeConfig({ ...json, quant_method: 'gptq' }, 'config.json')).toEqual(cfg);
  });

  test('AutoGPTQ compat: case-insensitive keys, w_bit / q_group_size, missing optional fields', () => {
    const cfg = parseQuantizeConfig({ W_BIT: 8, q_group_size: -1, QUANT_METHOD: 'GPTQ' }, SRC);
    expect(cfg).toMatchObject({
      bits: 8, group_size: -1, damp_percent: 0.01, desc_act: true, static_groups: false, sym: true,
      true_sequential: true, model_name_or_path: null, model_file_base_name: 'model',
    });
  });

  test("GPTQModel's v1 config: damp_percent, static_groups, true_sequential from meta", () => {
    const json = {
      bits: 4, dynamic: null, group_size: 128, desc_act: true, sym: true, lm_head: false,
      quant_method: 'gptq', checkpoint_format: 'gptq', pack_dtype: 'int32',
      meta: { quantizer: ['gptqmodel:2.0.0'], damp_percent: 0.05, static_groups: true, true_sequential: false },
    };
    expect(parseQuantizeConfig(json, SRC)).toMatchObject({
      damp_percent: 0.05, static_groups: true, true_sequential: false, desc_act: true,
    });
  });

  test('unsupported formats and methods: one line naming the value', () => {
    const base = { bits: 4, group_size: 128 };
    expect(userError(() => parseQuantizeConfig({ ...base, checkpoint_format: 'gptq_v2' }, SRC))).toBe(
      `${SRC}: checkpoint_format 'gptq_v2' is not supported (only AutoGPTQ's v1 'gptq' format)`,
    );
    expect(userError(() => parseQuantizeConfig({ ...base, checkpoint_format: 'marlin' }, SRC))).toMatch(/'marlin'/);
    expect(userError(() => parseQuantizeConfig({ ...base, is_marlin_format: true }, SRC))).toMatch(/'marlin'/);
    expect(userError(() => parseQuantizeConfig({ ...base, quant_method: 'marlin' }, SRC))).toMatch(/'marlin'/);
    expect(userError(() => parseQuantizeConfig({ ...base, quant_method: 'awq' }, SRC))).toBe(
      `${SRC}: quant_method 'awq' is not supported (only 'gptq')`,
    );
    expect(userError(() => parseQuantizeConfig({ ...base, version: 'GEMM' }, SRC))).toMatch(/quant_method 'awq'/);
  });

  test('bad values', () => {
    const base = { bits: 4, group_size: 128 };
    expect(userError(() => parseQuantizeConfig({ ...base, bits: 5 }, SRC))).toBe(`${SRC}: bits must be 2, 3, 4 or 8, got 5`);
    expect(userError(() => parseQuantizeConfig({ ...base, bits: '4' }, SRC))).toBe(`${SRC}: bits must be 2, 3, 4 or 8, got "4"`);
    expect(userError(() => parseQuantizeConfig({ ...base, group_size: 0 }, SRC))).toBe(
      `${SRC}: group_size must be -1 or a positive integer, got 0`,
    );
    expect(userError(() => parseQuantizeConfig({ ...base, group_size: 1.5 }, SRC))).toMatch(/group_size .* got 1.5/);
    expect(userError(() => parseQuantizeConfig({ ...base, damp_percent: 2 }, SRC))).toMatch(/damp_percent .* got 2$/);
    expect(userError(() => parseQuantizeConfig({ ...base, desc_act: 'yes' }, SRC))).toBe(
      `${SRC}: desc_act must be true or false, got "yes"`,
    );
    expect(userError(() => parseQuantizeConfig({ ...base, model_name_or_path: 3 }, SRC))).toMatch(/model_name_or_path/);
    expect(userError(() => parseQuantizeConfig({ group_size: 128 }, SRC))).toBe(`${SRC}: bits is missing`);
    expect(userError(() => parseQuantizeConfig({ bits: 4 }, SRC))).toBe(`${SRC}: group_size is missing`);
    expect(userError(() => parseQuantizeConfig([4], SRC))).toBe(`${SRC}: the quantization config must be a JSON object`);
    expect(userError(() => parseQuantizeConfig(null, SRC))).toMatch(/must be a JSON object/);
  });
});

describe('safetensorsMetadata', () => {
  test("AutoGPTQ's save_quantized keys, order and str() values; our version instead of auto_gptq_version", () => {
    const md = safetensorsMetadata(makeQuantizeConfig({ ...OPTS, groupSize: -1, actOrder: false }), '9.9.9');
    expect(Object.entries(md)).toEqual([
      ['format', 'pt'],
      ['gptq_forge_version', '9.9.9'],
      ['gptq_bits', '4'],
      ['gptq_group_size', '-1'],
      ['gptq_desc_act', 'False'],
      ['gptq_damp_percent', '0.01'],
      ['gptq_checkpoint_format', 'gptq'],
      ['gptq_quant_method', 'gptq'],
    ]);
    expect(md).not.toHaveProperty('auto_gptq_version');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    expect(safetensorsMetadata(makeQuantizeConfig(OPTS)).gptq_forge_version).toBe(require('../../package.json').version);
    expect(safetensorsMetadata(makeQuantizeConfig(OPTS)).gptq_desc_act).toBe('True');
  });

  test("pythonFloat matches Python's str(float)", () => {
    const cases: [number, string][] = [
      [0.01, '0.01'], [0.1, '0.1'], [0.5, '0.5'], [0.0001, '0.0001'], [0.00001, '1e-05'],
      [2.5e-7, '2.5e-07'], [-0.003, '-0.003'], [1, '1.0'], [123.456, '123.456'], [0, '0.0'],
      [1e15, '1000000000000000.0'], [1e16, '1e+16'], [1.5e300, '1.5e+300'], [1 / 3, '0.3333333333333333'],
    ];
    for (const [x, s] of cases) expect([x, pythonFloat(x)]).toEqual([x, s]);
  });
});

describe('tensor names and specs', () => {
  test('names: <prefix>.qweight / .qzeros / .scales / .g_idx, no bias for Llama', () => {
    expect(quantizedTensorNames('model.layers.3.mlp.down_proj')).toEqual({
      qweight: 'model.layers.3.mlp.down_proj.qweight',
      qzeros: 'model.layers.3.mlp.down_proj.qzeros',
      scales: 'model.layers.3.mlp.down_proj.scales',
      g_idx: 'model.layers.3.mlp.down_proj.g_idx',
    });
  });

  test('Llama-2-7B shapes', () => {
    // q_proj: K = N = 4096; down_proj: K = 11008, N = 4096; gate_proj: K = 4096, N = 11008.
    expect(quantizedTensorSpecs('p', 4096, 11008, 4, 128)).toEqual([
      { name: 'p.qweight', dtype: 'I32', shape: [512, 11008] },
      { name: 'p.qzeros', dtype: 'I32', shape: [32, 1376] },
      { name: 'p.scales', dtype: 'F16', shape: [32, 11008] },
      { name: 'p.g_idx', dtype: 'I32', shape: [4096] },
    ]);
    expect(quantizedTensorSpecs('p', 11008, 4096, 3, 128).map((s) => s.shape)).toEqual([
      [1032, 4096], [86, 384], [86, 4096], [11008],
    ]);
    expect(quantizedTensorSpecs('p', 4096, 4096, 8, -1).map((s) => s.shape)).toEqual([
      [1024, 4096], [1, 1024], [1, 4096], [4096],
    ]);
    expect(quantizedTensorSpecs('p', 4096, 4096, 2, 32).map((s) => s.shape)).toEqual([
      [256, 4096], [128, 256], [128, 4096], [4096],
    ]);
    expect(numGroups(4096, 128)).toBe(32);
    expect(numGroups(4096, -1)).toBe(1);
    expect(numGroups(100, 32)).toBe(4); // ceil, as AutoGPTQ's QuantLinear
  });

  test('shapes AutoGPTQ cannot pack are a UserError', () => {
    expect(userError(() => quantizedTensorSpecs('m.x', 100, 64, 4, 128))).toBe(
      'm.x: in_features (K) = 100 is not a positive multiple of 32, which AutoGPTQ packing needs',
    );
    expect(userError(() => quantizedTensorSpecs('m.x', 64, 48, 4, 128))).toMatch(/out_features \(N\) = 48/);
    expect(userError(() => quantizedTensorSpecs('m.x', 64, 64, 5, 128))).toMatch(/bits must be/);
  });
});

describe('gIdxProblem', () => {
  function shuffled(k: number, seed: number): Int32Array {
    const p = Int32Array.from({ length: k }, (_, i) => i);
    let s = seed;
    for (let i = k - 1; i > 0; i--) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const j = s % (i + 1);
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  }

  test("accepts AutoGPTQ's g_idx for every permutation, group size and static_groups", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const k = 32 * (1 + (seed % 7));
      const perm = shuffled(k, seed);
      for (const g of [-1, 32, 64, k].filter((x) => x === -1 || k % x === 0)) {
        for (const st of [false, true]) {
          expect(gIdxProblem(refGIdx(k, g, perm, st), k, g, true, st)).toBeUndefined();
          expect(gIdxProblem(refGIdx(k, g, null, st), k, g, false, st)).toBeUndefined();
        }
      }
    }
  });

  test('no act-order or static groups: k // g; no groups: all 0', () => {
    expect(gIdxProblem([0, 0, 0, 0, 1, 1, 1, 1], 8, 4, false, false)).toBeUndefined();
    expect(gIdxProblem(new Array(8).fill(0), 8, -1, true, false)).toBeUndefined();
    expect(gIdxProblem([0, 0, 1, 0, 1, 1, 1, 0], 8, 4, false, false)).toBe('g_idx[2] = 1, expected 0 (no act-order or static groups)');
    expect(gIdxProblem([0, 0, 1, 0, 1, 1, 1, 0], 8, 4, true, true)).toBe('g_idx[2] = 1, expected 0 (no act-order or static groups)');
  });

  test('act-order: any grouping of exactly g columns per group', () => {
    const perm = Int32Array.from([3, 0, 7, 1, 6, 2, 5, 4]);
    expect(Array.from(refGIdx(8, 2, perm, false))).toEqual([0, 1, 2, 0, 3, 3, 2, 1]);
    expect(gIdxProblem([0, 1, 2, 0, 3, 3, 2, 1], 8, 2, true, false)).toBeUndefined();
    expect(gIdxProblem([0, 1, 2, 0, 3, 3, 2, 2], 8, 2, true, false)).toBe('group 1 has 1 columns, expected 2');
    expect(gIdxProblem([0, 1, 2, 0, 3, 4, 2, 1], 8, 2, true, false)).toBe('g_idx[5] = 4 is outside [0, 4)');
    expect(gIdxProblem([0, 1, 2, 0, 3, -1, 2, 1], 8, 2, true, false)).toBe('g_idx[5] = -1 is outside [0, 4)');
  });
});
