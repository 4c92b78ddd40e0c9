/**
 * `gptq push` through the real CLI against the fake Hub of test/helpers/hub-server.ts, which
 * implements the Hub endpoints @huggingface/hub calls (repo create, refs, branch create, tree,
 * preupload, LFS batch + object PUT, NDJSON commit) and keeps the commits of each branch in memory.
 * No test touches the internet: HF_ENDPOINT points every request at 127.0.0.1.
 *
 * Branches: `main` is a real round-to-nearest llama2-s branch made by `gptq quantize --rtn`
 * (about a second); the second one is a small fake branch (tiny files) that lacks two of main's
 * files, so the push must delete what the new branch inherited from main.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Report } from '../../src/eval/report-types';
import { branchFiles } from '../helpers/hub-upload';
import { runCli, runCliAsync } from '../helpers/cli';
import { startHubServer, type HubServer } from '../helpers/hub-server';
import { settings, sha256File, wikitextCalibration, writeManifest } from '../helpers/manifest-fixture';
import { LLAMA2_S } from '../helpers/shared';
import { HubPusher } from '../../src/hub/push';
import { memoryFile } from '../../src/hub/push-branches';

const TOKEN = 'hf_PushTestSecret0123456789';
const G32 = 'gptq-4bit-32g-actorder_True';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let tmp: string;
let dir: string;
let server: HubServer;
const perplexity: Record<string, number> = {};

function push(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCliAsync(['push', ...args], {
    env: { HF_ENDPOINT: server.url, HF_TOKEN: TOKEN, HF_HUB_CACHE: path.join(tmp, 'cache'), ...env },
  });
}

/** What the branch folder must become on the Hub: its manifest's files plus manifest.json. */
function localFiles(branch: string): Map<string, string> {
  const m = JSON.parse(fs.readFileSync(path.join(dir, branch, 'manifest.json'), 'utf8')) as { files: Array<{ path: string }> };
  const out = new Map(m.files.map((f) => [f.path, sha256File(path.join(dir, branch, f.path))]));
  out.set('manifest.json', sha256File(path.join(dir, branch, 'manifest.json')));
  return out;
}

function copyBranches(to: string): string {
  fs.cpSync(dir, to, { recursive: true });
  return to;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-push-'));
  dir = path.join(tmp, 'branches');
  fs.mkdirSync(dir);
  const q = runCli(['quantize', '--model', LLAMA2_S, '--out', path.join(dir, 'main'), '--rtn', '--bits', '4', '--group-size', '128', '--dataset', 'wikitext2', '--quiet']);
  expect(q.code).toBe(0);
  writeManifest(path.join(dir, 'main'), 'main', settings(4, 128, false, true), null);

  const g = path.join(dir, G32);
  fs.mkdirSync(g);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    fs.copyFileSync(path.join(dir, 'main', f), path.join(g, f));
  }
  const qc = JSON.parse(fs.readFileSync(path.join(dir, 'main', 'quantize_config.json'), 'utf8'));
  fs.writeFileSync(path.join(g, 'quantize_config.json'), JSON.stringify({ ...qc, group_size: 32, desc_act: true }, null, 2));
  fs.writeFileSync(path.join(g, 'model.safetensors'), randomBytes(100_000));
  writeManifest(g, G32, settings(4, 32, true), wikitextCalibration(128, 4096));

  fs.mkdirSync(path.join(dir, 'gptq-8bit-128g-actorder_False.partial'));
  fs.writeFileSync(path.join(dir, 'gptq-8bit-128g-actorder_False.partial', 'model.safetensors'), 'half');
  fs.mkdirSync(path.join(dir, 'notes'));
  fs.writeFileSync(path.join(dir, 'notes', 'todo.txt'), 'not a branch');

  // Perplexities are inputs of the card: any values, taken at random so the test cannot pass by a constant.
  for (const n of ['main', G32, 'fp16']) perplexity[n] = 5 + Math.random() * 5;
  const row = (name: string, kind: 'fp16' | 'gptq' | 'rtn') => ({
    name, kind, bits: 4, groupSize: 128, actOrder: false, dampPercent: 0.01, dataset: null, seqlen: null,
    sizeBytes: 1, bitsPerWeight: 4.2, perplexity: perplexity[name], buildSeconds: null, weightsId: name,
  });
  const report: Report = {
    format: 'gptq-forge/report@1', base: { model: 'meta-llama/Llama-2-7b-hf', revision: null },
    eval: { dataset: 'wikitext2', source: 'wiki.test.raw', seqlen: 2048, windows: 4, tokens: 9000 },
    rows: [row('fp16', 'fp16'), row('main', 'rtn'), row(G32, 'gptq')], createdAt: '2026-11-27T12:00:00.000Z',
  };
  fs.writeFileSync(path.join(dir, 'report.json'), JSON.stringify(report));
  server = await startHubServer({}, { token: TOKEN });
}, 120_000);

