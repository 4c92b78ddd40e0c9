/**
 * C4 through the CLI on llama2-s, with tiny shards in allenai/c4's layout served by a local
 * stand-in of the Hub (HF_ENDPOINT on 127.0.0.1): `gptq quantize --dataset c4` (get_c4's
 * windows), `gptq eval --dataset c4` (get_c4's valenc: 256 windows drawn from the validation
 * documents with seed 0), `gptq eval --dataset c4-new` (get_c4_new's text: the first 1100
 * validation rows joined with " ", at most 256 windows) and `gptq report --dataset wikitext2
 * --dataset c4` (a second perplexity column, rows reused per column).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { calibrationDigest } from '../../src/data/calibration';
import { loadTokenizer, TextTokenizer } from '../../src/data/tokenizer';
import { idsDigest } from '../../src/eval/report-content';
import { Report } from '../../src/eval/report-types';
import { runCliAsync } from '../helpers/cli';
import { HubServer, startHubServer } from '../helpers/hub-server';
import { LLAMA2_S, WIKI_TEST_RAW } from '../helpers/shared';
import { C4_TRAIN, C4_VALIDATION, fakeDocuments, referenceGetC4, writeC4Repo } from '../helpers/write-c4';
import { writeStringParquet } from '../helpers/write-parquet';

jest.setTimeout(600_000);

const SEQLEN = 32;
let tmp: string;
let server: HubServer;
let env: NodeJS.ProcessEnv;
let tok: TextTokenizer;
const train = fakeDocuments(40); // lengths cycle 3..200 words: some documents are longer than SEQLEN tokens
// more than 1100 rows (c4-new must not read the rest); one in five longer than SEQLEN tokens (for c4)
const validation = fakeDocuments(1150, [2, 4, 7, 5, 60]);

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-c4-cli-'));
  writeC4Repo(path.join(tmp, 'c4'), { train, validation });
  const wiki = fs.readFileSync(WIKI_TEST_RAW, 'utf8').split('\n').slice(0, 120);
  fs.mkdirSync(path.join(tmp, 'wikitext', 'wikitext-2-raw-v1'), { recursive: true });
  writeStringParquet(path.join(tmp, 'wikitext', 'wikitext-2-raw-v1', 'test-00000-of-00001.parquet'), [{ name: 'text', values: wiki, optional: true }]);
  server = await startHubServer({
    'datasets/allenai/c4': { dir: path.join(tmp, 'c4') },
    'datasets/Salesforce/wikitext': { dir: path.join(tmp, 'wikitext') },
  });
  env = { HF_ENDPOINT: server.url, HF_HUB_CACHE: path.join(tmp, 'hf-cache'), HF_TOKEN: '', GPTQ_FORGE_CACHE: path.join(tmp, 'forge-cache') };
  tok = await loadTokenizer(LLAMA2_S);
});
afterAll(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const gptq = (args: string[]) => runCliAsync(args, { env, timeoutMs: 300_000 });

/** get_c4's calibration windows from the train documents (write-c4.ts referenceGetC4). */
const referenceC4Windows = (nsamples: number, seqlen: number, seed: number) => referenceGetC4(tok, train, nsamples, seqlen, seed);

/** get_c4's valenc (its first `windows`): the same loop over the validation documents, seed 0. */
const referenceValenc = (windows: number, seqlen: number): Int32Array => referenceGetC4(tok, validation, windows, seqlen, 0).tokens;

