import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UserError } from '../../src/errors';
import { datasetRegistry, firstInvalidUtf8, loadDatasetText } from '../../src/data/datasets';
import { writeStringParquet } from '../helpers/write-parquet';

const shared = path.resolve(__dirname, '../../../shared');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-forge-ds-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function userError(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(UserError);
  return (e as Error).message;
}

describe('local text files', () => {
  it('reads wiki.test.raw byte-exact', async () => {
    const file = path.join(shared, 'datasets/wikitext-2-raw-v1/wiki.test.raw');
    const { text, source } = await loadDatasetText(file);
    expect(Buffer.byteLength(text, 'utf8')).toBe(1290590);
    expect(source).toBe(file);
  });
  it('reads .txt and keeps a BOM and CRLF as they are', async () => {
    const file = path.join(tmp, 'a.txt');
    fs.writeFileSync(file, '\ufeffhéllo\r\nworld');
    expect((await loadDatasetText(file)).text).toBe('\ufeffhéllo\r\nworld');
  });
  it('rejects non-UTF-8 bytes with the offset of the first bad sequence', async () => {
    const file = path.join(tmp, 'bad.raw');
    fs.writeFileSync(file, Buffer.concat([Buffer.from('ok é then '), Buffer.from([0xe2, 0x82, 0x41]), Buffer.from('x')]));
    expect(await userError(loadDatasetText(file))).toBe(`${file}: not UTF-8 text (invalid byte at offset 11)`);
  });
  it('finds invalid UTF-8 offsets like Python does', () => {
    const at = (...b: number[]) => firstInvalidUtf8(Uint8Array.from(b));
    expect(at(0x61, 0x62)).toBe(-1);
    expect(at(0x61, 0xff)).toBe(1);
    expect(at(0x61, 0x80)).toBe(1); // lone continuation byte
    expect(at(0xc0, 0x80)).toBe(0); // overlong
    expect(at(0xe0, 0x80, 0x80)).toBe(0); // overlong
    expect(at(0xed, 0xa0, 0x80)).toBe(0); // surrogate
    expect(at(0xf4, 0x90, 0x80, 0x80)).toBe(0); // > U+10FFFF
    expect(at(0x61, 0xf0, 0x9f, 0x98)).toBe(1); // truncated at the end
    expect(at(0xf0, 0x9f, 0x98, 0x80, 0xc3, 0xa9, 0xc3)).toBe(6);
  });
  it('reports a missing file', async () => {
    const file = path.join(tmp, 'nope.txt');
    expect(await userError(loadDatasetText(file))).toBe(`dataset file not found: ${file}`);
  });
  it('rejects other file types and folders', async () => {
    const file = path.join(tmp, 'x.json');
    fs.writeFileSync(file, '{}');
    expect(await userError(loadDatasetText(file))).toMatch(/unsupported dataset file type "\.json"/);
    expect(await userError(loadDatasetText(tmp))).toMatch(/is not a file/);
  });
});

describe('local parquet files', () => {
  const rows = ['', ' = Valkyria Chronicles III = \n', '', ' Senjō no Valkyria 3 : <unk> Chronicles 😀\n'];

  it('joins column text with "\\n\\n" (optional column, like the Hub files)', async () => {
    const file = path.join(tmp, 'opt.parquet');
    writeStringParquet(file, [{ name: 'text', values: rows, optional: true }]);
    const { text, source } = await loadDatasetText(file);
    expect(text).toBe(rows.join('\n\n'));
    expect(source).toBe(file);
  });
  it('reads the text column among others (required columns)', async () => {
    const file = path.join(tmp, 'two.parquet');
    const many = Array.from({ length: 300 }, (_, i) => `line ${i}`);
    writeStringParquet(file, [
      { name: 'id', values: many.map((_, i) => String(i)) },
      { name: 'text', values: many },
    ]);
    expect((await loadDatasetText(file)).text).toBe(many.join('\n\n'));
  });
  it('names the columns when text is missing', async () => {
    const file = path.join(tmp, 'notext.parquet');
    writeStringParquet(file, [{ name: 'content', values: ['a'] }]);
    expect(await userError(loadDatasetText(file))).toBe(`${file}: no column "text" in the parquet file (columns: content)`);
  });
  it('rejects a file that is not parquet', async () => {
    const file = path.join(tmp, 'fake.parquet');
    fs.writeFileSync(file, 'hello, not parquet');
    expect(await userError(loadDatasetText(file))).toMatch(/not a readable parquet file/);
  });
});

describe('registry', () => {
  it('has wikitext2 and wikitext2-v1 on Salesforce/wikitext', () => {
    const reg = datasetRegistry();
    expect(reg.wikitext2.repo).toBe('Salesforce/wikitext');
    expect(reg.wikitext2.config).toBe('wikitext-2-raw-v1');
    expect(reg.wikitext2.files.test).toBe('wikitext-2-raw-v1/test-00000-of-00001.parquet');
    expect(reg['wikitext2-v1'].files.validation).toBe('wikitext-2-v1/validation-00000-of-00001.parquet');
    expect(reg.wikitext2.joiner).toBe('\n\n');
  });

  it('downloads the split through the injected function and reads the parquet', async () => {
    const file = path.join(tmp, 'hub.parquet');
    writeStringParquet(file, [{ name: 'text', values: ['a', 'b', 'c'], optional: true }]);
    const calls: unknown[][] = [];
    const download = async (repo: string, p: string, revision?: string) => {
      calls.push([repo, p, revision]);
      return file;
    };
    const r = await loadDatasetText('wikitext2', { download });
    expect(r.text).toBe('a\n\nb\n\nc');
    expect(r.source).toBe('wikitext2:test = hf://datasets/Salesforce/wikitext/wikitext-2-raw-v1/test-00000-of-00001.parquet');
    const v = await loadDatasetText('wikitext2-v1', { download, split: 'validation', revision: 'abc123' });
    expect(v.source).toContain('Salesforce/wikitext@abc123/wikitext-2-v1/validation-00000-of-00001.parquet');
    expect(calls).toEqual([
      ['Salesforce/wikitext', 'wikitext-2-raw-v1/test-00000-of-00001.parquet', undefined],
      ['Salesforce/wikitext', 'wikitext-2-v1/validation-00000-of-00001.parquet', 'abc123'],
    ]);
  });

  it('lists the known names for an unknown one', async () => {
    const msg = await userError(loadDatasetText('wikitext3', { download: async () => '' }));
    expect(msg).toBe('unknown dataset "wikitext3" (not a file either); known datasets: wikitext2, wikitext2-v1, c4, c4-new');
  });

  it('rejects an unknown split', async () => {
    const split = 'dev' as unknown as 'test';
    expect(await userError(loadDatasetText('wikitext2', { split, download: async () => '' }))).toMatch(/unknown split "dev"/);
  });
});
