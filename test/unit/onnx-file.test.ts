/**
 * OnnxModelWriter: small initializers inline, large ones in FILE.onnx.data at aligned offsets
 * with location/offset/length entries, the model decodable by onnx-proto, nothing left behind
 * on abort, and byte counts checked against dims.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXTERNAL_MIN_BYTES, IR_VERSION, OnnxModelWriter, OnnxType, onnx, readOnnxModel } from '../../src/io/onnx-file';

let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-onnx-file-')); });
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('inline and external initializers round-trip', async () => {
  const file = path.join(tmp, 'm.onnx');
  const w = await OnnxModelWriter.create(file);
  const small = new Float32Array([1, 2, 3]);
  const big = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5);
  const big2 = Uint8Array.from({ length: 3000 }, (_, i) => i & 255);
  await w.add({ name: 'small', dataType: OnnxType.FLOAT, dims: [3], bytes: new Uint8Array(small.buffer) });
  await w.add({ name: 'big', dataType: OnnxType.FLOAT, dims: [10, 100], bytes: new Uint8Array(big.buffer) });
  await w.add({ name: 'big2', dataType: OnnxType.UINT8, dims: [3000], bytes: big2 });
  await w.finish({ irVersion: IR_VERSION, opsetImport: [{ domain: '', version: 17 }], graph: { name: 'g' } });
  expect(fs.readdirSync(tmp).filter((f) => f.startsWith('m.onnx')).sort()).toEqual(['m.onnx', 'm.onnx.data']);

  const m = await readOnnxModel(file);
  const inits = new Map(m.graph!.initializer!.map((t) => [t.name, t]));
  expect(Array.from(new Float32Array(new Uint8Array(inits.get('small')!.rawData!).buffer))).toEqual([1, 2, 3]);
  const data = fs.readFileSync(`${file}.data`);
  for (const [name, bytes] of [['big', new Uint8Array(big.buffer)], ['big2', big2]] as const) {
    const t = inits.get(name)!;
    expect(t.dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
    const kv = Object.fromEntries(t.externalData!.map((e) => [e.key, e.value]));
    expect(kv.location).toBe('m.onnx.data');
    expect(Number(kv.offset) % 4096).toBe(0);
    expect(Number(kv.length)).toBe(bytes.byteLength);
    expect(new Uint8Array(data.subarray(Number(kv.offset), Number(kv.offset) + Number(kv.length)))).toEqual(bytes);
  }
  expect(EXTERNAL_MIN_BYTES).toBeGreaterThan(small.byteLength);
});

test('a byte count that does not match dims is refused; abort leaves no files', async () => {
  const file = path.join(tmp, 'bad.onnx');
  const w = await OnnxModelWriter.create(file);
  await expect(w.add({ name: 'x', dataType: OnnxType.FLOAT16, dims: [4], bytes: new Uint8Array(6) }))
    .rejects.toThrow('x: expected 8 bytes for dims [4], got 6');
  await w.abort();
  expect(fs.readdirSync(tmp).filter((f) => f.startsWith('bad.onnx'))).toEqual([]);
});
