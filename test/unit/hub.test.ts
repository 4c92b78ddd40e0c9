import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../../src/errors';
import { resolveDatasetFile, resolveModel } from '../../src/hub/resolve';
import { commitFor, startHubServer, type HubServer } from '../helpers/hub-server';

const S = path.resolve(__dirname, '../../../shared/models/llama2-s');
const ENV_KEYS = ['HF_ENDPOINT', 'HF_TOKEN', 'HF_HUB_CACHE', 'HF_HOME'] as const;
const TOKEN = 'hf_TestSecretToken123';

let tmp: string;
let cache: string;
let server: HubServer;
const savedEnv: Record<string, string | undefined> = {};

/** The UserError a promise rejects with (fails the test if it resolves or throws something else). */
async function userError(p: Promise<unknown>): Promise<string> {
  const e = await p.then(() => undefined, (err) => err);
  expect(e).toBeInstanceOf(UserError);
  return (e as Error).message;
}
const fileFetches = (s: HubServer) => s.requests.filter((r) => r.includes('/resolve/'));

async function makeSnapshot(dir: string, files: Record<string, string | Buffer>, copy: string[] = []) {
  await fsp.mkdir(dir, { recursive: true });
  for (const f of copy) await fsp.copyFile(path.join(S, f), path.join(dir, f));
  for (const [f, data] of Object.entries(files)) {
    await fsp.mkdir(path.dirname(path.join(dir, f)), { recursive: true });
    await fsp.writeFile(path.join(dir, f), data);
  }
}

beforeAll(async () => {
  for (const k of ENV_KEYS) savedEnv[k] = process.env[k];
  jest.spyOn(console, 'debug').mockImplementation(() => undefined); // the library logs each download
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'hub-test-'));
  cache = path.join(tmp, 'cache');
  const tokFiles = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model'];
  await makeSnapshot(path.join(tmp, 'tiny'), { 'model.safetensors': Buffer.alloc(3000, 7), 'pytorch_model.bin': 'decoy', 'README.md': '# tiny' }, tokFiles);
  const weightMap = { 'model.embed_tokens.weight': 'model-00001-of-00003.safetensors', 'model.norm.weight': 'model-00003-of-00003.safetensors', 'lm_head.weight': 'model-00002-of-00003.safetensors', 'model.layers.0.mlp.up_proj.weight': 'model-00001-of-00003.safetensors' };
  await makeSnapshot(path.join(tmp, 'sharded'), {
    'model.safetensors.index.json': JSON.stringify({ metadata: { total_size: 30 }, weight_map: weightMap }),
    'model-00001-of-00003.safetensors': 'shard-1',
    'model-00002-of-00003.safetensors': 'shard-2',
    'model-00003-of-00003.safetensors': 'shard-3',
    'model-extra.safetensors': 'not in the index',
    'pytorch_model-00001-of-00002.bin': 'decoy',
    'quantize_config.json': '{"bits": 4}',
  }, ['config.json', 'tokenizer.json', 'tokenizer_config.json']);
  const cfg = JSON.parse(await fsp.readFile(path.join(S, 'config.json'), 'utf8'));
  await makeSnapshot(path.join(tmp, 'mistral'), { 'config.json': JSON.stringify({ ...cfg, model_type: 'mistral' }), 'model.safetensors': 'weights' });
  await makeSnapshot(path.join(tmp, 'binonly'), { 'pytorch_model.bin': 'weights' }, ['config.json']);
  await makeSnapshot(path.join(tmp, 'wikitext'), { 'wikitext-2-raw-v1/test-00000-of-00001.parquet': 'PAR1 fake parquet PAR1', 'README.md': 'x' });
  server = await startHubServer({
    'models/test/tiny': { dir: path.join(tmp, 'tiny'), revisions: ['main', 'gptq-4bit'] },
    'models/test/sharded': { dir: path.join(tmp, 'sharded') },
    'models/test/mistral': { dir: path.join(tmp, 'mistral') },
    'models/test/binonly': { dir: path.join(tmp, 'binonly') },
    'datasets/Salesforce/wikitext': { dir: path.join(tmp, 'wikitext') },
  });
});

beforeEach(() => {
  process.env.HF_ENDPOINT = server.url;
  process.env.HF_HUB_CACHE = path.join(tmp, 'default-cache');
  delete process.env.HF_TOKEN;
  delete process.env.HF_HOME;
});

