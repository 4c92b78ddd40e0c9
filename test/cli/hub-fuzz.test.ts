/**
 * Fuzz: a hostile local Hub (127.0.0.1 only) answering listings and paths-info with names that
 * hold `..`, absolute paths, backslashes, NUL, empty segments; object ids that are paths or of the
 * wrong form; oversized, negative and fractional sizes; bodies flipped, cut or extended; Content-
 * Length lies; links to other hosts; silence. Properties only, not messages:
 *  - never a success with a wrong result (every file of the snapshot equals the served repo's);
 *  - a failure is one line (a UserError; through the CLI one `gptq: error:` line and no stack);
 *  - nothing outside the HF cache is written, and inside it every blob holds what its name says;
 *  - no hang (every run bounded; HTTP timeout 1 s).
 * Seeded: the seed is printed with a failure (GPTQ_FORGE_FUZZ_SEED repeats a run).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../../src/errors';
import { resolveModel } from '../../src/hub/resolve';
import { runCliAsync } from '../helpers/cli';
import { startHubServer, type HubServer, type HubServerOptions } from '../helpers/hub-server';
import { LLAMA2_S } from '../helpers/shared';
import { cacheClean, expectOneError, treeHash } from '../helpers/hostile';

const SEED = Number(process.env.GPTQ_FORGE_FUZZ_SEED ?? Date.now() % 1e9);
let state = SEED >>> 0 || 1;
/** xorshift32: reproducible from SEED. */
const rnd = () => {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state / 2 ** 32;
};
const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];

const BAD_NAMES = ['../gptqfz.json', '../../../../gptqfz.json', '/tmp/gptqfz-abs.json', '..\\..\\gptqfz.json', 'a\\b.json', 'con\u0000fig.json', 'a//b.json', '', '.', '..', './config.json',
  'ok/../../../gptqfz.json', 'C:\\gptqfz.json', 'C:gptqfz.json', `${'x'.repeat(300)}.json`, 'sub/', '\u0001ctl.json'];
const BAD_IDS: unknown[] = ['../../../../gptqfz-oid', '/tmp/gptqfz-oid', '', 'zz', 'a'.repeat(39), 'A'.repeat(40), 'g'.repeat(64), '0'.repeat(41), 123, null, { x: 1 }, '..', `${'0'.repeat(38)}/.`];
const BAD_SIZES: unknown[] = [1e15, -1, -1e15, 1.5, null, '100', 2 ** 53, Number.MAX_VALUE, 0, 1];

const CLIENT_FILES = ['config.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'];
let tmp: string;
let repoDir: string;

type Mutation = { what: string; opts: HubServerOptions };

