import { existsSync, promises as fs } from 'fs';
import * as path from 'path';
import {
  DTYPES,
  DType,
  bf16ToF32,
  dtypeSize,
  f16ToF32,
  f32ToBf16,
  f32ToF16Bits,
  isDType,
} from '../../src/io/dtypes';
import { Checkpoint } from '../../src/io/checkpoint';
import { buildHeader } from '../../src/io/safetensors-header';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { TensorData, writeSafetensors } from '../../src/io/safetensors-writer';
import { buildRaw, cleanupTmp, f32le, makeTmp, patternBytes, u64le } from './safetensors-fixtures';

afterAll(cleanupTmp);

describe('dtypes', () => {
  test('sizes and names', () => {
    expect(DTYPES.map((d) => dtypeSize(d))).toEqual([1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8]);
    expect(isDType('BF16')).toBe(true);
    expect(isDType('F128')).toBe(false);
    expect(isDType('toString')).toBe(false);
    expect(isDType(3)).toBe(false);
  });

  test('f16ToF32 known values', () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0xc000)).toBe(-2);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0x0400)).toBe(2 ** -14);
    expect(f16ToF32(0x7c00)).toBe(Infinity);
    expect(f16ToF32(0xfc00)).toBe(-Infinity);
    expect(f16ToF32(0x7e00)).toBeNaN();
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
  });

  test('f32ToF16Bits inverts f16ToF32 on all 65536 bit patterns', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const x = f16ToF32(bits);
      const back = f32ToF16Bits(x);
      if (Number.isNaN(x)) expect(Number.isNaN(f16ToF32(back))).toBe(true);
      else if (back !== bits) throw new Error(`0x${bits.toString(16)} -> ${x} -> 0x${back.toString(16)}`);
    }
  });

  test('f32ToF16Bits rounds to nearest even, overflows to inf, underflows through subnormals', () => {
    expect(f32ToF16Bits(65519)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // tie between 65504 and 2^16 -> even -> inf
    expect(f32ToF16Bits(1e9)).toBe(0x7c00);
    expect(f32ToF16Bits(-1e9)).toBe(0xfc00);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even (down)
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie with 0 -> 0
    expect(f32ToF16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(f32ToF16Bits(1.5 * 2 ** -24)).toBe(0x0002); // tie -> even
    expect(f32ToF16Bits(2.5 * 2 ** -24)).toBe(0x0002); // tie -> even
    expect(f32ToF16Bits(1023.5 * 2 ** -24)).toBe(0x0400); // carries into the smallest normal
    expect(f32ToF16Bits(1e-10)).toBe(0x0000);
    expect(f32ToF16Bits(-1e-10)).toBe(0x8000);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f16ToF32(f32ToF16Bits(NaN))).toBeNaN();
    expect(f32ToF16Bits(Infinity)).toBe(0x7c00);
  });

  test('f32ToF16Bits matches a brute-force nearest search on random floats', () => {
    const finite: number[] = [];
    for (let b = 0; b < 0x7c00; b++) finite.push(f16ToF32(b)); // ascending, non-negative
    const rnd = patternBytes(4 * 20000, 7);
    for (let i = 0; i < 20000; i++) {
      // random float32 bit patterns in [0, 2^17)
      const u = rnd.readUInt32LE(i * 4) % 0x48000000;
      const b = Buffer.alloc(4);
      b.writeUInt32LE(u);
      const x = b.readFloatLE(0);
      let lo = 0;
      let hi = finite.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (finite[mid] <= x) lo = mid;
        else hi = mid - 1;
      }
      let want: number;
      if (x >= 65520) want = 0x7c00;
      else if (lo === finite.length - 1) want = lo;
      else {
        const dLo = x - finite[lo];
        const dHi = finite[lo + 1] - x;
        want = dLo < dHi ? lo : dHi < dLo ? lo + 1 : lo % 2 === 0 ? lo : lo + 1;
      }
      if (f32ToF16Bits(x) !== want) throw new Error(`${x}: got 0x${f32ToF16Bits(x).toString(16)}, want 0x${want.toString(16)}`);
      if (f32ToF16Bits(-x) !== (want | 0x8000)) throw new Error(`-${x}: sign not kept`);
    }
  });

  test('bfloat16', () => {
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0x4049)).toBe(3.140625);
    expect(bf16ToF32(0xff80)).toBe(-Infinity);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bf16ToF32(f32ToBf16(NaN))).toBeNaN();
    for (let bits = 0; bits < 0x10000; bits++) {
      const x = bf16ToF32(bits);
      if (!Number.isNaN(x) && f32ToBf16(x) !== bits) throw new Error(`bf16 0x${bits.toString(16)}`);
    }
  });
});

