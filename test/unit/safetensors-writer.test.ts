/** The streaming writer, atomic writes, and sharded checkpoints. */
import { promises as fs } from 'fs';
import * as path from 'path';
import { atomicWriteFile, tempPathFor } from '../../src/io/atomic';
import { Checkpoint } from '../../src/io/checkpoint';
import { SafetensorsFile } from '../../src/io/safetensors-reader';
import { SafetensorsWriter, TensorData, writeSafetensors } from '../../src/io/safetensors-writer';
import {
  planShards,
  shardFileName,
  writeShardedCheckpoint,
  writeShardedCheckpointFrom,
} from '../../src/io/sharded-writer';
import { cleanupTmp, expectUserError, listDir, makeTmp, patternBytes } from './safetensors-fixtures';

afterAll(cleanupTmp);

const specs = [
  { name: 'a', dtype: 'F32' as const, shape: [2, 3] },
  { name: 'b', dtype: 'U8' as const, shape: [5] },
  { name: 'c', dtype: 'F16' as const, shape: [] },
];

describe('atomicWriteFile', () => {
  test('writes, replaces, and leaves only the target', async () => {
    const dir = await makeTmp();
    const file = path.join(dir, 'config.json');
    await atomicWriteFile(file, '{"a":1}');
    await atomicWriteFile(file, new Uint8Array([0x7b, 0x7d]));
    expect(await fs.readFile(file, 'utf8')).toBe('{}');
    expect(await listDir(dir)).toEqual(['config.json']);
  });

  test('tempPathFor is a fresh sibling name', () => {
    const t = tempPathFor('/x/y/model.safetensors');
    expect(t).toMatch(new RegExp(`^/x/y/model\\.safetensors\\.tmp-${process.pid}-[0-9a-f]{12}$`));
    expect(tempPathFor('/x/y/z')).not.toBe(tempPathFor('/x/y/z'));
  });

  test('a missing folder gives a UserError', async () => {
    const dir = await makeTmp();
    await expectUserError(atomicWriteFile(path.join(dir, 'no', 'f.json'), 'x'), /cannot write .*no\/f\.json: no such file/);
    expect(await listDir(dir)).toEqual([]);
  });

  test('a failed rename removes the temp file', async () => {
    const dir = await makeTmp();
    const target = path.join(dir, 'target');
    await fs.mkdir(path.join(target, 'sub'), { recursive: true }); // renaming a file over a non-empty folder fails
    await expectUserError(atomicWriteFile(target, 'data'), /cannot write .*target: /);
    expect(await listDir(dir)).toEqual(['target']);
  });
});

