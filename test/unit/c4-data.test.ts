/**
 * C4 (allenai/c4, config en) as a named dataset: the registry entry, the gzipped JSON-lines
 * reader, the get_c4 calibration sampler against values computed by CPython, and the shards
 * fetched from a local stand-in of the Hub. Nothing touches the network.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { UserError } from '../../src/errors';
import { sampleDocumentCalibration } from '../../src/data/calibration';
import { DatasetEntry, datasetRegistry, entryProblem, loadDatasetRows, loadDatasetText } from '../../src/data/datasets';
import { readJsonlGzRows } from '../../src/data/rows';
import { idsBoundExtra } from '../../src/data/tokenizer';
import { commitFor, HubServer, startHubServer } from '../helpers/hub-server';
import { C4_TRAIN, C4_VALIDATION, c4Lines, writeC4Repo, writeGz } from '../helpers/write-c4';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-forge-c4-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function userError(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  expect(e).toBeInstanceOf(UserError);
  return (e as Error).message;
}

describe('registry', () => {
  it('names the GPTQ code\'s two C4 shards, with the get_c4 / get_c4_new protocols', () => {
    const c4 = datasetRegistry()['c4-new'];
    expect(c4.repo).toBe('allenai/c4');
    expect(c4.config).toBe('en');
    expect(c4.files).toEqual({ train: 'en/c4-train.00000-of-01024.json.gz', validation: 'en/c4-validation.00000-of-00008.json.gz' });
    expect(c4.textColumn).toBe('text');
    expect(c4.joiner).toBe(' ');
    expect(c4.calibration).toBe('documents');
    expect(c4.eval).toEqual({ split: 'validation', rows: 1100, windows: 256 });
    // c4: the same shards and calibration, evaluated on get_c4's valenc (256 windows drawn with seed 0)
    const { description: _d, eval: ev, ...rest } = datasetRegistry().c4;
    const { description: _n, eval: _e, ...restNew } = c4;
    expect(rest).toEqual(restNew);
    expect(ev).toEqual({ split: 'validation', sample: 'documents', windows: 256, seed: 0 });
    // wikitext keeps the defaults: the joined text for both.
    expect(datasetRegistry().wikitext2.calibration).toBeUndefined();
    expect(datasetRegistry().wikitext2.eval).toBeUndefined();
  });

  it('finds what is wrong with an entry', () => {
    const good: DatasetEntry = { description: '', repo: 'a/b', config: 'x', files: { train: 'x.json.gz' }, textColumn: 'text', joiner: ' ' };
    expect(entryProblem(good)).toBeUndefined();
    expect(entryProblem({ ...good, files: {} })).toBe('has no files');
    expect(entryProblem({ ...good, files: { train: 'x.csv' } })).toBe('has a train file that is neither .parquet nor .json.gz');
    expect(entryProblem({ ...good, files: { dev: 'x.parquet' } as DatasetEntry['files'] })).toBe('has a file for an unknown split "dev"');
    expect(entryProblem({ ...good, calibration: 'windows' as 'text' })).toBe('has an unknown calibration "windows"');
    expect(entryProblem({ ...good, eval: { split: 'test' } })).toBe('has no file for its eval split "test"');
    expect(entryProblem({ ...good, eval: { rows: 0 } })).toMatch(/not positive integers/);
    expect(entryProblem({ ...good, eval: { windows: 2.5 } })).toMatch(/not positive integers/);
    expect(entryProblem({ ...good, eval: { sample: 'documents', windows: 4, seed: 0 } })).toBeUndefined();
    expect(entryProblem({ ...good, eval: { sample: 'rows' as 'documents', windows: 4, seed: 0 } })).toBe('has an unknown eval sample "rows"');
    expect(entryProblem({ ...good, eval: { sample: 'documents', seed: 0 } })).toBe('has an eval sample of documents without windows, or with rows');
    expect(entryProblem({ ...good, eval: { sample: 'documents', windows: 4, rows: 9, seed: 0 } })).toBe('has an eval sample of documents without windows, or with rows');
    expect(entryProblem({ ...good, eval: { sample: 'documents', windows: 4 } })).toBe('has an eval sample of documents without an integer seed');
    expect(entryProblem({ ...good, eval: { windows: 4, seed: 0 } })).toBe('has an eval seed without an eval sample');
  });
});

describe('gzipped JSON lines', () => {
  const texts = ['Beginners BBQ Class Taking Place in Missoula!', 'héllo "quoted" \\ back\nslash 😀', ''];

  it('reads the text of every row, by index, streaming a multi-chunk file', async () => {
    const file = path.join(tmp, 'rows.json.gz');
    // > 1 MiB decompressed: lines cross the reader's chunk boundaries
    const many = Array.from({ length: 3000 }, (_, i) => `row ${i} ${'abcdefghij'.repeat(i % 97)}`);
    writeGz(file, c4Lines([...texts, ...many]));
    const rows = await readJsonlGzRows(file, 'text');
    expect(rows.count).toBe(3003);
    expect([0, 1, 2].map((i) => rows.text(i))).toEqual(texts);
    for (const i of [0, 1, 1234, 2999]) expect(rows.text(3 + i)).toBe(many[i]);
    expect(() => rows.text(3003)).toThrow(RangeError);
  });

  it('skips blank lines, takes a last line without a newline and concatenated gzip members', async () => {
    const file = path.join(tmp, 'members.json.gz');
    fs.writeFileSync(file, Buffer.concat([zlib.gzipSync('{"text":"a"}\r\n\n  \n'), zlib.gzipSync('{"text":"b","url":"u"}')]));
    const rows = await readJsonlGzRows(file, 'text');
    expect([rows.count, rows.text(0), rows.text(1)]).toEqual([2, 'a', 'b']);
  });

  it('stops after maxRows rows', async () => {
    const file = path.join(tmp, 'limit.json.gz');
    writeGz(file, `${c4Lines(['a', 'b', 'c'])}not json at all\n`);
    const rows = await readJsonlGzRows(file, 'text', { maxRows: 2 });
    expect([rows.count, rows.text(1)]).toEqual([2, 'b']);
    expect(await userError(readJsonlGzRows(file, 'text'))).toMatch(/^.*limit\.json\.gz: line 4 is not JSON \(/);
  });

  it('refuses a shard without text, a null text, a line that is not an object or not UTF-8', async () => {
    const f = (name: string, content: string | Buffer) => {
      const file = path.join(tmp, name);
      writeGz(file, content);
      return file;
    };
    const notext = f('notext.json.gz', `${c4Lines(['ok'])}{"content":"x","url":"u"}\n`);
    expect(await userError(readJsonlGzRows(notext, 'text'))).toBe(`${notext}: line 2 has no "text" field (fields: content, url)`);
    const nul = f('null.json.gz', '{"text":null}\n');
    expect(await userError(readJsonlGzRows(nul, 'text'))).toBe(`${nul}: line 1: "text" is null, not text`);
    const arr = f('array.json.gz', '["text"]\n');
    expect(await userError(readJsonlGzRows(arr, 'text'))).toBe(`${arr}: line 1 is not a JSON object`);
    const bad = f('latin1.json.gz', Buffer.concat([Buffer.from('{"text":"caf'), Buffer.from([0xe9]), Buffer.from('"}\n')]));
    expect(await userError(readJsonlGzRows(bad, 'text'))).toBe(`${bad}: line 1 is not UTF-8 text`);
  });

  it('refuses a truncated gzip, a file that is not gzip, a missing file', async () => {
    const whole = zlib.gzipSync(c4Lines(Array.from({ length: 200 }, (_, i) => `document ${i}`)));
    const cut = path.join(tmp, 'cut.json.gz');
    fs.writeFileSync(cut, whole.subarray(0, whole.length - 40));
    expect(await userError(readJsonlGzRows(cut, 'text'))).toBe(`${cut}: truncated gzip file (unexpected end of file)`);
    const empty = path.join(tmp, 'empty.json.gz');
    fs.writeFileSync(empty, '');
    expect(await userError(readJsonlGzRows(empty, 'text'))).toBe(`${empty}: truncated gzip file (unexpected end of file)`);
    const plain = path.join(tmp, 'plain.json.gz');
    fs.writeFileSync(plain, c4Lines(['not compressed']));
    expect(await userError(readJsonlGzRows(plain, 'text'))).toBe(`${plain}: not valid gzip data (incorrect header check)`);
    const none = path.join(tmp, 'none.json.gz');
    expect(await userError(readJsonlGzRows(none, 'text'))).toBe(`dataset file not found: ${none}`);
  });
});

describe('sampleDocumentCalibration (get_c4\'s sampler)', () => {
  // Token lengths of 20 documents; document i is the ramp i*1000, i*1000+1, … so a window tells
  // where it came from. Expected (document, offset) pairs: CPython 3 running get_c4's loop on
  // these lengths (tokenization replaced by the table), printed with json.dumps.
  const LENGTHS = [3, 50, 7, 12, 64, 9, 100, 33, 5, 18, 70, 2, 41, 15, 90, 8, 27, 60, 11, 45];
  const CPYTHON_SEED0 = [[12, 24], [1, 16], [16, 7], [12, 9], [6, 64], [4, 18]];
  const CPYTHON_SEED7 = [[10, 9], [12, 20], [1, 4], [17, 6], [1, 32], [6, 4]];
  const CPYTHON_SEED0_40 = [
    [12, 24], [1, 16], [16, 7], [12, 9], [6, 64], [4, 18], [4, 6], [19, 25], [17, 38], [4, 19], [10, 30], [17, 6], [10, 39], [6, 70],
    [14, 66], [1, 0], [12, 22], [19, 15], [10, 15], [10, 45], [6, 72], [7, 7], [4, 34], [14, 11], [10, 32], [9, 1], [17, 21], [17, 13],
    [19, 17], [9, 1], [19, 25], [12, 10], [7, 9], [6, 23], [1, 16], [4, 9], [1, 5], [17, 43], [12, 22], [16, 4],
  ];
  const SEQLEN = 16;
  const corpus = (lengths: number[]) => {
    const encoded: number[] = [];
    const encode = (i: number) => {
      encoded.push(i);
      return Int32Array.from({ length: lengths[i] }, (_, k) => i * 1000 + k);
    };
    return { encode, encoded };
  };
  const pairs = (s: { documents?: number[]; offsets: number[] }) => s.offsets.map((j, k) => [s.documents![k], j]);

  it('draws the documents and offsets CPython draws, and the windows are those tokens', () => {
    const c = corpus(LENGTHS);
    const s = sampleDocumentCalibration(LENGTHS.length, c.encode, 6, SEQLEN, 0);
    expect(pairs(s)).toEqual(CPYTHON_SEED0);
    expect(s.tokens.length).toBe(6 * SEQLEN);
    CPYTHON_SEED0.forEach(([i, j], k) => {
      expect(Array.from(s.tokens.subarray(k * SEQLEN, (k + 1) * SEQLEN))).toEqual(Array.from({ length: SEQLEN }, (_, t) => i * 1000 + j + t));
    });
    expect(pairs(sampleDocumentCalibration(LENGTHS.length, corpus(LENGTHS).encode, 6, SEQLEN, 7))).toEqual(CPYTHON_SEED7);
    expect(pairs(sampleDocumentCalibration(LENGTHS.length, corpus(LENGTHS).encode, 40, SEQLEN, 0))).toEqual(CPYTHON_SEED0_40);
  });

  it('tokenizes a too-short document once, however often it is drawn', () => {
    const c = corpus(LENGTHS);
    sampleDocumentCalibration(LENGTHS.length, c.encode, 40, SEQLEN, 0);
    const short = c.encoded.filter((i) => LENGTHS[i] <= SEQLEN);
    expect(short.length).toBeGreaterThan(0);
    expect(new Set(short).size).toBe(short.length);
  });

  it('draws past a document of exactly seqlen tokens (where the reference fails in randint(0, -1))', () => {
    // CPython on these lengths raises "empty range for randrange() (0, 0, 0)" when it draws
    // document 13; here the draws go on as if it were shorter: CPython's draws for length 15.
    const lengths = [...LENGTHS];
    lengths[13] = SEQLEN;
    const c = corpus(lengths);
    const s = sampleDocumentCalibration(lengths.length, c.encode, 40, SEQLEN, 0);
    expect(c.encoded).toContain(13);
    expect(pairs(s)).toEqual(CPYTHON_SEED0_40);
  });

  it('with a length bound, skips tokenizing the documents it rules out and draws the same windows', () => {
    // bounds as loose as "UTF-8 bytes + 2" (each document's length plus 0..5), and the tight one
    for (const slack of [(i: number) => i % 6, () => 0]) {
      for (const seed of [0, 7, 3]) {
        const plain = corpus(LENGTHS);
        const skipping = corpus(LENGTHS);
        const bounds: number[] = [];
        const bound = (i: number) => {
          bounds.push(i);
          return LENGTHS[i] + slack(i);
        };
        const a = sampleDocumentCalibration(LENGTHS.length, plain.encode, 40, SEQLEN, seed);
        const b = sampleDocumentCalibration(LENGTHS.length, skipping.encode, 40, SEQLEN, seed, { bound });
        expect(b).toEqual(a);
        expect(skipping.encoded.every((i) => LENGTHS[i] + slack(i) > SEQLEN)).toBe(true);
        expect(skipping.encoded.length).toBeLessThan(plain.encoded.length);
        const ruledOut = bounds.filter((i) => LENGTHS[i] + slack(i) <= SEQLEN);
        expect(ruledOut.length).toBeGreaterThan(0);
        expect(new Set(ruledOut).size).toBe(ruledOut.length); // a ruled-out document is not looked at again
      }
    }
    // a document of exactly seqlen tokens whose bound is seqlen is drawn past without tokenizing, as when tokenized
    const lengths = [...LENGTHS];
    lengths[13] = SEQLEN;
    const c = corpus(lengths);
    expect(pairs(sampleDocumentCalibration(lengths.length, c.encode, 40, SEQLEN, 0, { bound: (i) => lengths[i] }))).toEqual(CPYTHON_SEED0_40);
    expect(c.encoded).not.toContain(13);
    expect(() => sampleDocumentCalibration(4, corpus([1, 2, 3, 4]).encode, 1, 16, 0, { bound: () => 16, what: 'the validation split of c4' })).toThrow(
      new UserError('no document of the 4 in the validation split of c4 has more than --seqlen 16 tokens'),
    );
  });

  it('refuses when no document is longer than seqlen, and an empty dataset', () => {
    const lengths = [3, 16, 9, 1];
    expect(() => sampleDocumentCalibration(4, corpus(lengths).encode, 1, 16, 0)).toThrow(
      new UserError('no document of the 4 in the calibration dataset has more than --seqlen 16 tokens'),
    );
    expect(() => sampleDocumentCalibration(0, corpus([]).encode, 1, 16, 0)).toThrow(UserError);
    expect(() => sampleDocumentCalibration(4, corpus(lengths).encode, 0, 16, 0)).toThrow(/--nsamples/);
  });
});

describe('c4 from the Hub (a local stand-in)', () => {
  let server: HubServer;
  const saved: Record<string, string | undefined> = {};
  const train = ['first train document', 'second', 'third one here'];
  const validation = Array.from({ length: 1103 }, (_, i) => `validation document ${i}`);

  beforeAll(async () => {
    jest.spyOn(console, 'debug').mockImplementation(() => undefined);
    writeC4Repo(path.join(tmp, 'c4'), { train, validation });
    server = await startHubServer({ 'datasets/allenai/c4': { dir: path.join(tmp, 'c4') } });
    for (const k of ['HF_ENDPOINT', 'HF_HUB_CACHE', 'HF_TOKEN']) saved[k] = process.env[k];
    process.env.HF_ENDPOINT = server.url;
    process.env.HF_HUB_CACHE = path.join(tmp, 'hf-cache');
    delete process.env.HF_TOKEN;
  });
  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    await server.close();
  });

  it('downloads the train shard into the HF cache and reads its rows', async () => {
    const { rows, source } = await loadDatasetRows('c4', datasetRegistry().c4, { split: 'train' });
    expect(source).toBe(`c4:train = hf://datasets/allenai/c4/${C4_TRAIN}`);
    expect(Array.from({ length: rows.count }, (_, i) => rows.text(i))).toEqual(train);
    const commit = commitFor('datasets/allenai/c4', 'main');
    expect(server.requests).toContain(`/datasets/allenai/c4/resolve/${commit}/${C4_TRAIN}`);
    expect(fs.existsSync(path.join(tmp, 'hf-cache', 'datasets--allenai--c4', 'snapshots', commit, C4_TRAIN))).toBe(true);
  });

  it('evaluates on validation by default; c4-new: the first 1100 rows joined with " "', async () => {
    expect((await loadDatasetRows('c4', datasetRegistry().c4)).source).toBe(`c4:validation = hf://datasets/allenai/c4/${C4_VALIDATION}`);
    const { text, source } = await loadDatasetText('c4-new', { maxRows: datasetRegistry()['c4-new'].eval!.rows });
    expect(source).toBe(`c4-new:validation = hf://datasets/allenai/c4/${C4_VALIDATION}`);
    expect(text).toBe(validation.slice(0, 1100).join(' '));
    expect(text.endsWith('validation document 1099')).toBe(true);
  });

  it('has no test split', async () => {
    expect(await userError(loadDatasetText('c4', { split: 'test' }))).toBe('dataset "c4" has no test split (it has train, validation)');
  });
});

describe('idsBoundExtra (the length bound that lets the get_c4 sampler skip tokenizing)', () => {
  const vocab = { '▁': 0, a: 1, '<unk>': 2 };
  const added = [{ id: 2, content: '<unk>' }, { id: 3, content: '<s>' }, { id: 4, content: '</s>' }];
  const llama = {
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null, model: { type: 'BPE', vocab, byte_fallback: true }, added_tokens: added,
  };
  const byteLevel = { normalizer: null, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false }, model: { type: 'BPE', vocab }, added_tokens: [{ content: '<|begin_of_text|>' }] };

  it('recognises Llama 1/2 (one more id than UTF-8 bytes: the dummy prefix) and byte-level BPE (none)', () => {
    expect(idsBoundExtra(llama)).toBe(1);
    expect(idsBoundExtra(byteLevel)).toBe(0);
    expect(idsBoundExtra({ ...byteLevel, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split' }, { type: 'ByteLevel', add_prefix_space: true }] } })).toBe(1);
  });

  it('gives no bound for what it does not recognise', () => {
    expect(idsBoundExtra({ ...llama, model: { type: 'WordPiece', vocab } })).toBeUndefined();
    expect(idsBoundExtra({ ...llama, model: { type: 'Unigram', vocab: [] } })).toBeUndefined();
    expect(idsBoundExtra({ ...llama, normalizer: { type: 'NFKC' } })).toBeUndefined(); // NFKC can expand a character into many
    expect(idsBoundExtra({ ...llama, normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '__' } })).toBeUndefined();
    expect(idsBoundExtra({ ...llama, normalizer: { type: 'Prepend', prepend: '#' } })).toBeUndefined(); // not in the vocabulary
    expect(idsBoundExtra({ ...llama, pre_tokenizer: { type: 'Metaspace' } })).toBeUndefined();
    expect(idsBoundExtra({ ...llama, pre_tokenizer: { type: 'ByteLevel' } })).toBeUndefined(); // "▁" would be 3 bytes
    expect(idsBoundExtra({ ...llama, added_tokens: [...added, { content: 'x' }] })).toBeUndefined(); // 1 byte cannot pay for the next piece's prefix
    expect(idsBoundExtra({ ...llama, normalizer: 'Lowercase' })).toBeUndefined();
  });
});