describe('header layout (byte-exact)', () => {
  test('one F32 tensor, as the safetensors crate serializes it', () => {
    const data = f32le([0, 1, 2, 3, 4, 5]);
    const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(json.length).toBe(64); // no padding needed
    const expected = Buffer.concat([u64le(64), Buffer.from(json), data]);
    const { header, dataLength } = buildHeader([{ name: 'attn.0', dtype: 'F32', shape: [1, 2, 3] }]);
    expect(dataLength).toBe(24);
    expect(Buffer.concat([header, data])).toEqual(expected);
  });

  test('padding with spaces to a multiple of 8', async () => {
    const json = '{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}';
    expect(json.length).toBe(65);
    const data = f32le([0, 1, 2, 3, 4, 5]);
    const expected = Buffer.concat([u64le(72), Buffer.from(json), Buffer.from('       '), data]);
    const file = path.join(await makeTmp(), 'pad.safetensors');
    await writeSafetensors(file, [{ name: 'attn0', dtype: 'F32', shape: [1, 1, 2, 3], data }]);
    expect(await fs.readFile(file)).toEqual(expected);
  });

  test('empty file, and metadata first', () => {
    expect(buildHeader([]).header).toEqual(Buffer.concat([u64le(8), Buffer.from('{}      ')]));
    const meta = buildHeader([], { framework: 'pt' }).header;
    expect(meta).toEqual(Buffer.concat([u64le(40), Buffer.from('{"__metadata__":{"framework":"pt"}}     ')]));
  });

  test('tensors ordered by dtype (descending crate order), then name', () => {
    const specs = [
      { name: 'b', dtype: 'U8' as DType, shape: [1] },
      { name: 'a', dtype: 'U8' as DType, shape: [2] },
      { name: 'h', dtype: 'F16' as DType, shape: [] },
      { name: 'g', dtype: 'BF16' as DType, shape: [1] },
      { name: 'f', dtype: 'F32' as DType, shape: [1] },
      { name: 'd', dtype: 'F64' as DType, shape: [1] },
      { name: 'i', dtype: 'I64' as DType, shape: [1] },
      { name: 'z', dtype: 'BOOL' as DType, shape: [0] },
    ];
    const { header, entries } = buildHeader(specs, { format: 'pt' });
    expect(entries.map((e) => e.name)).toEqual(['i', 'd', 'f', 'g', 'h', 'a', 'b', 'z']);
    const json =
      '{"__metadata__":{"format":"pt"},' +
      '"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},' +
      '"d":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},' +
      '"f":{"dtype":"F32","shape":[1],"data_offsets":[16,20]},' +
      '"g":{"dtype":"BF16","shape":[1],"data_offsets":[20,22]},' +
      '"h":{"dtype":"F16","shape":[],"data_offsets":[22,24]},' +
      '"a":{"dtype":"U8","shape":[2],"data_offsets":[24,26]},' +
      '"b":{"dtype":"U8","shape":[1],"data_offsets":[26,27]},' +
      '"z":{"dtype":"BOOL","shape":[0],"data_offsets":[27,27]}}';
    const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
    expect(header).toEqual(Buffer.concat([u64le(padded.length), Buffer.from(padded)]));
  });

  test('names sort by UTF-8 bytes, non-ASCII kept as is', () => {
    const { entries, header } = buildHeader([
      { name: 'é', dtype: 'U8', shape: [1] },
      { name: 'z', dtype: 'U8', shape: [1] },
      { name: 'Z', dtype: 'U8', shape: [1] },
    ]);
    expect(entries.map((e) => e.name)).toEqual(['Z', 'z', 'é']);
    expect(header.toString('utf8')).toContain('"é":');
  });
});

