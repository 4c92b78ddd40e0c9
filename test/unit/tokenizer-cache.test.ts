/**
 * The token-id cache verifies what it reads: a header with the number of ids and their sha256;
 * a file that is truncated, padded, corrupted or in the old headerless layout is tokenized again
 * and rewritten, never used. (Replaces the expectations of tokenizer.test.ts's first
 * tokenizeCached test, which planted raw ids and expected them to be served.)
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTokenizer, readCached, tokenCachePath, tokenizeCached } from '../../src/data/tokenizer';
import { LLAMA2_S } from '../helpers/shared';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-token-cache-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const text = 'The quick brown fox.\n\n = Heading = \n';

function cacheFile(ids: number[]): Buffer {
  const body = Buffer.alloc(ids.length * 4);
  ids.forEach((v, i) => body.writeInt32LE(v, 4 * i));
  const count = Buffer.alloc(8);
  count.writeBigUInt64LE(BigInt(ids.length));
  return Buffer.concat([Buffer.from('GPTQTOK2', 'latin1'), count, createHash('sha256').update(body).digest(), body]);
}

test('layout: magic, count, sha256 of the ids, the ids; a valid file is served', async () => {
  const cacheDir = path.join(tmp, 'a');
  const expected = Array.from((await loadTokenizer(LLAMA2_S)).encode(text, { addBos: true }));
  expect(Array.from(await tokenizeCached(LLAMA2_S, text, { addBos: true, cacheDir }))).toEqual(expected);
  const file = tokenCachePath(LLAMA2_S, text, { addBos: true, cacheDir });
  expect(fs.readFileSync(file).equals(cacheFile(expected))).toBe(true);
  expect(fs.readdirSync(path.dirname(file))).toHaveLength(1); // no temporary file left
  fs.writeFileSync(file, cacheFile([7, 3]));
  expect(Array.from(await tokenizeCached(LLAMA2_S, text, { addBos: true, cacheDir }))).toEqual([7, 3]);
});

test.each([
  ['truncated by one id', (b: Buffer) => b.subarray(0, b.length - 4)],
  ['truncated to the header', (b: Buffer) => b.subarray(0, 48)],
  ['padded', (b: Buffer) => Buffer.concat([b, Buffer.alloc(4)])],
  ['one id changed', (b: Buffer) => { const c = Buffer.from(b); c[52] ^= 1; return c; }],
  ['the digest changed', (b: Buffer) => { const c = Buffer.from(b); c[20] ^= 1; return c; }],
  ['the count changed', (b: Buffer) => { const c = Buffer.from(b); c[8] ^= 1; return c; }],
  ['the old headerless layout', (b: Buffer) => b.subarray(48)],
  ['empty', () => Buffer.alloc(0)],
])('%s: tokenized again and rewritten', async (_what, damage) => {
  const cacheDir = path.join(tmp, `d-${_what.replace(/\W/g, '')}`);
  const ids = Array.from(await tokenizeCached(LLAMA2_S, text, { addBos: true, cacheDir }));
  const file = tokenCachePath(LLAMA2_S, text, { addBos: true, cacheDir });
  const good = fs.readFileSync(file);
  fs.writeFileSync(file, damage(good));
  expect(readCached(file)).toBeUndefined();
  expect(Array.from(await tokenizeCached(LLAMA2_S, text, { addBos: true, cacheDir }))).toEqual(ids);
  expect(fs.readFileSync(file).equals(good)).toBe(true);
});