afterAll(async () => {
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function expectOneLineError(r: { code: number | null; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(r.code).not.toBe(0);
  const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('skipping ') && !l.startsWith('verified ') && !/^verify /.test(l));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^gptq: error: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stderr + r.stdout).not.toContain(TOKEN);
}

test('push creates the repo, main and one branch per folder with exactly their files; the card lists every branch', async () => {
  const before = server.log.length;
  const r = await push([dir, '--repo', 'test-owner/llama2-s-GPTQ']);
  expect(r.stderr).toMatch(/skipping gptq-8bit-128g-actorder_False\.partial: unfinished/);
  expect(r.stderr).toMatch(/skipping notes: no manifest\.json/);
  expect(r.code).toBe(0);
  const repo = server.store.repos.get('models/test-owner/llama2-s-GPTQ');
  expect(repo).toBeDefined();
  expect([...repo!.branches.keys()].sort()).toEqual([G32, 'main']);

  for (const b of ['main', G32]) {
    const remote = branchFiles(server.store, 'test-owner/llama2-s-GPTQ', b);
    const local = localFiles(b);
    // Exactly the branch's files, the card, and the .gitattributes every Hub repo starts with.
    expect([...remote.keys()].sort()).toEqual([...local.keys(), 'README.md', '.gitattributes'].sort());
    for (const [p, h] of local) expect([p, sha256(remote.get(p)!)]).toEqual([p, h]);
  }
  const cards = ['main', G32].map((b) => branchFiles(server.store, 'test-owner/llama2-s-GPTQ', b).get('README.md')!.toString('utf8'));
  expect(cards[1]).toBe(cards[0]);
  const card = cards[0];
  expect(card).toMatch(/^---\n[\s\S]*base_model: "meta-llama\/Llama-2-7b-hf"[\s\S]*inference: false[\s\S]*- gptq[\s\S]*\n---\n/);
  expect(card).toContain('| Branch | Bits | GS | Act Order | Damp % | GPTQ Dataset | Seq Len | Size | ExLlama | Perplexity | Desc |');
  const size = (b: string) => {
    const m = JSON.parse(fs.readFileSync(path.join(dir, b, 'manifest.json'), 'utf8')) as { files: Array<{ size: number }> };
    return `${(m.files.reduce((a, f) => a + f.size, 0) / 1e6).toFixed(2)} MB`; // both branches weigh megabytes (tokenizer.json alone is 3.6 MB)
  };
  expect(card).toMatch(new RegExp(`\\| \\[main\\]\\([^)]*/tree/main\\) \\| 4 \\| 128 \\| No \\| 0\\.01 \\| none \\(RTN\\) \\| – \\| ${size('main')} \\| Yes \\| ${perplexity.main.toFixed(4)} \\|`));
  expect(card).toMatch(new RegExp(`\\| \\[${G32}\\]\\([^)]*/tree/${G32}\\) \\| 4 \\| 32 \\| Yes \\| 0\\.01 \\| wikitext2 \\| 4096 \\| ${size(G32)} \\| Yes \\| ${perplexity[G32].toFixed(4)} \\|`));
  expect(card).toContain(perplexity.fp16.toFixed(4));
  expect(card).not.toContain('gptq-8bit-128g'); // the unfinished branch is not listed
  expect(card).toContain(`huggingface-cli download test-owner/llama2-s-GPTQ --revision ${G32}`);
  expect(card).toContain(`git clone --single-branch --branch ${G32}`);
  expect(card).toContain(`from_pretrained(model_id, revision=revision`);
  expect(card).toContain(`gptq eval --model test-owner/llama2-s-GPTQ --revision ${G32}`);

  // One commit per branch, named after the branch and its settings.
  const titles = [...repo!.commits.values()].map((c) => `${c.branch}: ${c.title}`);
  expect(titles).toContain('main: Upload GPTQ branch main: 4-bit, group size 128, act order off, damp 0.01, round-to-nearest');
  expect(titles).toContain(`${G32}: Upload GPTQ branch ${G32}: 4-bit, group size 32, act order on, damp 0.01, wikitext2 128×4096`);
  expect(titles).toHaveLength(3); // + the repo's initial commit

  // Plain LFS, no Xet; the token in every Hub API request, never in the output.
  expect(server.store.lfsTransfers.length).toBeGreaterThan(0);
  for (const t of server.store.lfsTransfers) expect(t).not.toContain('xet');
  const reqs = server.log.slice(before);
  for (const q of reqs.filter((x) => !x.path.startsWith('/__lfs/'))) expect([q.method, q.path, q.authorization]).toEqual([q.method, q.path, `Bearer ${TOKEN}`]);
  expect(reqs.some((q) => q.method === 'PUT' && q.path.startsWith('/__lfs/'))).toBe(true);
  expect(r.stdout + r.stderr).not.toContain(TOKEN);
  expect(r.stdout).toMatch(/pushed main → .*\/tree\/main/);
}, 120_000);

test('a second push sends nothing and makes no commit', async () => {
  const repo = server.store.repos.get('models/test-owner/llama2-s-GPTQ')!;
  const heads = new Map(repo.branches);
  const before = server.log.length;
  const r = await push([dir, '--repo', 'test-owner/llama2-s-GPTQ', '--quiet']);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/main: already up to date/);
  expect(new Map(repo.branches)).toEqual(heads);
  expect(server.log.slice(before).filter((q) => q.method !== 'GET')).toEqual([]);
});

