/**
 * Names and sizes from outside (issue 12, Deliver 3 and the network part of Deliver 6), through
 * the real binary against a hostile local Hub (test/helpers/hub-server.ts's hostile modes, on
 * 127.0.0.1 only): a `--revision` with `../`, a listing or paths-info answer whose names and
 * object ids leave the cache, oversized / negative sizes, a body longer than its listing, wrong
 * hashes, and a server that accepts the connection and never answers.
 *
 * Every case: one `gptq: error:` line, the exit code, no stack trace, and nothing outside the HF
 * cache changed (the tree above the cache is hashed before and after).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCliAsync } from '../helpers/cli';
import { cacheClean, expectOneError as expectOneErrorWith, treeHash } from '../helpers/hostile';
import { startHubServer, type HubServer, type HubServerOptions } from '../helpers/hub-server';
import { LLAMA2_S } from '../helpers/shared';
import { settings, writeManifest } from '../helpers/manifest-fixture';

const TOKEN = 'hf_HostileTestToken0123456789';
const expectOneError = (r: Parameters<typeof expectOneErrorWith>[0], code: number, pattern: RegExp) => expectOneErrorWith(r, code, pattern, TOKEN);
let tmp: string;
let text: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-hostile-'));
  text = path.join(tmp, 'text.txt');
  fs.writeFileSync(text, 'The quick brown fox jumps over the lazy dog. '.repeat(20));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A fresh work root: `<root>/cache` is the HF cache; everything else in root must stay as it is. */
function workRoot(name: string) {
  const root = path.join(tmp, name);
  fs.mkdirSync(path.join(root, 'cache'), { recursive: true });
  fs.writeFileSync(path.join(root, 'keep.txt'), 'beside the cache');
  return { root, cache: path.join(root, 'cache') };
}

async function withServer<T>(opts: HubServerOptions, fn: (s: HubServer) => Promise<T>, revisions?: string[]): Promise<T> {
  const server = await startHubServer({ 'models/test/s': { dir: LLAMA2_S, revisions } }, { token: TOKEN, ...opts });
  try {
    return await fn(server);
  } finally {
    await server.close();
  }
}

function evalHub(server: HubServer, cache: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}) {
  return runCliAsync(['eval', '--model', 'test/s', ...extra, '--dataset', text, '--seqlen', '16', '--max-windows', '1', '--json', '--quiet', '--device', 'cpu'], {
    timeoutMs: 60_000,
    env: { HF_ENDPOINT: server.url, HF_HUB_CACHE: cache, HF_TOKEN: TOKEN, GPTQ_FORGE_CACHE: path.join(cache, '..', 'forge-cache'), ...env },
  });
}

/** Runs `fn` and checks that nothing under root but the cache (and the token cache) changed. */
async function outsideUnchanged<T>(root: string, cache: string, fn: () => Promise<T>): Promise<T> {
  const skip = [cache, path.join(root, 'forge-cache')];
  const before = treeHash(root, skip);
  const r = await fn();
  expect(treeHash(root, skip)).toEqual(before);
  return r;
}

describe('--revision is checked before any use', () => {
  test.each(['../../../outside-ref', 'a/../../b', '/abs', 'x..y', 'main.lock', 'a b', 'we\\ird'])('%s: exit 2, no request, no refs file anywhere', async (rev) => {
    const { root, cache } = workRoot(`rev-${createHash('sha1').update(rev).digest('hex').slice(0, 8)}`);
    await withServer({}, async (server) => {
      const r = await outsideUnchanged(root, cache, () => evalHub(server, cache, ['--revision', rev]));
      expectOneError(r, 2, /--revision ".*": not a branch, tag or commit name/);
      expect(server.requests).toEqual([]);
      expect(fs.readdirSync(cache)).toEqual([]);
    }, ['main', rev]);
  });

  test('a valid ref name with components (refs/pr/1) is kept inside refs/', async () => {
    const { root, cache } = workRoot('rev-pr');
    await withServer({}, async (server) => {
      const r = await outsideUnchanged(root, cache, () => evalHub(server, cache, ['--revision', 'refs/pr/1']));
      expect(r.code).toBe(0);
      expect(fs.existsSync(path.join(cache, 'models--test--s', 'refs', 'refs', 'pr', '1'))).toBe(true);
    }, ['main', 'refs/pr/1']);
  });
});

