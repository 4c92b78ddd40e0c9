/**
 * Tiny C4 shards for tests, in the Hub's layout of allenai/c4: `en/c4-<split>.NNNNN-of-MMMMM.json.gz`,
 * gzipped JSON lines with the fields of the real files (text, timestamp, url).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { PythonRandom } from '../../src/data/python-random';
import type { TextTokenizer } from '../../src/data/tokenizer';

export const C4_TRAIN = 'en/c4-train.00000-of-01024.json.gz';
export const C4_VALIDATION = 'en/c4-validation.00000-of-00008.json.gz';

/** The JSON lines of a shard, each with a trailing newline as in the real files. */
export function c4Lines(texts: readonly string[]): string {
  return texts.map((text, i) => `${JSON.stringify({ text, timestamp: '2019-04-25T12:57:54Z', url: `https://example.com/${i}` })}\n`).join('');
}

export function writeGz(file: string, content: string | Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, zlib.gzipSync(content));
}

/** Writes `dir/en/c4-train…json.gz` and `dir/en/c4-validation…json.gz` (a repo folder for hub-server.ts). */
export function writeC4Repo(dir: string, docs: { train: readonly string[]; validation: readonly string[] }): void {
  writeGz(path.join(dir, C4_TRAIN), c4Lines(docs.train));
  writeGz(path.join(dir, C4_VALIDATION), c4Lines(docs.validation));
}

/** Deterministic English-like documents of varied lengths (word counts cycle through `lengths`). */
export function fakeDocuments(n: number, lengths: readonly number[] = [3, 40, 9, 120, 15, 60, 2, 200]): string[] {
  const words = ['the', 'quantized', 'model', 'reads', 'a', 'common', 'crawl', 'page', 'about', 'gardens', 'and', 'rivers', 'in', 'spring'];
  return Array.from({ length: n }, (_, i) => {
    const len = lengths[i % lengths.length];
    return Array.from({ length: len }, (_, k) => words[(i * 7 + k * 3) % words.length]).join(' ') + ` (document ${i}).`;
  });
}

/**
 * get_c4's loop written out again from the reference code, independent of src/data: after
 * random.seed(seed), n times a document drawn until it tokenizes (alone, with BOS) to `>= seqlen`
 * tokens as the reference tests (`> seqlen` with `strict`), every drawn document tokenized, and a
 * window of seqlen tokens at randint(0, len − seqlen − 1) in it (a RangeError, Python's
 * ValueError, for a document of exactly seqlen tokens). tokens: the windows back to back (the
 * calibration windows, or torch.hstack(valenc)); offsets: where each window starts.
 */
export function referenceGetC4(
  tok: TextTokenizer, docs: readonly string[], n: number, seqlen: number, seed: number, strict = false,
): { offsets: number[]; tokens: Int32Array } {
  const random = new PythonRandom(seed);
  const offsets: number[] = [];
  const tokens = new Int32Array(n * seqlen);
  for (let w = 0; w < n; w++) {
    let enc: Int32Array;
    for (;;) {
      enc = tok.encode(docs[random.randint(0, docs.length - 1)], { addBos: true });
      if (strict ? enc.length > seqlen : enc.length >= seqlen) break;
    }
    const i = random.randint(0, enc.length - seqlen - 1);
    offsets.push(i);
    tokens.set(enc.subarray(i, i + seqlen), w * seqlen);
  }
  return { offsets, tokens };
}