test('the pushed main branch downloads again and evaluates (gptq eval --model OWNER/NAME --revision main)', async () => {
  const text = path.join(tmp, 'text.txt');
  fs.writeFileSync(text, 'The quick brown fox jumps over the lazy dog. '.repeat(40));
  const r = await runCliAsync(['eval', '--model', 'test-owner/llama2-s-GPTQ', '--revision', 'main', '--dataset', text, '--seqlen', '64', '--max-windows', '1', '--json'], {
    env: { HF_ENDPOINT: server.url, HF_TOKEN: TOKEN, HF_HUB_CACHE: path.join(tmp, 'cache') },
  });
  expect(r.stderr).not.toMatch(/error/i);
  expect(r.code).toBe(0);
  // Without --quiet the download is reported (it came from the Hub, not a local folder).
  expect(r.stderr).toMatch(/Downloading model\.safetensors/);
  expect(Number.isFinite(JSON.parse(r.stdout).perplexity)).toBe(true);
}, 120_000);

test('--only a branch into a new private repo: main gets the card only, the branch its files', async () => {
  const r = await push([dir, '--repo', 'test-owner/only-one', '--only', G32, '--private']);
  expect(r.code).toBe(0);
  const repo = server.store.repos.get('models/test-owner/only-one')!;
  expect(repo.private).toBe(true);
  expect([...branchFiles(server.store, 'test-owner/only-one', 'main').keys()].sort()).toEqual(['.gitattributes', 'README.md']);
  const files = branchFiles(server.store, 'test-owner/only-one', G32);
  expect([...files.keys()].sort()).toEqual([...localFiles(G32).keys(), 'README.md', '.gitattributes'].sort());
  expect(files.get('README.md')!.toString('utf8')).not.toContain('[main]');
});

test('--dry-run needs no token, makes no request, and prints the plan and the card', async () => {
  const before = server.log.length;
  const r = await push([dir, '--repo', 'test-owner/dry', '--dry-run'], { HF_TOKEN: '' });
  expect(r.code).toBe(0);
  expect(server.log.length).toBe(before);
  expect(r.stdout).toMatch(/would push 2 branch/);
  expect(r.stdout).toContain(`${G32} → branch ${G32}`);
  expect(r.stdout).toContain('## Provided files, and GPTQ parameters');
});

