/** Broken files and folders: each gives one clear UserError line. */
import { execFileSync } from 'child_process';
import { promises as fs } from 'fs';
import * as path from 'path';
import { Checkpoint } from '../../src/io/checkpoint';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { writeSafetensors } from '../../src/io/safetensors-writer';
import { writeShardedCheckpoint } from '../../src/io/sharded-writer';
import { buildRaw, cleanupTmp, expectUserError, makeTmp, u64le } from './safetensors-fixtures';

let dir: string;
beforeAll(async () => {
  dir = await makeTmp();
});
afterAll(cleanupTmp);

let counter = 0;
/** Write `bytes` to a fresh file and return its path. */
async function fixture(bytes: Uint8Array): Promise<string> {
  const file = path.join(dir, `bad-${counter++}.safetensors`);
  await fs.writeFile(file, bytes);
  return file;
}

async function openBad(bytes: Uint8Array, re: RegExp): Promise<string> {
  const file = await fixture(bytes);
  const err = await expectUserError(SafetensorsFile.open(file), re);
  expect(err.message).toContain(file);
  return err.message;
}

const F32x4 = (offsets: [number, number]) => ({ w: { dtype: 'F32', shape: [4], data_offsets: offsets } });

describe('SafetensorsFile.open rejects', () => {
  test('a file shorter than 8 bytes', async () => {
    await openBad(Buffer.alloc(0), /too short to be safetensors \(0 bytes/);
    await openBad(Buffer.from([1, 2, 3, 4, 5]), /too short to be safetensors \(5 bytes/);
  });

  test('a header length past the end of the file', async () => {
    await openBad(Buffer.concat([u64le(1000), Buffer.from('{}')]), /header length 1000 runs past the end of the file \(10 bytes/);
  });

  test('an absurd header length', async () => {
    await openBad(Buffer.concat([u64le(2n ** 40n), Buffer.from('{}')]), /header length 1099511627776 is over the 100000000-byte limit/);
    await openBad(Buffer.from('PK\u0003\u0004 this is a zip file, not safetensors'), /over the 100000000-byte limit/);
  });

  test('a header that is not UTF-8, not JSON, or not an object', async () => {
    await openBad(Buffer.concat([u64le(4), Buffer.from([0x7b, 0xff, 0xfe, 0x7d])]), /header is not valid UTF-8/);
    await openBad(buildRaw('{"w": {"dtype": '), /header is not valid JSON \(/);
    await openBad(buildRaw('[1, 2]'), /header is not a JSON object/);
    await openBad(buildRaw('null'), /header is not a JSON object/);
  });

  test('an unknown dtype, naming the tensor and the dtype', async () => {
    const header = { 'layer.0.w': { dtype: 'F128', shape: [1], data_offsets: [0, 16] } };
    await openBad(buildRaw(header, Buffer.alloc(16)), /tensor "layer\.0\.w" has unknown dtype "F128"/);
    await openBad(buildRaw({ w: { shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(4)), /tensor "w": "dtype" is missing/);
  });

  test('a bad shape', async () => {
    const bad = (shape: unknown) => buildRaw({ w: { dtype: 'U8', shape, data_offsets: [0, 2] } }, Buffer.alloc(2));
    await openBad(bad([2, -1]), /tensor "w": shape \[2,-1\] is not a list of non-negative integers/);
    await openBad(bad([1.5]), /not a list of non-negative integers/);
    await openBad(bad('2'), /not a list of non-negative integers/);
    await openBad(bad(undefined), /shape undefined is not a list/);
  });

  test('bad data_offsets', async () => {
    await openBad(buildRaw(F32x4([16, 0]), Buffer.alloc(16)), /tensor "w": data_offsets \[16,0\] is not \[begin, end\]/);
    await openBad(buildRaw({ w: { dtype: 'U8', shape: [1], data_offsets: [0] } }, Buffer.alloc(1)), /data_offsets \[0\] is not/);
  });

  test('a byte length that does not match shape and dtype', async () => {
    await openBad(buildRaw(F32x4([0, 12]), Buffer.alloc(12)), /tensor "w": data_offsets \[0, 12\) hold 12 bytes but F32 \[4\] needs 16/);
  });

  test('data offsets past the end of the file (truncated)', async () => {
    const msg = await openBad(buildRaw(F32x4([0, 16]), Buffer.alloc(8)), /tensor "w" data \[0, 16\) runs past the end of the file/);
    expect(msg).toMatch(/data region is 8 bytes/);
  });

  test('a real file cut short', async () => {
    const file = path.join(dir, 'cut.safetensors');
    await writeSafetensors(file, [
      { name: 'a', dtype: 'F32', shape: [64], data: Buffer.alloc(256) },
      { name: 'b', dtype: 'F16', shape: [64], data: Buffer.alloc(128) },
    ]);
    const bytes = await fs.readFile(file);
    await openBad(bytes.subarray(0, bytes.length - 10), /tensor "b" data \[256, 384\) runs past the end of the file/);
  });

  test('overlapping tensors', async () => {
    const header = {
      a: { dtype: 'U8', shape: [8], data_offsets: [0, 8] },
      b: { dtype: 'U8', shape: [8], data_offsets: [4, 12] },
    };
    await openBad(buildRaw(header, Buffer.alloc(12)), /tensors "a" \[0, 8\) and "b" \[4, 12\) overlap/);
    const same = { a: header.a, b: { ...header.a } };
    await openBad(buildRaw(same, Buffer.alloc(8)), /tensors "a" \[0, 8\) and "b" \[0, 8\) overlap/);
  });

  test('gaps and leftover bytes in the data region', async () => {
    const header = {
      a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
      b: { dtype: 'U8', shape: [4], data_offsets: [8, 12] },
    };
    await openBad(buildRaw(header, Buffer.alloc(12)), /bytes \[4, 8\) of the data region belong to no tensor/);
    await openBad(buildRaw({ a: header.a }, Buffer.alloc(8)), /4 bytes after the last tensor's data belong to no tensor/);
  });

  test('__metadata__ values that are not strings', async () => {
    await openBad(buildRaw({ __metadata__: { total: 3 } }), /__metadata__ value of "total" is not a string/);
    await openBad(buildRaw({ __metadata__: 'pt' }), /"__metadata__" is not an object/);
  });

  test('a missing file, a folder, a FIFO (without hanging)', async () => {
    await expectUserError(SafetensorsFile.open(path.join(dir, 'nope.safetensors')), /cannot open .*nope\.safetensors: no such file/);
    await expectUserError(SafetensorsFile.open(dir), /is a folder, not a safetensors file/);
    const fifo = path.join(dir, 'fifo.safetensors');
    try {
      execFileSync('mkfifo', [fifo]);
    } catch {
      return; // no mkfifo here
    }
    await expectUserError(SafetensorsFile.open(fifo), /is not a regular file/);
  });

  test('info() of a missing tensor names it', async () => {
    const file = path.join(dir, 'ok.safetensors');
    await writeSafetensors(file, [{ name: 'x', dtype: 'U8', shape: [1], data: Buffer.from([7]) }]);
    const st = await SafetensorsFile.open(file);
    expect(() => st.info('zzz')).toThrow(/ok\.safetensors: no tensor named "zzz"/);
    await expect(st.read('zzz')).rejects.toThrow(/no tensor named "zzz"/);
    await st.close();
    await expect(st.read('x')).rejects.toThrow(/read after close/);
  });
});

describe('Checkpoint.open rejects', () => {
  const tensors = [
    { name: 'a', dtype: 'F32' as const, shape: [4], data: Buffer.alloc(16, 1) },
    { name: 'b', dtype: 'F32' as const, shape: [4], data: Buffer.alloc(16, 2) },
  ];

  test('a missing folder, a file, an empty folder', async () => {
    const missing = path.join(dir, 'no-such-model');
    await expectUserError(Checkpoint.open(missing), new RegExp(`^model folder not found: ${missing}$`));
    const file = path.join(dir, 'plain.txt');
    await fs.writeFile(file, 'x');
    await expectUserError(Checkpoint.open(file), /is not a folder/);
    const empty = path.join(dir, 'empty-model');
    await fs.mkdir(empty);
    await expectUserError(Checkpoint.open(empty), /^no model\.safetensors or model\.safetensors\.index\.json in .*empty-model$/);
  });

  test('an index naming a missing shard', async () => {
    const model = path.join(dir, 'missing-shard');
    await writeShardedCheckpoint(model, tensors, { maxShardBytes: 16 });
    await fs.rm(path.join(model, 'model-00002-of-00002.safetensors'));
    await expectUserError(
      Checkpoint.open(model),
      /model\.safetensors\.index\.json names shard "model-00002-of-00002\.safetensors" \(for tensor "b"\), which is missing/,
    );
  });

  test('a tensor listed in the index but absent from its shard', async () => {
    const model = path.join(dir, 'absent-tensor');
    await writeShardedCheckpoint(model, tensors, { maxShardBytes: 16 });
    const indexPath = path.join(model, 'model.safetensors.index.json');
    const index = JSON.parse(await fs.readFile(indexPath, 'utf8'));
    index.weight_map.c = 'model-00001-of-00002.safetensors';
    await fs.writeFile(indexPath, JSON.stringify(index));
    await expectUserError(
      Checkpoint.open(model),
      /tensor "c" is listed in shard "model-00001-of-00002\.safetensors", but that file does not contain it/,
    );
  });

  test('a broken index, and a broken shard', async () => {
    const model = path.join(dir, 'broken-index');
    await fs.mkdir(model);
    const indexPath = path.join(model, 'model.safetensors.index.json');
    await fs.writeFile(indexPath, '{"weight_map": ');
    await expectUserError(Checkpoint.open(model), /model\.safetensors\.index\.json: not valid JSON/);
    await fs.writeFile(indexPath, '{"metadata": {}}');
    await expectUserError(Checkpoint.open(model), /"weight_map" is missing or not an object/);
    await fs.writeFile(indexPath, JSON.stringify({ weight_map: { a: '../../etc/passwd' } }));
    await expectUserError(Checkpoint.open(model), /weight_map\["a"\] points outside the model folder/);
    await fs.writeFile(indexPath, JSON.stringify({ weight_map: { a: 'model-00001-of-00001.safetensors' } }));
    await fs.writeFile(path.join(model, 'model-00001-of-00001.safetensors'), Buffer.from([1, 2, 3]));
    await expectUserError(Checkpoint.open(model), /broken-index\/model-00001-of-00001\.safetensors: file is too short/);
  });

  test('a missing tensor name', async () => {
    const model = path.join(dir, 'fine');
    await writeShardedCheckpoint(model, tensors);
    const ckpt = await Checkpoint.open(model);
    expect(() => ckpt.info('nope')).toThrow(/checkpoint has no tensor named "nope"/);
    await ckpt.close();
  });
});