describe('round trip', () => {
  test('every dtype, scalar, zero-size and multi-dim shapes', async () => {
    const shapes = [[], [0], [5], [2, 3], [2, 0, 4], [1, 1, 1, 3]];
    const tensors: TensorData[] = [];
    let seed = 1;
    for (const dtype of DTYPES) {
      for (const shape of shapes) {
        const n = shape.reduce((a, b) => a * b, 1) * dtypeSize(dtype);
        tensors.push({ name: `${dtype}.${shape.join('x') || 'scalar'}`, dtype, shape, data: patternBytes(n, seed++) });
      }
    }
    const file = path.join(await makeTmp(), 'all.safetensors');
    await writeSafetensors(file, tensors, { format: 'pt', note: 'ünïcode "quoted"' });
    const st = await SafetensorsFile.open(file);
    try {
      expect(st.metadata).toEqual({ format: 'pt', note: 'ünïcode "quoted"' });
      expect(st.names().sort()).toEqual(tensors.map((t) => t.name).sort());
      let total = 0;
      for (const t of tensors) {
        const info = st.info(t.name);
        expect(info).toMatchObject({ name: t.name, dtype: t.dtype, shape: t.shape, file });
        expect(info.byteLength).toBe(t.data.byteLength);
        expect(await st.read(t.name)).toEqual(Buffer.from(t.data as Uint8Array));
        total += t.data.byteLength;
      }
      const headerLen = Number((await fs.readFile(file)).readBigUInt64LE(0));
      expect(headerLen % 8).toBe(0);
      expect((await fs.stat(file)).size).toBe(8 + headerLen + total);
    } finally {
      await st.close();
    }
  });

  test('typed arrays and DataViews are written as their bytes', async () => {
    const floats = new Float32Array([1.5, -2, 3.25]);
    const big = new Float64Array([0, 1, 2, 3]);
    const view = new DataView(big.buffer, 8, 16); // [1, 2]
    const file = path.join(await makeTmp(), 'typed.safetensors');
    await writeSafetensors(file, [
      { name: 'f', dtype: 'F32', shape: [3], data: floats },
      { name: 'v', dtype: 'F64', shape: [2], data: view },
    ]);
    const st = await SafetensorsFile.open(file);
    const f = await st.read('f');
    expect([0, 1, 2].map((i) => f.readFloatLE(i * 4))).toEqual([1.5, -2, 3.25]);
    const v = await st.read('v');
    expect([v.readDoubleLE(0), v.readDoubleLE(8)]).toEqual([1, 2]);
    await st.close();
  });

  test('reads a header padded with extra spaces and tensors in any header order', async () => {
    const header = {
      b: { dtype: 'U8', shape: [2], data_offsets: [4, 6] },
      a: { dtype: 'I16', shape: [2], data_offsets: [0, 4] },
    };
    const file = path.join(await makeTmp(), 'hand.safetensors');
    await fs.writeFile(file, buildRaw(JSON.stringify(header) + '                ', Buffer.from([1, 2, 3, 4, 5, 6])));
    const st = await SafetensorsFile.open(file);
    expect(st.names()).toEqual(['a', 'b']);
    expect(st.metadata).toEqual({});
    expect(st.info('b').offset).toBe(8 + JSON.stringify(header).length + 16 + 4);
    expect([...(await st.read('b'))]).toEqual([5, 6]);
    expect([...(await st.read('a'))]).toEqual([1, 2, 3, 4]);
    await st.close();
  });
});

const REAL = path.resolve(__dirname, '../../../shared/models/llama2-s/model.safetensors');
const describeReal = existsSync(REAL) ? describe : describe.skip;

describeReal('real checkpoint llama2-s', () => {
  test('header and tensors', async () => {
    const st = await SafetensorsFile.open(REAL);
    try {
      expect(st.metadata).toEqual({ format: 'pt' });
      const embed = st.info('model.embed_tokens.weight');
      expect(embed).toMatchObject({ dtype: 'F16', shape: [32000, 256], byteLength: 32000 * 256 * 2, file: REAL });
      expect(st.has('lm_head.weight')).toBe(true);
      expect(st.info('lm_head.weight').shape).toEqual([32000, 256]);
      const norm = await st.read('model.norm.weight');
      const values = Array.from({ length: norm.length / 2 }, (_, i) => f16ToF32(norm.readUInt16LE(i * 2)));
      expect(values.every(Number.isFinite)).toBe(true);
    } finally {
      await st.close();
    }
  });

  test('rewriting it reproduces the Python-written file byte for byte', async () => {
    const st = await SafetensorsFile.open(REAL);
    const tensors: TensorData[] = [];
    for (const name of st.names()) {
      const { dtype, shape } = st.info(name);
      tensors.push({ name, dtype, shape, data: await st.read(name) });
    }
    await st.close();
    const out = path.join(await makeTmp(), 'copy.safetensors');
    await writeSafetensors(out, tensors, { format: 'pt' });
    const [a, b] = await Promise.all([fs.readFile(REAL), fs.readFile(out)]);
    expect(a.length).toBe(b.length);
    expect(a.equals(b)).toBe(true);
  });

  test('Checkpoint.open on the model folder (single file)', async () => {
    const ckpt = await Checkpoint.open(path.dirname(REAL));
    try {
      expect(ckpt.files()).toEqual([REAL]);
      expect(ckpt.has('lm_head.weight')).toBe(true);
      expect(ckpt.info('model.embed_tokens.weight').dtype).toBe('F16');
      expect((await ckpt.read('model.norm.weight')).length).toBe(512);
      expect(ckpt.metadata).toEqual({ format: 'pt' });
    } finally {
      await ckpt.close();
    }
  });
});