test('a file that differs from its manifest is refused before any request', async () => {
  const d = copyBranches(path.join(tmp, 'tampered'));
  const cfg = path.join(d, G32, 'quantize_config.json');
  const bytes = fs.readFileSync(cfg);
  bytes[bytes.indexOf('3'.charCodeAt(0))] = '6'.charCodeAt(0); // group_size 32 → 62, same size
  fs.writeFileSync(cfg, bytes);
  const before = server.log.length;
  const r = await push([d, '--repo', 'test-owner/tampered']);
  expectOneLineError(r, new RegExp(`${G32}/quantize_config\\.json: sha256 [0-9a-f]{64} differs from ${G32}/manifest\\.json.*refusing to push`));
  expect(server.log.length).toBe(before);
  expect(server.store.repos.has('models/test-owner/tampered')).toBe(false);
});

test('user errors: one line, no request', async () => {
  const before = server.log.length;
  expectOneLineError(await push([dir, '--repo', 'no-slash']), /--repo "no-slash" is not a Hub repo name/);
  expectOneLineError(await push([dir, '--repo', 'a/b--c']), /is not a Hub repo name/);
  expectOneLineError(await push([path.join(tmp, 'nope'), '--repo', 'a/b']), /branches folder not found/);
  fs.mkdirSync(path.join(tmp, 'empty'), { recursive: true });
  expectOneLineError(await push([path.join(tmp, 'empty'), '--repo', 'a/b']), /has no finished branch/);
  expectOneLineError(await push([dir, '--repo', 'a/b', '--only', 'gptq-3bit']), /--only gptq-3bit: no such branch .*finished branches: main, gptq-4bit-32g-actorder_True/);
  expectOneLineError(await push([dir, '--repo', 'a/b', '--only', 'gptq-8bit-128g-actorder_False']), /not a finished branch .*unfinished/);
  expectOneLineError(await push([dir, '--repo', 'a/b'], { HF_TOKEN: '' }), /HF_TOKEN is not set/);
  expect(server.log.length).toBe(before);
});

test('Hub and network errors: status, method and endpoint, no token', async () => {
  const wrong = 'hf_WrongToken999';
  const r = await push([dir, '--repo', 'test-owner/denied', '--only', G32, '--quiet'], { HF_TOKEN: wrong });
  expectOneLineError(r, /creating test-owner\/denied: HTTP 401 on POST http:\/\/127\.0\.0\.1:\d+\/api\/repos\/create: Invalid credentials.*HF_TOKEN is invalid/);
  expect(r.stderr).not.toContain(wrong);
  // A port that was just free: nothing listens there.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const n = await push([dir, '--repo', 'test-owner/x', '--only', G32, '--quiet'], { HF_ENDPOINT: `http://127.0.0.1:${port}` });
  expectOneLineError(n, new RegExp(`network error on GET http://127\\.0\\.0\\.1:${port}/api/models/test-owner/x: ECONNREFUSED`));
});

test('a commit whose parent is no longer the branch head is refused (412), not applied', async () => {
  const repo = server.store.repos.get('models/test-owner/llama2-s-GPTQ')!;
  const pusher = new HubPusher('test-owner/llama2-s-GPTQ', TOKEN, server.url);
  const heads = await pusher.branches();
  const stale = repo.commits.get(heads.get('main')!)!.parent!;
  const card = memoryFile('README.md', Buffer.from('# changed'));
  const e = await pusher.commit('main', stale, 'late', '', [card], []).then(() => undefined, (err: Error) => err);
  expect(e?.message).toMatch(/pushing branch main: HTTP 412 on POST http:\/\/127\.0\.0\.1:\d+\/api\/models\/test-owner\/llama2-s-GPTQ\/commit\/main: A commit has happened since/);
  expect(e?.message).not.toContain(TOKEN);
  expect(repo.branches.get('main')).toBe(heads.get('main'));
});