describe('SafetensorsWriter', () => {
  const data = {
    a: new Float32Array([1, 2, 3, 4, 5, 6]),
    b: new Uint8Array([9, 8, 7, 6, 5]),
    c: new Uint16Array([0x3c00]),
  };

  test('tensors written in any order, file appears only on close', async () => {
    const dir = await makeTmp();
    const file = path.join(dir, 'out.safetensors');
    const w = await SafetensorsWriter.create(file, specs, { format: 'pt' });
    await w.write('c', data.c);
    await w.write('b', data.b);
    expect(w.pending()).toEqual(['a']);
    await w.write('a', data.a);
    expect(await listDir(dir)).toEqual([path.basename(w.tempPath)]);
    await w.close();
    expect(await listDir(dir)).toEqual(['out.safetensors']);
    const st = await SafetensorsFile.open(file);
    expect(st.names()).toEqual(['a', 'c', 'b']); // F32, F16, U8
    expect(new Float32Array(new Uint8Array(await st.read('a')).buffer)).toEqual(data.a);
    expect([...(await st.read('b'))]).toEqual([...data.b]);
    expect((await st.read('c')).readUInt16LE(0)).toBe(0x3c00);
    await st.close();
  });

  test('rejects a wrong byte length, unknown names and double writes', async () => {
    const dir = await makeTmp();
    const w = await SafetensorsWriter.create(path.join(dir, 'x.safetensors'), specs);
    await expect(w.write('a', new Uint8Array(20))).rejects.toThrow(/tensor "a" \(F32 \[2, 3\]\) needs 24 bytes, got 20/);
    await expect(w.write('zz', new Uint8Array(1))).rejects.toThrow(/tensor "zz" is not one of the tensors/);
    await w.write('b', data.b);
    await expect(w.write('b', data.b)).rejects.toThrow(/tensor "b" was already written/);
    expect(w.pending()).toEqual(['a', 'c']);
    await w.abort();
    expect(await listDir(dir)).toEqual([]);
  });

  test('close() with unwritten tensors fails and leaves nothing', async () => {
    const dir = await makeTmp();
    const file = path.join(dir, 'x.safetensors');
    await fs.writeFile(file, 'old');
    const w = await SafetensorsWriter.create(file, specs);
    await w.write('a', data.a);
    await expect(w.close()).rejects.toThrow(/2 tensor\(s\) never written: "c", "b"; the file was not created/);
    expect(await listDir(dir)).toEqual(['x.safetensors']);
    expect(await fs.readFile(file, 'utf8')).toBe('old');
    await w.abort(); // harmless
    await expect(w.write('b', data.b)).rejects.toThrow(/write\(\) on a writer that is aborted/);
  });

  test('abort() removes the temp file and keeps the old target', async () => {
    const dir = await makeTmp();
    const file = path.join(dir, 'x.safetensors');
    await fs.writeFile(file, 'old');
    const w = await SafetensorsWriter.create(file, specs);
    await w.write('a', data.a);
    await w.abort();
    await w.abort();
    expect(await listDir(dir)).toEqual(['x.safetensors']);
    expect(await fs.readFile(file, 'utf8')).toBe('old');
  });

  test('creating in a missing folder is a UserError and leaves no temp file', async () => {
    const dir = await makeTmp();
    await expectUserError(
      SafetensorsWriter.create(path.join(dir, 'missing', 'x.safetensors'), specs),
      /cannot write .*missing\/x\.safetensors: no such file/,
    );
    await expectUserError(
      writeSafetensors(path.join(dir, 'missing', 'y.safetensors'), []),
      /cannot write .*y\.safetensors/,
    );
    expect(await listDir(dir)).toEqual([]);
  });

  test('bad specs are rejected before anything is written', async () => {
    const dir = await makeTmp();
    const f = path.join(dir, 'x.safetensors');
    await expect(SafetensorsWriter.create(f, [specs[0], specs[0]])).rejects.toThrow(/tensor "a" is listed twice/);
    await expect(SafetensorsWriter.create(f, [{ name: '__metadata__', dtype: 'U8', shape: [1] }])).rejects.toThrow(/cannot be a tensor name/);
    await expect(SafetensorsWriter.create(f, [{ name: 'x', dtype: 'Q4' as never, shape: [1] }])).rejects.toThrow(/unknown dtype "Q4"/);
    await expect(SafetensorsWriter.create(f, [{ name: 'x', dtype: 'U8', shape: [-1] }])).rejects.toThrow(/bad shape \[-1\]/);
    expect(await listDir(dir)).toEqual([]);
  });
});

