import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freeDiskBytes } from '../../src/io/free-disk';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-free-disk-'));
  fs.writeFileSync(path.join(tmp, 'file'), 'x');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const statfsFree = (dir: string) => {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
};

test('a folder not created yet: the free space of its nearest existing ancestor', async () => {
  // bavail moves as other processes write: compare within a few MB
  const got = await freeDiskBytes(path.join(tmp, 'not', 'yet', 'there'));
  expect(Math.abs(got - statfsFree(tmp))).toBeLessThan(64e6);
  // the walk stops at the nearest one: the missing folders are tried, tmp answers
  const tried: unknown[] = [];
  await freeDiskBytes(path.join(tmp, 'not', 'yet', 'there'), (e) => (tried.push([e.code, e.path]), e.code === 'ENOENT'));
  expect(tried).toEqual(['not/yet/there', 'not/yet', 'not'].map((p) => ['ENOENT', path.join(tmp, p)]));
});

test('another statfs error is thrown unless walkUp allows it', async () => {
  const under = path.join(tmp, 'file', 'sub'); // ENOTDIR: a path below a file
  await expect(freeDiskBytes(under)).rejects.toMatchObject({ code: 'ENOTDIR' });
  const got = await freeDiskBytes(under, () => true);
  expect(Math.abs(got - statfsFree(tmp))).toBeLessThan(64e6);
});