/** Listing and paths-info mutated alike, for the file `target`. */
const mutateEntry = (target: string, change: (e: Record<string, unknown>) => void): HubServerOptions['mutateJson'] => (op, body) => {
  if (op === 'revision' || !Array.isArray(body)) return body;
  return body.map((e: Record<string, unknown>) => {
    if (e.path !== target) return e;
    const copy = JSON.parse(JSON.stringify(e)) as Record<string, unknown>;
    change(copy);
    return copy;
  });
};

describe('names and object ids answered by the Hub never leave the cache', () => {
  const cases: Array<[string, HubServerOptions['mutateJson'], RegExp]> = [
    ['an LFS oid with ../', mutateEntry('model.safetensors', (e) => ((e.lfs as { oid: string }).oid = '../../../../pwned-lfs')), /LFS object id for model\.safetensors "\.\.\/\.\.\/\.\.\/\.\.\/pwned-lfs", which is not a sha256 .*; refusing it$/],
    ['a git oid with ../', mutateEntry('config.json', (e) => (e.oid = '../../../../pwned-oid')), /object id for config\.json "\.\.\/\.\.\/\.\.\/\.\.\/pwned-oid", which is not a git object id .*; refusing it$/],
    ['an absolute oid', mutateEntry('config.json', (e) => (e.oid = `${os.tmpdir()}/pwned-abs`)), /object id for config\.json ".*pwned-abs", which is not a git object id .*; refusing it$/],
    ['a file name with ../', mutateEntry('tokenizer.json', (e) => (e.path = '../../../../pwned.json')), /file name "\.\.\/\.\.\/\.\.\/\.\.\/pwned\.json".*"\.\." path segment; refusing it/],
    ['an absolute file name', mutateEntry('tokenizer.json', (e) => (e.path = '/tmp/pwned.json')), /file name "\/tmp\/pwned\.json".*absolute path; refusing it/],
    ['a file name with backslashes', mutateEntry('tokenizer.json', (e) => (e.path = '..\\..\\pwned.json')), /file name .*backslash.*refusing it/],
    ['a file name with NUL', mutateEntry('tokenizer.json', (e) => (e.path = 'tok\u0000enizer.json')), /file name .*NUL.*refusing it/],
    ['an empty segment', mutateEntry('tokenizer.json', (e) => (e.path = 'a//tokenizer.json')), /file name .*empty path segment; refusing it/],
  ];
  test.each(cases)('%s: one line, exit 1, nothing written outside the cache', async (_name, mutateJson, pattern) => {
    const { root, cache } = workRoot(`name-${_name.replace(/\W+/g, '-')}`);
    await withServer({ mutateJson }, async (server) => {
      const r = await outsideUnchanged(root, cache, () => evalHub(server, cache));
      expectOneError(r, 1, pattern);
      expect(fs.existsSync(path.join(os.tmpdir(), 'pwned-abs'))).toBe(false);
      cacheClean(cache);
    });
  });
});

