/**
 * `--dataset c4`'s evaluation: get_c4's valenc (IST-DASLab/gptq datautils.py), 256 windows of
 * seqlen tokens drawn from the validation shard after random.seed(0), on llama2-s's tokenizer;
 * the length bound that lets the sampler skip tokenizing short documents; and `c4-new`
 * (get_c4_new's joined text) as before. Shards in the Hub's layout, read from a local folder.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sampleDocuments } from '../../src/data/calibration';
import { loadEvalSet } from '../../src/data/eval-set';
import { arrayRows } from '../../src/data/rows';
import { loadTokenizer, TextTokenizer } from '../../src/data/tokenizer';
import { UserError } from '../../src/errors';
import { LLAMA2_S } from '../helpers/shared';
import { C4_VALIDATION, fakeDocuments, referenceGetC4, writeC4Repo } from '../helpers/write-c4';

jest.setTimeout(120_000);

const SEQLEN = 32;
const validation = fakeDocuments(60); // 3..200 words: some documents are longer than SEQLEN tokens, most are not
let tmp: string;
let tok: TextTokenizer;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-c4-eval-'));
  tok = await loadTokenizer(LLAMA2_S);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A repo folder with these validation documents, and loadEvalSet's options reading it (no network). */
function repo(name: string, docs: readonly string[]) {
  const dir = path.join(tmp, name);
  writeC4Repo(dir, { train: ['unused'], validation: docs });
  return { download: async (_repo: string, p: string) => path.join(dir, p), cacheDir: path.join(tmp, `${name}-cache`) };
}

/** get_c4's valenc (its first `windows`; write-c4.ts referenceGetC4, seed 0). */
const referenceValenc = (docs: readonly string[], seqlen: number, windows = 256, strict = false): Int32Array =>
  referenceGetC4(tok, docs, windows, seqlen, 0, strict).tokens;

test('c4: the 256 windows of get_c4\'s valenc, cut into seqlen windows', async () => {
  const lengths = validation.map((t) => tok.encode(t, { addBos: true }).length);
  expect(lengths.includes(SEQLEN)).toBe(false); // the reference completes on this fixture
  expect(lengths.filter((n) => n > SEQLEN).length).toBeGreaterThan(3);
  const opts = repo('plain', validation);
  const set = await loadEvalSet(LLAMA2_S, 'c4', { seqlen: SEQLEN, ...opts });
  const want = referenceValenc(validation, SEQLEN);
  expect(Array.from(set.ids)).toEqual(Array.from(want));
  expect(set.windows).toMatchObject({ count: 256, seqlen: SEQLEN });
  expect(Array.from(set.windows.tokens)).toEqual(Array.from(want));
  expect(set.source).toBe(`c4:validation = hf://datasets/allenai/c4/${C4_VALIDATION} (get_c4's eval: 256 windows, each from a document drawn with random.seed(0))`);

  // --max-windows k: the first k windows (the same source: the protocol is the same)
  const three = await loadEvalSet(LLAMA2_S, 'c4', { seqlen: SEQLEN, maxWindows: 3, ...opts });
  expect(three.windows.count).toBe(3);
  expect(Array.from(three.windows.tokens)).toEqual(Array.from(want.subarray(0, 3 * SEQLEN)));
  expect(three.source).toBe(set.source);
  expect((await loadEvalSet(LLAMA2_S, 'c4', { seqlen: SEQLEN, maxWindows: 400, ...opts })).windows.count).toBe(256);

  // cached by content: one entry per (shard, seqlen, windows); a second run reads it
  const entries = () => fs.readdirSync(path.join(opts.cacheDir, 'tokens')).length;
  expect(entries()).toBe(2);
  const again = await loadEvalSet(LLAMA2_S, 'c4', { seqlen: SEQLEN, ...opts });
  expect(Array.from(again.ids)).toEqual(Array.from(want));
  expect(entries()).toBe(2);
  // another shard content is another entry, with its own windows
  const other = [...validation];
  other[3] = `${other[3]} and more`;
  const changed = repo('changed', other);
  fs.cpSync(path.join(opts.cacheDir), changed.cacheDir, { recursive: true });
  expect(Array.from((await loadEvalSet(LLAMA2_S, 'c4', { seqlen: SEQLEN, ...changed })).ids)).toEqual(Array.from(referenceValenc(other, SEQLEN)));
});

