/**
 * The local side of `gptq push`: which folders count as finished branches, --only, the check of
 * every file against its manifest, and the model card's table. Small files written here.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../../src/errors';
import { modelCard } from '../../src/hub/model-card';
import { scanBranches, selectBranches, verifyBranch } from '../../src/hub/push-branches';
import { checkRepoName, sameFile, staleFiles } from '../../src/hub/push';
import { settings, wikitextCalibration, writeManifest } from '../helpers/manifest-fixture';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'push-branches-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function branch(name: string, files: Record<string, string>, manifestName = name): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d);
  for (const [f, c] of Object.entries(files)) fs.writeFileSync(path.join(d, f), c);
  writeManifest(d, manifestName, settings(4, 128, true), wikitextCalibration(128, 2048));
  return d;
}

async function userError(p: Promise<unknown> | (() => unknown)): Promise<string> {
  const e = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(() => undefined, (err) => err);
  expect(e).toBeInstanceOf(UserError);
  return (e as Error).message;
}

test('finished branches: main first, then by name; partial, manifest-less, misnamed and unsafe folders skipped with why', async () => {
  branch('gptq-b', { 'model.safetensors': 'b' });
  branch('main', { 'model.safetensors': 'm' });
  branch('gptq-a', { 'model.safetensors': 'a' });
  branch('renamed', { 'model.safetensors': 'r' }, 'other');
  const unsafe = branch('unsafe', { 'model.safetensors': 'u' });
  const m = JSON.parse(fs.readFileSync(path.join(unsafe, 'manifest.json'), 'utf8'));
  m.files[0].path = '../escape';
  fs.writeFileSync(path.join(unsafe, 'manifest.json'), JSON.stringify(m));
  fs.mkdirSync(path.join(tmp, 'gptq-c.partial'));
  fs.mkdirSync(path.join(tmp, 'bare'));
  fs.mkdirSync(path.join(tmp, 'badjson'));
  fs.writeFileSync(path.join(tmp, 'badjson', 'manifest.json'), '{');
  const scan = await scanBranches(tmp);
  expect(scan.branches.map((b) => b.name)).toEqual(['main', 'gptq-a', 'gptq-b']);
  const why = Object.fromEntries(scan.skipped.map((s) => [s.name, s.reason]));
  expect(Object.keys(why).sort()).toEqual(['badjson', 'bare', 'gptq-c.partial', 'renamed', 'unsafe']);
  expect(why['gptq-c.partial']).toMatch(/unfinished/);
  expect(why.bare).toMatch(/no manifest\.json/);
  expect(why.badjson).toMatch(/invalid JSON/);
  expect(why.renamed).toMatch(/names branch "other"/);
  expect(why.unsafe).toMatch(/unsafe path "\.\.\/escape"/);
  expect(scan.report).toBeNull();

  expect(selectBranches(scan, 'gptq-b, main', tmp).map((b) => b.name)).toEqual(['main', 'gptq-b']);
  expect(await userError(() => selectBranches(scan, 'gptq-z', tmp))).toMatch(/no such branch.*main, gptq-a, gptq-b/);
  expect(await userError(() => selectBranches(scan, 'gptq-c', tmp))).toMatch(/gptq-c\.partial: unfinished/);
  expect(await userError(() => selectBranches(scan, ',', tmp))).toMatch(/at least one/);
});

test('every file is checked against the manifest: missing, resized, changed in place', async () => {
  const d = branch('main', { 'model.safetensors': 'weights-1', 'config.json': '{}' });
  const scan = await scanBranches(tmp);
  const files = await verifyBranch(scan.branches[0]);
  expect(files.map((f) => f.path)).toEqual(['config.json', 'model.safetensors', 'manifest.json']);

  fs.writeFileSync(path.join(d, 'model.safetensors'), 'weights-2'); // same size, other bytes
  expect(await userError(verifyBranch(scan.branches[0]))).toMatch(/main\/model\.safetensors: sha256 .* differs from main\/manifest\.json/);
  fs.writeFileSync(path.join(d, 'model.safetensors'), 'weights-10');
  expect(await userError(verifyBranch(scan.branches[0]))).toMatch(/main\/model\.safetensors has 10 bytes, .* says 9/);
  fs.rmSync(path.join(d, 'model.safetensors'));
  expect(await userError(verifyBranch(scan.branches[0]))).toMatch(/main\/model\.safetensors is listed .* but missing/);
});

test('no finished branch, missing folder', async () => {
  fs.mkdirSync(path.join(tmp, 'x.partial'));
  const scan = await scanBranches(tmp);
  expect(await userError(() => selectBranches(scan, undefined, tmp))).toMatch(/no finished branch.*x\.partial: unfinished/);
  expect(await userError(scanBranches(path.join(tmp, 'none')))).toMatch(/branches folder not found/);
});

test('repo names as the Hub accepts them', async () => {
  for (const ok of ['TheBloke/Llama-2-70B-GPTQ', 'a/b', 'org_1/model.v2']) expect(() => checkRepoName(ok)).not.toThrow();
  for (const bad of ['x', 'a/b/c', '/b', 'a/', 'a/-b', 'a/b-', 'a/b--c', 'a/b..c', 'a/b.git', 'a b/c', `a/${'x'.repeat(97)}`]) {
    expect([bad, await userError(() => checkRepoName(bad))]).toEqual([bad, expect.stringMatching(/not a Hub repo name/)]);
  }
});

test('remote comparison: LFS files by sha256, others by git blob id; stale files but .gitattributes', () => {
  const local = { path: 'a', size: 3, sha256: 's'.repeat(64), gitOid: 'g'.repeat(40) };
  expect(sameFile(local, { size: 3, oid: 'x', lfsOid: 's'.repeat(64) })).toBe(true);
  expect(sameFile(local, { size: 3, oid: 'g'.repeat(40) })).toBe(true);
  expect(sameFile(local, { size: 3, oid: 'g'.repeat(40), lfsOid: 't'.repeat(64) })).toBe(false);
  expect(sameFile(local, { size: 4, oid: 'g'.repeat(40) })).toBe(false);
  expect(sameFile(local, undefined)).toBe(false);
  const remote = new Map(['a', 'b', '.gitattributes', 'dir/c'].map((p) => [p, { size: 1, oid: 'o' }]));
  expect(staleFiles(remote, [local])).toEqual(['b', 'dir/c']);
});

test('model card: no perplexity column without a report; GS None; ExLlama Yes for 4 bits only; license and quantized_by in the front matter', async () => {
  branch('main', { 'model.safetensors': 'm' });
  const d = branch('gptq-4bit--1g', { 'model.safetensors': 'n' });
  const m = JSON.parse(fs.readFileSync(path.join(d, 'manifest.json'), 'utf8'));
  m.settings.groupSize = -1;
  m.settings.actOrder = false;
  fs.writeFileSync(path.join(d, 'manifest.json'), JSON.stringify(m));
  for (const bits of [2, 3, 8]) {
    const b = branch(`x-${bits}bit-128g`, { 'model.safetensors': String(bits) });
    const mb = JSON.parse(fs.readFileSync(path.join(b, 'manifest.json'), 'utf8'));
    mb.settings.bits = bits;
    fs.writeFileSync(path.join(b, 'manifest.json'), JSON.stringify(mb));
  }
  const scan = await scanBranches(tmp);
  const card = modelCard({
    repo: 'me/model-GPTQ', hubUrl: 'https://hub.example', branches: scan.branches, report: null,
    baseModel: 'meta-llama/Llama-2-70b-hf', license: 'llama2', quantizedBy: 'me', modelType: 'llama',
  });
  const front = card.split('\n---\n')[0];
  expect(front).toContain('base_model: "meta-llama/Llama-2-70b-hf"');
  expect(front).toContain('license: "llama2"');
  expect(front).toContain('quantized_by: "me"');
  expect(front).toContain('inference: false');
  expect(card).toContain('| Branch | Bits | GS | Act Order | Damp % | GPTQ Dataset | Seq Len | Size | ExLlama | Desc |');
  expect(card).toContain('| [gptq-4bit--1g](https://hub.example/me/model-GPTQ/tree/gptq-4bit--1g) | 4 | None | No | 0.01 | wikitext2 | 2048 |');
  // The ExLlama cell (the column after Size) of each row, as TheBloke's table has it: Yes for 4-bit, No otherwise.
  const exllama = Object.fromEntries(card.split('\n').filter((l) => l.startsWith('| [')).map((l) => {
    const cells = l.split(' | ');
    return [cells[0].replace(/^\| \[([^\]]+)\].*$/, '$1'), cells[8]];
  }));
  expect(exllama).toEqual({ main: 'Yes', 'gptq-4bit--1g': 'Yes', 'x-2bit-128g': 'No', 'x-3bit-128g': 'No', 'x-8bit-128g': 'No' });
  expect(card).toContain('- ExLlama Compatibility: ');
  expect(card).toContain('No group size, to lower VRAM requirements.');
  expect(card).toContain('git clone --single-branch --branch gptq-4bit--1g https://hub.example/me/model-GPTQ');
});