describe('sizes and bytes answered by the Hub', () => {
  const weights = fs.readFileSync(path.join(LLAMA2_S, 'model.safetensors'));
  const cases: Array<[string, HubServerOptions, RegExp]> = [
    ['a size of 10^15', { mutateJson: mutateEntry('model.safetensors', (e) => { e.size = 1e15; (e.lfs as { size: number }).size = 1e15; }) }, /size for model\.safetensors 1000000000000000, which is 1000000000000000 bytes, more than/],
    ['a negative size', { mutateJson: mutateEntry('config.json', (e) => (e.size = -5)) }, /size for config\.json -5, which is negative/],
    ['an LFS size that differs from the size', { mutateJson: mutateEntry('model.safetensors', (e) => ((e.lfs as { size: number }).size = 1e15)) }, /LFS size for model\.safetensors/],
    ['a body longer than the listing', { mutateFile: (_k, rel, d) => (rel === 'model.safetensors' ? { data: Buffer.concat([d, Buffer.alloc(1 << 20)]) } : undefined) }, /sends "\d+" bytes for model\.safetensors, its listing says \d+; nothing was written/],
    ['a body longer than the listing, no Content-Length', {
      intercept: (req, res) => {
        if (!req.url?.includes('/resolve/') || !req.url.endsWith('/model.safetensors')) return false;
        res.writeHead(200, { 'Content-Type': 'application/octet-stream' }); // chunked
        res.write(weights);
        res.end(Buffer.alloc(1 << 20));
        return true;
      },
    }, /sends more than the \d+ bytes its listing gives model\.safetensors/],
    ['flipped bytes (a wrong sha256)', { mutateFile: (_k, rel, d) => (rel === 'model.safetensors' ? { data: Buffer.from(d.map((b, i) => (i === d.length - 7 ? b ^ 0xff : b))) } : undefined) }, /downloaded model\.safetensors has sha256 [0-9a-f]{64}, the Hub lists [0-9a-f]{64}; removed it/],
    ['a wrong git blob id', { mutateFile: (_k, rel, d) => (rel === 'tokenizer_config.json' ? { data: Buffer.from(d.toString('latin1').replace(/"/, "'"), 'latin1') } : undefined) }, /downloaded tokenizer_config\.json has git object id/],
  ];
  test.each(cases)('%s: refused, no blob of it in the cache', async (_name, opts, pattern) => {
    const { root, cache } = workRoot(`size-${_name.replace(/\W+/g, '-')}`);
    await withServer(opts, async (server) => {
      const r = await outsideUnchanged(root, cache, () => evalHub(server, cache));
      expectOneError(r, 1, pattern);
      cacheClean(cache);
    });
  });
});

describe('a server that accepts the connection and never answers', () => {
  // 3 s for the downloads: the requests before the silent one must not time out on a loaded machine.
  const env = { GPTQ_FORGE_HTTP_TIMEOUT_MS: '3000' };

  test('push: one line after the timeout, a progress line before it', async () => {
    const { root, cache } = workRoot('silent-push');
    const out = path.join(root, 'out');
    const b = path.join(out, 'main');
    fs.mkdirSync(b, { recursive: true });
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) fs.copyFileSync(path.join(LLAMA2_S, f), path.join(b, f));
    fs.writeFileSync(path.join(b, 'quantize_config.json'), JSON.stringify({ bits: 4, group_size: 128, desc_act: false, sym: true, damp_percent: 0.01, true_sequential: true, static_groups: false, model_file_base_name: 'model', quant_method: 'gptq', checkpoint_format: 'gptq' }));
    fs.writeFileSync(path.join(b, 'model.safetensors'), Buffer.alloc(1000, 3));
    writeManifest(b, 'main', settings(4, 128, false, true), null);
    await withServer({ intercept: () => true }, async (server) => {
      const t0 = Date.now();
      const r = await outsideUnchanged(root, cache, () => runCliAsync(['push', out, '--repo', 'you/silent'], {
        timeoutMs: 20_000, env: { HF_ENDPOINT: server.url, HF_TOKEN: TOKEN, HF_HUB_CACHE: cache, GPTQ_FORGE_HTTP_TIMEOUT_MS: '1000' },
      }));
      expectOneError(r, 1, /no answer from GET http:\/\/127\.0\.0\.1:\d+\/api\/models\/you\/silent in 1 s: the server is not responding/);
      expect(r.stderr).toMatch(/gptq: waiting for GET http:\/\/127\.0\.0\.1:\d+\/api\/models\/you\/silent: no answer for 0\.5 s/);
      expect(Date.now() - t0).toBeLessThan(15_000);
    });
  });

  test('a download: the listing is silent', async () => {
    const { root, cache } = workRoot('silent-eval');
    await withServer({ intercept: (req) => req.url!.includes('/tree/') }, async (server) => {
      const r = await outsideUnchanged(root, cache, () => evalHub(server, cache, [], env));
      expectOneError(r, 1, /model "test\/s" \(revision main\): no answer from GET http:\/\/127\.0\.0\.1:\d+\/api\/models\/test\/s\/tree\/[0-9a-f]{40} in 3 s/);
    });
  });

  test('a download whose body stops half way', async () => {
    const { root, cache } = workRoot('stall-body');
    const weights = fs.readFileSync(path.join(LLAMA2_S, 'model.safetensors'));
    await withServer({
      intercept: (req, res) => {
        if (!req.url?.includes('/resolve/') || !req.url.endsWith('/model.safetensors')) return false;
        res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(weights.length) });
        res.write(weights.subarray(0, weights.length >> 1));
        return true; // and never the rest
      },
    }, async (server) => {
      const r = await outsideUnchanged(root, cache, () => evalHub(server, cache, [], env));
      expectOneError(r, 1, /no answer from GET http:\/\/127\.0\.0\.1:\d+\/test\/s\/resolve\/[0-9a-f]{40}\/model\.safetensors in 3 s/);
      cacheClean(cache);
    });
  });
});