describe('sharded checkpoints', () => {
  const mk = (name: string, n: number, seed: number): TensorData => ({
    name,
    dtype: 'F16',
    shape: [n],
    data: patternBytes(n * 2, seed),
  });

  test('planShards is greedy in order; a big tensor gets its own shard', () => {
    const s = [mk('a', 10, 1), mk('b', 10, 2), mk('c', 30, 3), mk('d', 5, 4), mk('e', 5, 5)]; // 20, 20, 60, 10, 10 bytes
    expect(planShards(s, 40).map((g) => g.map((t) => t.name))).toEqual([['a', 'b'], ['c'], ['d', 'e']]);
    expect(planShards(s).length).toBe(1);
    expect(planShards([], 10)).toEqual([[]]);
    expect(shardFileName(0, 3)).toBe('model-00001-of-00003.safetensors');
    expect(shardFileName(0, 1)).toBe('model.safetensors');
  });

  test('sharded write, index, and Checkpoint reads every tensor back', async () => {
    const dir = path.join(await makeTmp(), 'out-model'); // created by the writer
    const tensors = [
      mk('model.layers.0.w', 100, 1),
      mk('model.layers.1.w', 100, 2),
      mk('lm_head.weight', 150, 3),
      mk('model.norm.weight', 50, 4),
      { name: 'model.scalar', dtype: 'I64' as const, shape: [], data: new BigInt64Array([-5n]) },
    ];
    const result = await writeShardedCheckpoint(dir, tensors, { maxShardBytes: 400 });
    const names = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
    expect(result.files).toEqual(names.map((n) => path.join(dir, n)));
    expect(result.totalSize).toBe(200 + 200 + 300 + 100 + 8);
    expect(await listDir(dir)).toEqual([...names, 'model.safetensors.index.json']);
    const index = JSON.parse(await fs.readFile(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index).toEqual({
      metadata: { total_size: 808 },
      weight_map: {
        'lm_head.weight': names[1],
        'model.layers.0.w': names[0],
        'model.layers.1.w': names[0],
        'model.norm.weight': names[1],
        'model.scalar': names[2],
      },
    });
    expect(Object.keys(index.weight_map)).toEqual(Object.keys(index.weight_map).sort());

    const ckpt = await Checkpoint.open(dir);
    try {
      expect(ckpt.files()).toEqual(result.files);
      expect(ckpt.metadata).toEqual({ total_size: 808 });
      expect(ckpt.names().sort()).toEqual(tensors.map((t) => t.name).sort());
      for (const t of tensors) {
        expect(ckpt.info(t.name)).toMatchObject({ dtype: t.dtype, shape: t.shape });
        const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        expect((await ckpt.read(t.name)).equals(bytes)).toBe(true);
      }
    } finally {
      await ckpt.close();
    }
    const shard = await SafetensorsFile.open(result.files[0]);
    expect(shard.metadata).toEqual({ format: 'pt' });
    await shard.close();
  });

  test('one shard is a plain model.safetensors; stale files of an older checkpoint go', async () => {
    const dir = await makeTmp();
    const tensors = [mk('a', 10, 1), mk('b', 10, 2), mk('c', 10, 3)];
    await writeShardedCheckpoint(dir, tensors, { maxShardBytes: 20 });
    await fs.writeFile(path.join(dir, 'config.json'), '{}');
    expect((await listDir(dir)).length).toBe(5);

    const result = await writeShardedCheckpoint(dir, tensors);
    expect(result).toEqual({ files: [path.join(dir, 'model.safetensors')], index: null, totalSize: 60 });
    expect(await listDir(dir)).toEqual(['config.json', 'model.safetensors']);
    const ckpt = await Checkpoint.open(dir);
    expect(ckpt.names()).toEqual(['a', 'b', 'c']);
    expect((await ckpt.read('b')).equals(tensors[1].data as Buffer)).toBe(true);
    await ckpt.close();

    await writeShardedCheckpoint(dir, tensors, { maxShardBytes: 40 });
    expect(await listDir(dir)).toEqual([
      'config.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
      'model.safetensors.index.json',
    ]);
  });

  test('a failure while writing leaves the folder as it was', async () => {
    const dir = await makeTmp();
    const tensors = [mk('a', 10, 1), mk('b', 10, 2), mk('c', 10, 3)];
    await writeShardedCheckpoint(dir, tensors);
    const before = await fs.readFile(path.join(dir, 'model.safetensors'));
    let calls = 0;
    const failing = writeShardedCheckpointFrom(
      dir,
      tensors,
      async (spec) => {
        if (++calls === 3) throw new Error('quantization failed');
        return tensors.find((t) => t.name === spec.name)!.data;
      },
      { maxShardBytes: 20 },
    );
    await expect(failing).rejects.toThrow('quantization failed');
    expect(await listDir(dir)).toEqual(['model.safetensors']);
    expect((await fs.readFile(path.join(dir, 'model.safetensors'))).equals(before)).toBe(true);
  });
});
