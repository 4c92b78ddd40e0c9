import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UserError } from '../../src/errors';
import { loadTokenizer, tokenizeCached, TextTokenizer } from '../../src/data/tokenizer';
import { readSafetensors } from '../helpers/read-safetensors';

const shared = path.resolve(__dirname, '../../../shared');
const modelDir = path.join(shared, 'models/llama2-s');
const wikiTest = path.join(shared, 'datasets/wikitext-2-raw-v1/wiki.test.raw');
const golden = path.join(shared, 'reference/golden/forward-golden.safetensors');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-forge-tok-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('loadTokenizer (llama2-s, the Llama-2 tokenizer)', () => {
  let tok: TextTokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(modelDir);
  });

  it('knows BOS and the vocabulary size', () => {
    expect(tok.bosId).toBe(1);
    expect(tok.vocabSize).toBe(32000);
  });

  it('gives the known Llama-2 ids', () => {
    expect(Array.from(tok.encode('Hello world'))).toEqual([1, 15043, 3186]); // add_bos_token: true
    expect(Array.from(tok.encode('Hello world', { addBos: true }))).toEqual([1, 15043, 3186]);
    expect(Array.from(tok.encode('Hello world', { addBos: false }))).toEqual([15043, 3186]);
    expect(Array.from(tok.encode(' Hello', { addBos: false }))).toEqual([29871, 15043]);
    expect(Array.from(tok.encode('', { addBos: false }))).toEqual([]);
    expect(Array.from(tok.encode('', { addBos: true }))).toEqual([1]);
  });

  it('encodes the literal text <unk> to id 0 (special added token)', () => {
    expect(Array.from(tok.encode('<unk>', { addBos: false }))).toEqual([0]);
    expect(Array.from(tok.encode('<unk>'))).toEqual([1, 0]);
  });

  it('falls back to bytes for pieces outside the vocabulary', () => {
    // "▁" then <0xF0> <0x9F> <0x98> <0x80> (byte tokens are 3 + byte value)
    expect(Array.from(tok.encode('a 😀', { addBos: false }))).toEqual([263, 29871, 243, 162, 155, 131]);
  });

  it('returns an Int32Array', () => {
    expect(tok.encode('x')).toBeInstanceOf(Int32Array);
  });
});

describe('loadTokenizer errors', () => {
  it('names the folder when tokenizer.json is missing', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'model-'));
    const err = await loadTokenizer(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toContain(dir);
    expect((err as Error).message).toContain('tokenizer.json');
  });
  it('reports a missing model folder', async () => {
    await expect(loadTokenizer(path.join(tmp, 'nope'))).rejects.toThrow(UserError);
  });
  it('reports a tokenizer.json that is not JSON', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'model-'));
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{not json');
    await expect(loadTokenizer(dir)).rejects.toThrow(/tokenizer\.json: not valid JSON/);
  });
});

describe('tokenizeCached', () => {
  const text = 'The quick brown fox.\n\n = Heading = \n';

  it('caches the ids under <cacheDir>/tokens, keyed by tokenizer, addBos and text', async () => {
    const cacheDir = path.join(tmp, 'cache-small');
    const tok = await loadTokenizer(modelDir);
    const expected = tok.encode(text, { addBos: true });

    const first = await tokenizeCached(modelDir, text, { addBos: true, cacheDir });
    expect(Array.from(first)).toEqual(Array.from(expected));
    const files = fs.readdirSync(path.join(cacheDir, 'tokens'));
    expect(files).toHaveLength(1); // no temp file left behind
    expect(files[0]).toMatch(/^[0-9a-f]{64}\.i32$/);
    // The layout (a verified header, then the ids) is checked in tokenizer-cache.test.ts.
    expect(Array.from(await tokenizeCached(modelDir, text, { addBos: true, cacheDir }))).toEqual(Array.from(expected));

    // addBos and the text are part of the key.
    const noBos = await tokenizeCached(modelDir, text, { addBos: false, cacheDir });
    expect(Array.from(noBos)).toEqual(Array.from(expected.subarray(1)));
    await tokenizeCached(modelDir, text + ' ', { addBos: true, cacheDir });
    expect(fs.readdirSync(path.join(cacheDir, 'tokens'))).toHaveLength(3);
  });

  it('uses $GPTQ_FORGE_CACHE by default', async () => {
    const saved = process.env.GPTQ_FORGE_CACHE;
    process.env.GPTQ_FORGE_CACHE = path.join(tmp, 'cache-env');
    try {
      await tokenizeCached(modelDir, 'Hello world', { addBos: true });
    } finally {
      if (saved === undefined) delete process.env.GPTQ_FORGE_CACHE;
      else process.env.GPTQ_FORGE_CACHE = saved;
    }
    expect(fs.readdirSync(path.join(tmp, 'cache-env', 'tokens'))).toHaveLength(1);
  });

  it('recomputes over a torn cache file', async () => {
    const cacheDir = path.join(tmp, 'cache-torn');
    const ids = await tokenizeCached(modelDir, text, { addBos: true, cacheDir });
    const [name] = fs.readdirSync(path.join(cacheDir, 'tokens'));
    fs.writeFileSync(path.join(cacheDir, 'tokens', name), Buffer.alloc(5));
    expect(Array.from(await tokenizeCached(modelDir, text, { addBos: true, cacheDir }))).toEqual(Array.from(ids));
  });
});

describe('wiki.test.raw, tokenized whole (as Hugging Face does)', () => {
  it('matches HF: 335,688 ids with BOS, and the golden windows', async () => {
    const text = fs.readFileSync(wikiTest, 'utf8');
    const cacheDir = path.join(tmp, 'cache-full');
    const t0 = Date.now();
    const ids = await tokenizeCached(modelDir, text, { addBos: true, cacheDir });
    const cold = Date.now() - t0;
    expect(ids.length).toBe(335688); // 335,687 without BOS
    expect(ids[0]).toBe(1);

    const g = readSafetensors(golden);
    expect(Array.from(ids.subarray(0, 512))).toEqual(Array.from(g.get('window0.ids')));
    expect(Array.from(ids.subarray(512, 1024))).toEqual(Array.from(g.get('window1.ids')));

    const t1 = Date.now();
    const again = await tokenizeCached(modelDir, text, { addBos: true, cacheDir });
    const warm = Date.now() - t1;
    expect(again).toEqual(ids);
    expect(warm).toBeLessThan(cold);
    console.log(`wiki.test.raw: ${ids.length} ids, cold ${cold} ms, cached ${warm} ms`);
  });
});