function mutation(): Mutation {
  const target = pick(['config.json', 'model.safetensors', 'tokenizer_config.json', 'README.md']);
  const ops = ['tree', 'paths-info'] as const;
  const on = (field: string, value: unknown, where = pick([['tree'], ['paths-info'], [...ops]])): Mutation => ({
    what: `${where.join('+')} ${target}.${field} = ${JSON.stringify(value)}`,
    opts: {
      mutateJson: (op, body) => {
        if (!(where as readonly string[]).includes(op) || !Array.isArray(body)) return body;
        return body.map((e: Record<string, unknown>) => {
          if (e.path !== target) return e;
          const c = JSON.parse(JSON.stringify(e)) as Record<string, unknown> & { lfs?: Record<string, unknown> };
          if (field === 'path') c.path = value;
          else if (field === 'oid') c.oid = value;
          else if (field === 'size') c.size = value;
          else if (field === 'lfs.oid') c.lfs = { ...(c.lfs ?? { size: c.size, pointerSize: 130 }), oid: value };
          else if (field === 'lfs.size') c.lfs = { ...(c.lfs ?? { oid: '0'.repeat(64), pointerSize: 130 }), size: value };
          else if (field === 'xetHash') c.xetHash = value;
          else if (field === 'type') c.type = value;
          return c;
        });
      },
    },
  });
  const body = (what: string, f: (d: Buffer) => Buffer, headers?: (d: Buffer) => Record<string, string>): Mutation => ({
    what: `${target} body ${what}`,
    opts: { mutateFile: (_k, rel, d) => (rel === target ? { data: f(d), headers: headers?.(d) } : undefined) },
  });
  const kind = pick(['path', 'oid', 'size', 'lfs.oid', 'lfs.size', 'xetHash', 'type', 'flip', 'cut', 'extend', 'length', 'dup', 'link', 'sha', 'silent']);
  switch (kind) {
    case 'path': return on('path', pick(BAD_NAMES));
    case 'oid': case 'lfs.oid': case 'xetHash': return on(kind, pick(BAD_IDS));
    case 'size': case 'lfs.size': return on(kind, pick(BAD_SIZES));
    case 'type': return on('type', pick(['symlink', 'directory', '', null, 'file ']));
    case 'flip': return body('flipped', (d) => { const c = Buffer.from(d); if (c.length) c[Math.floor(rnd() * c.length)] ^= 1 + Math.floor(rnd() * 255); return c; });
    case 'cut': return body('cut', (d) => d.subarray(0, Math.floor(rnd() * d.length)));
    case 'extend': return body('extended', (d) => Buffer.concat([d, randomBytes(1 + Math.floor(rnd() * 5000))]));
    case 'length': return body('with a lying Content-Length', (d) => d, (d) => ({ 'Content-Length': String(d.length + pick([1, -1, 1e12])) }));
    case 'dup': return { what: `tree ${target} listed twice`, opts: { mutateJson: (op, b) => (op === 'tree' && Array.isArray(b) ? [...b, ...b.filter((e: { path?: string }) => e.path === target).map((e: object) => ({ ...e, size: 1 }))] : b) } };
    case 'link': return {
      what: 'tree with a Link to another host',
      opts: { intercept: (req, res) => {
        if (!req.url?.includes('/tree/') || req.url.includes('elsewhere')) return false;
        res.writeHead(200, { 'Content-Type': 'application/json', Link: '<http://127.0.0.2:9/api/models/test/f/tree/elsewhere>; rel="next"' });
        res.end('[]');
        return true;
      } },
    };
    case 'sha': return {
      what: 'revision answers a foreign sha',
      opts: { mutateJson: (op, b) => (op === 'revision' ? { ...(b as object), sha: pick(['../../../../gptqfz-sha', 'abc', 'A'.repeat(40), null, `${'0'.repeat(39)}/`]) } : b) },
    };
    default: return { what: 'silent resolve', opts: { intercept: (req) => !!req.url?.includes('/resolve/') } };
  }
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-hubfuzz-'));
  repoDir = path.join(tmp, 'repo');
  fs.mkdirSync(repoDir);
  for (const f of CLIENT_FILES) fs.copyFileSync(path.join(LLAMA2_S, f), path.join(repoDir, f));
  fs.writeFileSync(path.join(repoDir, 'model.safetensors'), randomBytes(64 * 1024));
  fs.writeFileSync(path.join(repoDir, 'README.md'), '# fuzz');
  fs.writeFileSync(path.join(tmp, 'keep.txt'), 'outside the cache');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { t = setTimeout(() => reject(new Error(`hang: no answer in ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(t);
  }
}

test(`resolveModel against a hostile Hub: properties hold (seed ${SEED})`, async () => {
  const saved = { ...process.env };
  process.env.GPTQ_FORGE_HTTP_TIMEOUT_MS = '1000';
  process.env.GPTQ_FORGE_HTTP_SLOW_MS = '100000';
  delete process.env.HF_TOKEN;
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  const failures: string[] = [];
  let ok = 0;
  let runs = 0;
  const t0 = Date.now();
  try {
    for (let i = 0; i < 400 && Date.now() - t0 < 12_000; i++) {
      runs++;
      const m = mutation();
      const cache = path.join(tmp, `cache-${i}`);
      const outside = treeHash(tmp, [cache]);
      const server: HubServer = await startHubServer({ 'models/test/f': { dir: repoDir } }, m.opts);
      process.env.HF_ENDPOINT = server.url;
      try {
        const r = await bounded(resolveModel('test/f', { cacheDir: cache }).then((dir) => ({ dir }), (e: unknown) => ({ e })), 8000);
        if ('dir' in r) {
          ok++;
          for (const f of [...CLIENT_FILES, 'model.safetensors']) {
            if (!fs.existsSync(path.join(r.dir, f))) {
              failures.push(`${m.what}: success without ${f}`);
              continue;
            }
            const got = fs.readFileSync(path.join(r.dir, f));
            if (!got.equals(fs.readFileSync(path.join(repoDir, f)))) failures.push(`${m.what}: success with a wrong ${f}`);
          }
          if (!path.resolve(r.dir).startsWith(cache + path.sep)) failures.push(`${m.what}: snapshot outside the cache: ${r.dir}`);
        } else if (!(r.e instanceof UserError) || /\n/.test(r.e.message)) {
          failures.push(`${m.what}: not one line: ${r.e instanceof Error ? r.e.stack : String(r.e)}`);
        }
        const after = treeHash(tmp, [cache]);
        if (JSON.stringify(after) !== JSON.stringify(outside)) failures.push(`${m.what}: wrote outside the cache`);
        if (fs.existsSync(cache)) {
          try {
            cacheClean(cache);
          } catch (e) {
            failures.push(`${m.what}: cache: ${(e as Error).message.split('\n').slice(0, 3).join(' ')}`);
          }
        }
      } finally {
        await server.close();
        fs.rmSync(cache, { recursive: true, force: true });
      }
      if (failures.length) break;
    }
  } finally {
    stderr.mockRestore();
    process.env = saved;
  }
  // Absolute names and `../` ids aim at the system temp folder, above `tmp`.
  for (const n of fs.readdirSync(os.tmpdir())) if (/^gptqfz/.test(n)) failures.push(`written outside: ${path.join(os.tmpdir(), n)}`);
  expect({ seed: SEED, failures }).toEqual({ seed: SEED, failures: [] });
  // Some runs must get through (the clean paths), many must not.
  process.stdout.write(`hub fuzz: seed ${SEED}, ${runs} runs, ${ok} successes\n`);
  expect(runs).toBeGreaterThan(20);
}, 40_000);

test(`the binary against a hostile Hub: exit 0 only with the clean result (seed ${SEED})`, async () => {
  const text = path.join(tmp, 'text.txt');
  fs.writeFileSync(text, 'It was the best of times, it was the worst of times. '.repeat(10));
  const run = async (opts: HubServerOptions) => {
    const server = await startHubServer({ 'models/test/s': { dir: LLAMA2_S } }, opts);
    const cache = path.join(tmp, `cli-cache-${Math.floor(rnd() * 1e9)}`);
    const outside = treeHash(tmp, [cache]);
    try {
      const r = await runCliAsync(['eval', '--model', 'test/s', '--dataset', text, '--seqlen', '16', '--max-windows', '1', '--json', '--quiet', '--device', 'cpu'], {
        timeoutMs: 30_000,
        env: { HF_ENDPOINT: server.url, HF_HUB_CACHE: cache, GPTQ_FORGE_CACHE: path.join(cache, 'forge'), GPTQ_FORGE_HTTP_TIMEOUT_MS: '1000', HF_TOKEN: '' },
      });
      expect(treeHash(tmp, [cache])).toEqual(outside);
      if (fs.existsSync(cache)) cacheClean(cache);
      return r;
    } finally {
      await server.close();
      fs.rmSync(cache, { recursive: true, force: true });
    }
  };
  const clean = await run({});
  expect(clean.code).toBe(0);
  const ppl = (JSON.parse(clean.stdout) as { perplexity: number }).perplexity;
  for (let i = 0; i < 3; i++) {
    const m = mutation();
    const r = await run(m.opts);
    if (r.code === 0) expect({ m: m.what, ppl: (JSON.parse(r.stdout) as { perplexity: number }).perplexity }).toEqual({ m: m.what, ppl });
    else expectOneError(r, 1, /./);
  }
}, 60_000);