test('c4: a document of exactly seqlen tokens is drawn past (the reference stops there); none long enough is an error', async () => {
  const lengths = validation.map((t) => tok.encode(t, { addBos: true }).length);
  // a seqlen that some document has exactly, with longer ones to draw from
  const seqlen = [...new Set(lengths)].sort((a, b) => a - b).find((n) => lengths.filter((m) => m > n).length >= 3 && n > 8)!;
  expect(() => referenceValenc(validation, seqlen)).toThrow(RangeError); // Python: ValueError in randint(0, -1)
  const set = await loadEvalSet(LLAMA2_S, 'c4', { seqlen, maxWindows: 20, ...repo('exact', validation) });
  expect(Array.from(set.ids)).toEqual(Array.from(referenceValenc(validation, seqlen, 20, true)));

  const short = validation.filter((_, i) => lengths[i] <= SEQLEN);
  const e = await loadEvalSet(LLAMA2_S, 'c4', { seqlen: SEQLEN, ...repo('short', short) }).catch((err: unknown) => err);
  expect(e).toEqual(new UserError(`no document of the ${short.length} in the validation split of c4 has more than --seqlen ${SEQLEN} tokens`));
});

test('c4-new: get_c4_new\'s text as before (rows joined with " ", tokenized whole, at most 256 windows)', async () => {
  const opts = repo('new', validation);
  const set = await loadEvalSet(LLAMA2_S, 'c4-new', { seqlen: SEQLEN, ...opts });
  const ids = tok.encode(validation.join(' '), { addBos: true });
  expect(Array.from(set.ids)).toEqual(Array.from(ids));
  expect(set.windows.count).toBe(Math.min(256, Math.floor(ids.length / SEQLEN)));
  expect(set.source).toBe(`c4-new:validation = hf://datasets/allenai/c4/${C4_VALIDATION} (the first 1100 rows joined with " ", at most 256 windows)`);
});

test('the Llama tokenizer\'s bound: at most UTF-8 bytes + 2 ids with BOS (reached), so skipping gives the same windows', () => {
  expect(tok.idsBound).toBeDefined();
  const bound = (t: string) => tok.idsBound!(t, { addBos: true });
  const texts = ['', ' ', '  ', 'a', ' a', 'a ', '😀', ' 😀 ', '\u0000', '漢字 かな', 'é\u0301', '<s>', 'a<s>b', '</s></s>x', '<unk> <s>',
    '\t\n\r', 'x'.repeat(50), ' '.repeat(17), '\uFFFD\uFFFD', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', ...validation.slice(0, 10)];
  for (const t of texts) {
    const n = tok.encode(t, { addBos: true }).length;
    expect([t, n <= bound(t)]).toEqual([t, true]);
    expect(tok.encode(t, { addBos: false }).length).toBeLessThanOrEqual(tok.idsBound!(t, { addBos: false }));
  }
  expect(texts.some((t) => tok.encode(t, { addBos: true }).length === bound(t))).toBe(true); // the bound is tight

  // the sampler with and without the bound: the same windows, fewer documents tokenized
  const rows = arrayRows(validation);
  let encoded = 0;
  const counting = (t: TextTokenizer): TextTokenizer => ({ ...t, encode: (s, o) => (encoded++, tok.encode(s, o)) });
  for (const seed of [0, 1]) {
    encoded = 0;
    const plain = sampleDocuments(rows, { ...counting(tok), idsBound: undefined }, 40, SEQLEN, seed);
    const plainCount = encoded;
    encoded = 0;
    const skipping = sampleDocuments(rows, counting(tok), 40, SEQLEN, seed);
    expect(skipping).toEqual(plain);
    expect(encoded).toBeLessThan(plainCount);
  }
});
