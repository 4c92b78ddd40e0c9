/**
 * The work folder of a branch build (src/gptq/branch-work.ts): layer files written as layers
 * finish, commits only at checkpoints, fp16 activations when nothing is lost, and what a resume
 * finds after a run that died between checkpoints.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { BranchWork, layerFileName } from '../../src/gptq/branch-work';
import { f16Activations } from '../../src/gptq/engine';
import { f32ArrayToF16 } from '../../src/native';
import { SafetensorsFile } from '../../src/io/safetensors-reader';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'branch-work-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

const init = {
  branch: 'main',
  settings: { bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true, rtn: false },
  base: { model: 'm', revision: null, fingerprint: 'f' },
  calibration: null,
  device: 'cpu' as const,
  numLayers: 3,
};
const tensor = (v: number) => [{ name: 't', dtype: 'F32' as const, shape: [2], data: new Float32Array([v, v]) }];

async function dtypes(file: string): Promise<string[]> {
  const f = await SafetensorsFile.open(file);
  try {
    return f.names().map((n) => f.info(n).dtype);
  } finally {
    await f.close();
  }
}

test('fp16-valued activations are kept as F16; a resume drops layers past the last checkpoint', async () => {
  const dir = path.join(tmp, 'main.partial');
  const work = await BranchWork.open(dir, init, false);
  // Two windows of values that fp16 holds exactly (what round16 activations are).
  const x = [Float32Array.from({ length: 64 }, (_, i) => (i - 20) / 8), Float32Array.from({ length: 64 }, (_, i) => 2 ** (i % 12))];
  await work.writeLayer(0, tensor(0));
  await work.checkpoint(0, { f32: x }, { forward: 1 });
  await work.writeLayer(1, tensor(1)); // finished, but no checkpoint: not committed
  expect(await dtypes(path.join(dir, 'x-00000.safetensors'))).toEqual(['F16', 'F16']);

  const resumed = await BranchWork.open(dir, init, true);
  expect(resumed.layersDone).toBe(1);
  expect(resumed.resumes).toBe(1);
  expect(fs.existsSync(path.join(dir, layerFileName(0)))).toBe(true);
  expect(fs.existsSync(path.join(dir, layerFileName(1)))).toBe(false);
  const back = await resumed.loadActivations();
  expect('f32' in back).toBe(false);
  if ('f32' in back) return;
  expect(back.windows).toBe(2);
  const bits = await back.read(0, 2);
  expect(Array.from(bits)).toEqual([...(await f32ArrayToF16(x[0])).bits, ...(await f32ArrayToF16(x[1])).bits]);
});

test('QEP: the fp16 path\'s activations are checkpointed beside the quantized path\'s (xf.W) and read back', async () => {
  const dir = path.join(tmp, 'q.partial');
  const qinit = { ...init, settings: { ...init.settings, qep: 0.5 } };
  const work = await BranchWork.open(dir, qinit, false);
  const x = [Float32Array.from({ length: 32 }, (_, i) => (i - 7) / 4), Float32Array.from({ length: 32 }, (_, i) => i / 16)];
  const xf = [Float32Array.from({ length: 32 }, (_, i) => (i - 9) / 4), Float32Array.from({ length: 32 }, (_, i) => 1 + i * 1e-6)];
  await work.writeLayer(0, tensor(0));
  await work.checkpoint(0, { f32: x, fp: { f32: xf } }, {});
  const f = await SafetensorsFile.open(path.join(dir, 'x-00000.safetensors'));
  expect(f.names().sort()).toEqual(['x.0', 'x.1', 'xf.0', 'xf.1']);
  await f.close();
  // Another α is another build: refused on resume.
  await expect(BranchWork.open(dir, { ...init, settings: { ...init.settings, qep: 0.25 } }, true)).rejects.toThrow('with other settings');
  const back = await (await BranchWork.open(dir, qinit, true)).loadActivations();
  expect('f32' in back).toBe(false); // x: fp16 values, read back as fp16 bits
  if ('f32' in back) return;
  expect(Array.from(await back.read(0, 2))).toEqual([...(await f32ArrayToF16(x[0])).bits, ...(await f32ArrayToF16(x[1])).bits]);
  // xf.1 is not all fp16 values: the fp16 path comes back as fp32 windows, bit for bit.
  expect(back.fp && 'f32' in back.fp && back.fp.f32.map((a) => Array.from(a))).toEqual(xf.map((a) => Array.from(a)));
});

test('QEP on the CUDA engine: both paths as fp16 bits (read a few windows at a time) are checkpointed as x.W and xf.W', async () => {
  const dir = path.join(tmp, 'qc.partial');
  const qinit = { ...init, settings: { ...init.settings, qep: 0.5 } };
  const work = await BranchWork.open(dir, qinit, false);
  const xbits = Uint16Array.from({ length: 3 * 16 }, (_, i) => 0x3c00 + i);
  const xfbits = Uint16Array.from({ length: 3 * 16 }, (_, i) => 0xbc00 + 2 * i);
  const reads: string[] = [];
  const f16 = (bits: Uint16Array, who: string) => ({
    windows: 3, perWindow: 16,
    read: async (first: number, count: number) => { reads.push(who); return bits.slice(first * 16, (first + count) * 16); },
  });
  await work.writeLayer(0, tensor(0));
  await work.checkpoint(0, { ...f16(xbits, 'x'), fp: f16(xfbits, 'xf') }, {});
  expect(reads).toEqual(['x', 'xf']);
  expect(await dtypes(path.join(dir, 'x-00000.safetensors'))).toEqual(Array(6).fill('F16'));
  const back = await (await BranchWork.open(dir, qinit, true)).loadActivations();
  if ('f32' in back || !back.fp || 'f32' in back.fp) throw new Error('expected fp16 bits for both paths');
  expect(Array.from(await back.read(0, 3))).toEqual(Array.from(xbits));
  expect(Array.from(await back.fp.read(0, 3))).toEqual(Array.from(xfbits));
  // The fp16 path must match x's shape.
  const other = await BranchWork.open(path.join(tmp, 'qc2.partial'), qinit, false);
  await other.writeLayer(0, tensor(0));
  await expect(other.checkpoint(0, { ...f16(xbits, 'x'), fp: { ...f16(xfbits, 'xf'), windows: 2 } }, {})).rejects.toThrow('same shape as x');
});

test('activations that fp16 does not hold are kept as F32, bit for bit', async () => {
  const dir = path.join(tmp, 'w.partial');
  const work = await BranchWork.open(dir, init, false);
  const x = [Float32Array.from({ length: 16 }, (_, i) => 1 + i * 1e-6)];
  await work.writeLayer(0, tensor(0));
  await work.checkpoint(0, { f32: x }, {});
  expect(await dtypes(path.join(dir, 'x-00000.safetensors'))).toEqual(['F32']);
  const back = await (await BranchWork.open(dir, init, true)).loadActivations();
  expect('f32' in back && Array.from(back.f32[0])).toEqual(Array.from(x[0]));
});

test('fp16 activations read a few windows at a time are written whole; the final commit drops them', async () => {
  const dir = path.join(tmp, 'r.partial');
  const work = await BranchWork.open(dir, init, false);
  const all = Uint16Array.from({ length: 5 * 8 }, (_, i) => 0x3c00 + i);
  const reads: [number, number][] = [];
  const src = f16Activations(all, 5);
  await work.writeLayer(0, tensor(0));
  await work.checkpoint(0, { ...src, read: (first, count) => (reads.push([first, count]), src.read(first, count)) }, {});
  expect(reads.reduce((n, [, c]) => n + c, 0)).toBe(5);
  const back = await (await BranchWork.open(dir, init, true)).loadActivations();
  expect(!('f32' in back) && Array.from(await back.read(0, 5))).toEqual(Array.from(all));
  const w = await BranchWork.open(dir, init, true);
  await w.writeLayer(1, tensor(1));
  await w.writeLayer(2, tensor(2));
  await w.checkpoint(2, null, {});
  expect(fs.readdirSync(dir).sort()).toEqual([layerFileName(0), layerFileName(1), layerFileName(2), 'lock', 'state.json']);
});

test('a folder another live process is building is refused; a dead one\'s lock is taken over', async () => {
  const dir = path.join(tmp, 'locked.partial');
  fs.mkdirSync(dir);
  const other = spawn('sleep', ['30']);
  try {
    fs.writeFileSync(path.join(dir, 'lock'), JSON.stringify({ pid: other.pid, host: os.hostname() }));
    await expect(BranchWork.open(dir, init, false)).rejects.toThrow(`${dir} is being built by another gptq process (pid ${other.pid})`);
    fs.writeFileSync(path.join(dir, 'lock'), JSON.stringify({ pid: other.pid, host: 'elsewhere' }));
    await expect(BranchWork.open(dir, init, false)).rejects.toThrow(`is being built by pid ${other.pid} on elsewhere; if that run is gone, remove`);
  } finally {
    other.kill();
  }
  const gone = spawnSync('true').pid; // exited: its pid is free
  fs.writeFileSync(path.join(dir, 'lock'), JSON.stringify({ pid: gone, host: os.hostname() }));
  const work = await BranchWork.open(dir, init, false);
  expect(JSON.parse(fs.readFileSync(path.join(dir, 'lock'), 'utf8')).pid).toBe(process.pid);
  await work.remove();
  expect(fs.existsSync(dir)).toBe(false);
});