afterAll(async () => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  await server?.close();
  await fsp.rm(tmp, { recursive: true, force: true });
  jest.restoreAllMocks();
});

describe('resolveModel: local paths', () => {
  test('an existing folder is returned as is; a revision for it is refused', async () => {
    expect(await resolveModel(S)).toBe(S);
    expect(await userError(resolveModel(S, { revision: 'main' }))).toMatch(/Hub models only/);
  });

  test.each(['./no/such/model', '/no/such/model', '~/no-such-model-here', 'a/b/c', 'justaname'])('missing path-like spec %s', async (spec) => {
    const before = server.requests.length;
    expect(await userError(resolveModel(spec))).toMatch(new RegExp(`^model folder not found: ${spec.replace(/[.~/]/g, '\\$&')}`));
    expect(server.requests.length).toBe(before);
  });
});

describe('resolveModel: Hub repos', () => {
  test('downloads only the needed files into the HF cache layout, then hits the cache', async () => {
    const progress: Array<[string, number, number]> = [];
    const dir = await resolveModel('test/tiny', { cacheDir: cache, onProgress: (f, d, t) => progress.push([f, d, t]) });
    const commit = commitFor('models/test/tiny', 'main');
    expect(dir).toBe(path.join(cache, 'models--test--tiny', 'snapshots', commit));
    expect((await fsp.readdir(dir)).sort()).toEqual(
      ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer.model', 'tokenizer_config.json'],
    );
    // Buffer.equals: jest's toEqual walks big buffers byte by byte (seconds for tokenizer.json).
    expect((await fsp.readFile(path.join(dir, 'model.safetensors'))).equals(Buffer.alloc(3000, 7))).toBe(true);
    expect((await fsp.readFile(path.join(dir, 'tokenizer.json'))).equals(await fsp.readFile(path.join(S, 'tokenizer.json')))).toBe(true);
    expect(await fsp.readFile(path.join(cache, 'models--test--tiny', 'refs', 'main'), 'utf8')).toBe(commit);
    expect(server.requests.some((r) => /pytorch_model\.bin|README\.md/.test(r))).toBe(false);
    expect(server.bytesServed['models/test/tiny/pytorch_model.bin']).toBeUndefined();
    expect(server.bytesServed['models/test/tiny/model.safetensors']).toBeGreaterThanOrEqual(3000);
    expect(progress).toContainEqual(['model.safetensors', 3000, 3000]);

    const fetched = fileFetches(server).length;
    const served = { ...server.bytesServed };
    expect(await resolveModel('test/tiny', { cacheDir: cache })).toBe(dir);
    expect(fileFetches(server).length).toBe(fetched);
    expect(server.bytesServed).toEqual(served);
  });

  test('another branch gets its own snapshot; default cache dir is $HF_HUB_CACHE', async () => {
    const dir = await resolveModel('test/tiny', { revision: 'gptq-4bit' });
    expect(dir).toBe(path.join(tmp, 'default-cache', 'models--test--tiny', 'snapshots', commitFor('models/test/tiny', 'gptq-4bit')));
    expect(await fsp.readFile(path.join(dir, 'config.json'), 'utf8')).toBe(await fsp.readFile(path.join(S, 'config.json'), 'utf8'));
  });

  test('$HF_HOME/hub is the cache when $HF_HUB_CACHE is unset', async () => {
    delete process.env.HF_HUB_CACHE;
    process.env.HF_HOME = path.join(tmp, 'hf-home');
    const dir = await resolveModel('test/tiny');
    expect(dir.startsWith(path.join(tmp, 'hf-home', 'hub', 'models--test--tiny', 'snapshots'))).toBe(true);
  });

  test('sharded index: all shards it names, nothing else', async () => {
    const dir = await resolveModel('test/sharded', { cacheDir: cache });
    expect((await fsp.readdir(dir)).sort()).toEqual([
      'config.json', 'model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors',
      'model.safetensors.index.json', 'quantize_config.json', 'tokenizer.json', 'tokenizer_config.json',
    ]);
    expect(await fsp.readFile(path.join(dir, 'model-00002-of-00003.safetensors'), 'utf8')).toBe('shard-2');
    expect(server.requests.some((r) => /model-extra|pytorch_model/.test(r))).toBe(false);
  });

  test('unknown repo and unknown revision', async () => {
    expect(await userError(resolveModel('nobody/nothing', { cacheDir: cache }))).toBe(
      `model "nobody/nothing" (revision main): repository not found on ${server.url} (or it is private and HF_TOKEN does not grant access) (HTTP 404)`,
    );
    expect(await userError(resolveModel('test/tiny', { revision: 'v9', cacheDir: cache }))).toBe(
      'model "test/tiny" (revision v9): revision "v9" not found (HTTP 404)',
    );
  });

  test('an unsupported architecture is refused before any weights are fetched', async () => {
    expect(await userError(resolveModel('test/mistral', { cacheDir: cache }))).toBe(
      'test/mistral/config.json: model_type "mistral" is not supported (only llama)',
    );
    expect(server.bytesServed['models/test/mistral/model.safetensors']).toBeUndefined();
  });

  test('a repo with only .bin weights', async () => {
    expect(await userError(resolveModel('test/binonly', { cacheDir: cache }))).toMatch(
      /no safetensors weights .*pytorch_model\.bin are not supported/,
    );
  });

  test('network error', async () => {
    const probe = http.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as AddressInfo;
    await new Promise((r) => probe.close(r));
    process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`;
    expect(await userError(resolveModel('test/tiny', { cacheDir: path.join(tmp, 'c2') }))).toMatch(
      /^model "test\/tiny" \(revision main\): network error talking to http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED$/,
    );
  });
});

describe('HF_TOKEN', () => {
  test('is sent as a Bearer token and appears in no error message', async () => {
    process.env.HF_TOKEN = TOKEN;
    const from = server.log.length;
    await resolveModel('test/tiny', { cacheDir: path.join(tmp, 'token-cache') });
    const sent = server.log.slice(from);
    expect(sent.length).toBeGreaterThan(3);
    for (const r of sent) expect(r.authorization).toBe(`Bearer ${TOKEN}`);
    for (const p of [resolveModel('nobody/nothing'), resolveModel('test/tiny', { revision: 'v9' }), resolveDatasetFile('Salesforce/wikitext', 'nope.parquet')]) {
      expect(await userError(p)).not.toContain(TOKEN);
    }
  });

  test('a malformed token is reported without being printed', async () => {
    process.env.HF_TOKEN = 'not-a-token-xyz';
    const msg = await userError(resolveModel('test/tiny', { cacheDir: path.join(tmp, 'c3') }));
    expect(msg).toMatch(/HF_TOKEN is not a Hugging Face access token/);
    expect(msg).not.toContain('not-a-token-xyz');
  });
});

describe('resolveDatasetFile', () => {
  test('downloads one file of a dataset repo', async () => {
    const file = await resolveDatasetFile('Salesforce/wikitext', 'wikitext-2-raw-v1/test-00000-of-00001.parquet', { cacheDir: cache });
    const commit = commitFor('datasets/Salesforce/wikitext', 'main');
    expect(file).toBe(path.join(cache, 'datasets--Salesforce--wikitext', 'snapshots', commit, 'wikitext-2-raw-v1', 'test-00000-of-00001.parquet'));
    expect(await fsp.readFile(file, 'utf8')).toBe('PAR1 fake parquet PAR1');
    expect(server.requests).toContain('/datasets/Salesforce/wikitext/resolve/' + commit + '/wikitext-2-raw-v1/test-00000-of-00001.parquet');
    expect(server.requests.some((r) => r.endsWith('README.md'))).toBe(false);
    const fetched = fileFetches(server).length;
    expect(await resolveDatasetFile('Salesforce/wikitext', 'wikitext-2-raw-v1/test-00000-of-00001.parquet', { cacheDir: cache })).toBe(file);
    expect(fileFetches(server).length).toBe(fetched);
  });

  test('missing file, unknown dataset, bad path', async () => {
    expect(await userError(resolveDatasetFile('Salesforce/wikitext', 'nope.parquet', { cacheDir: cache }))).toBe(
      'dataset "Salesforce/wikitext" (revision main): file nope.parquet not found',
    );
    expect(await userError(resolveDatasetFile('nobody/nothing', 'x.parquet', { cacheDir: cache }))).toMatch(
      /^dataset "nobody\/nothing" \(revision main\): repository not found .*\(HTTP 404\)$/,
    );
    expect(await userError(resolveDatasetFile('Salesforce/wikitext', '../etc/passwd'))).toMatch(/invalid file path/);
  });
});