/** `gptq eval --dataset <dataset> --json` on llama2-s at SEQLEN: it succeeds silently; its JSON. */
async function evalJson(dataset: string, extra: string[]) {
  const r = await gptq(['eval', '--model', LLAMA2_S, '--dataset', dataset, '--seqlen', String(SEQLEN), '--device', 'cpu', '--json', '--quiet', ...extra]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as { dataset: string; tokens: number; windows: number; perplexity: number };
}

test('gptq quantize --dataset c4: the windows of get_c4 from the train shard', async () => {
  expect(train.some((t) => tok.encode(t, { addBos: true }).length === SEQLEN)).toBe(false);
  expect(train.filter((t) => tok.encode(t, { addBos: true }).length > SEQLEN).length).toBeGreaterThan(0);
  const out = path.join(tmp, 'branches', 'gptq-c4');
  const r = await gptq(['quantize', '--model', LLAMA2_S, '--out', out, '--dataset', 'c4', '--nsamples', '3', '--seqlen', String(SEQLEN),
    '--bits', '4', '--group-size', '32', '--device', 'cpu', '--quiet']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const m = JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'));
  expect(m.calibration).toMatchObject({
    dataset: 'c4', split: 'train', nsamples: 3, seqlen: SEQLEN, seed: 0,
    source: `c4:train = hf://datasets/allenai/c4/${C4_TRAIN} (one window from each drawn document)`,
  });
  expect(m.calibration.digest).toBe(calibrationDigest(referenceC4Windows(3, SEQLEN, 0), SEQLEN));
  expect(server.requests.some((p) => p.endsWith(C4_VALIDATION))).toBe(false);
});

test('gptq eval --dataset c4: get_c4\'s 256 windows drawn from the validation documents with seed 0', async () => {
  expect(validation.some((t) => tok.encode(t, { addBos: true }).length === SEQLEN)).toBe(false);
  const all = await evalJson('c4', ['--max-windows', '8']);
  expect(all.dataset).toBe(`c4:validation = hf://datasets/allenai/c4/${C4_VALIDATION} (get_c4's eval: 256 windows, each from a document drawn with random.seed(0))`);
  expect(all.tokens).toBe(8 * SEQLEN);
  expect(all.windows).toBe(8);
  expect(Number.isFinite(all.perplexity) && all.perplexity > 1).toBe(true);
  const three = await evalJson('c4', ['--max-windows', '3']);
  expect(three.windows).toBe(3);
  expect(three.perplexity).not.toBe(all.perplexity);
  const bad = await gptq(['eval', '--model', LLAMA2_S, '--dataset', 'c4', '--split', 'test', '--seqlen', String(SEQLEN), '--quiet']);
  expect(bad.code).toBe(1);
  expect(bad.stderr.trim()).toBe('gptq: error: dataset "c4" has no test split (it has train, validation)');
  const long = await gptq(['eval', '--model', LLAMA2_S, '--dataset', 'c4', '--seqlen', '512', '--quiet']);
  expect(long.code).toBe(1);
  expect(long.stderr.trim()).toBe('gptq: error: no document of the 1150 in the validation split of c4 has more than --seqlen 512 tokens');
});

test('gptq eval --dataset c4-new: the first 1100 validation rows joined with " ", at most 256 windows', async () => {
  const ids = tok.encode(validation.slice(0, 1100).join(' '), { addBos: true });
  expect(ids.length).toBeGreaterThan(300 * SEQLEN); // so that the cap of 256 windows applies
  const capped = await evalJson('c4-new', ['--max-windows', '400']);
  expect(capped.dataset).toBe(`c4-new:validation = hf://datasets/allenai/c4/${C4_VALIDATION} (the first 1100 rows joined with " ", at most 256 windows)`);
  expect(capped.tokens).toBe(ids.length);
  expect(capped.windows).toBe(256);
  expect((await evalJson('c4-new', ['--max-windows', '3'])).windows).toBe(3);
});

test('gptq report --dataset wikitext2 --dataset c4: a c4 column; measured columns are reused', async () => {
  const dir = path.join(tmp, 'branches');
  const common = ['--seqlen', String(SEQLEN), '--max-windows', '4', '--device', 'cpu', '--quiet'];
  const first = await gptq(['report', dir, '--dataset', 'wikitext2', ...common]);
  expect(first.stderr).toBe('');
  expect(first.code).toBe(0);
  const file = path.join(dir, 'report.json');
  const one: Report = JSON.parse(fs.readFileSync(file, 'utf8'));
  expect(one.extraEvals).toBeUndefined();
  expect(one.rows.map((r) => [r.name, r.extraPerplexity])).toEqual([['fp16', undefined], ['gptq-c4', undefined]]);

  // The wikitext column is taken from the last report (same weights, same protocol), not measured:
  // a value planted there comes back.
  one.rows[0].perplexity = 1234.5;
  fs.writeFileSync(file, JSON.stringify(one));
  const both = await gptq(['report', dir, '--dataset', 'wikitext2', '--dataset', 'c4', ...common, '--json']);
  expect(both.stderr).toBe('');
  expect(both.code).toBe(0);
  const two: Report = JSON.parse(both.stdout);
  expect(two.eval).toEqual(one.eval);
  expect(two.extraEvals).toHaveLength(1);
  expect(two.extraEvals![0]).toMatchObject({ dataset: 'c4', seqlen: SEQLEN, windows: 4, source: expect.stringContaining(`c4:validation = hf://datasets/allenai/c4/${C4_VALIDATION}`) });
  // get_c4's valenc: its first 4 windows
  expect(two.extraEvals![0]).toMatchObject({ tokens: 4 * SEQLEN, idsSha256: idsDigest(referenceValenc(4, SEQLEN)) });
  expect(two.extraEvals![0].source).toContain('get_c4\'s eval: 256 windows');
  expect(two.rows.map((r) => r.perplexity)).toEqual([1234.5, one.rows[1].perplexity]);
  const c4 = two.rows.map((r) => r.extraPerplexity?.c4);
  for (const v of c4) expect(Number.isFinite(v) && v! > 1).toBe(true);
  // the c4 column is gptq eval's figure for the same windows
  const ev = await gptq(['eval', '--model', LLAMA2_S, '--dataset', 'c4', ...common, '--json']);
  expect(JSON.parse(ev.stdout).perplexity).toBe(c4[0]);
  const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
  expect(md).toContain('| Perplexity (wikitext2) | vs fp16 | Perplexity (c4) | vs fp16 |');
  expect(md).toContain(`Perplexity (c4) on ${two.extraEvals![0].source}: 4 windows of ${SEQLEN} tokens`);

  // Now the c4 column is reused too, in either order of the datasets.
  two.rows[1].extraPerplexity = { c4: 99.5 };
  fs.writeFileSync(file, JSON.stringify(two));
  const swapped = await gptq(['report', dir, '--dataset', 'c4', '--dataset', 'wikitext2', ...common, '--json']);
  expect(swapped.code).toBe(0);
  const three: Report = JSON.parse(swapped.stdout);
  expect(three.eval.dataset).toBe('c4');
  expect(three.rows.map((r) => [r.perplexity, r.extraPerplexity?.wikitext2])).toEqual([[c4[0], 1234.5], [99.5, one.rows[1].perplexity]]);

  const twice = await gptq(['report', dir, '--dataset', 'c4', '--dataset', 'c4', ...common]);
  expect(twice.code).toBe(2);
  expect(twice.stderr).toMatch(/--dataset c4 is given twice/);
});
