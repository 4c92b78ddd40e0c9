/**
 * `gptq verify` checks the whole branch against its base, with or without a manifest: NaN/Inf
 * anywhere (a scale of any linear, a norm, lm_head), every copied tensor byte for byte,
 * config.json against the base's plus quantization_config, g_idx against act-order.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { copyFolder, F16_INF, F16_NAN, hashTree, patchTensor, scaleF16, setF16 } from '../helpers/nonfinite-fixtures';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

jest.setTimeout(180_000);

let tmp: string;
let withManifest: string;
let noManifest: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-verify-base-'));
  withManifest = path.join(tmp, 'branch');
  const r = runCli(['quantize', '--model', LLAMA2_S, '--out', withManifest, '--bits', '4', '--group-size', '32', '--act-order',
    '--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--device', 'cpu', '--quiet'],
  { env: { GPTQ_FORGE_CACHE: path.join(tmp, 'cache') } });
  if (r.code !== 0) throw new Error(r.stderr);
  noManifest = copyFolder(withManifest, path.join(tmp, 'no-manifest'));
  fs.rmSync(path.join(noManifest, 'manifest.json'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

type CheckRow = { name: string; ok: boolean; detail: string };

function verify(branch: string, extra: string[]) {
  return runCli(['verify', branch, ...extra, '--json', '--quiet']);
}

/** A copy of the manifest-less branch (or of the branch with its manifest), changed by `edit`. */
function variant(label: string, edit: (dir: string) => void, from = noManifest): string {
  const dir = copyFolder(from, path.join(tmp, label));
  edit(dir);
  return dir;
}

/**
 * verify fails: exit 1, one `gptq: error:` line naming `what`, no stack trace, the failed
 * checks are `failed` (each naming `what` where given), and no file changed.
 */
function expectFails(branch: string, failed: string[], what: RegExp, extra = ['--base', LLAMA2_S]): CheckRow[] {
  const trees = () => [fs.readdirSync(tmp).sort(), hashTree(branch), hashTree(withManifest), hashTree(noManifest), hashTree(LLAMA2_S)];
  const before = trees();
  const r = verify(branch, extra);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^gptq: error: .* failed \d+ check\(s\)/);
  expect(lines[0]).toMatch(what);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.code).toBe(1);
  const checks: CheckRow[] = JSON.parse(r.stdout).checks;
  expect(checks.filter((c) => !c.ok).map((c) => c.name)).toEqual(failed);
  expect(trees()).toEqual(before);
  return checks;
}

test('a sound branch passes, with --base and no manifest, and with its manifest; g_idx says what is not checked', () => {
  for (const [dir, extra] of [[noManifest, ['--base', LLAMA2_S]], [withManifest, []]] as const) {
    const r = verify(dir, [...extra]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const checks: CheckRow[] = JSON.parse(r.stdout).checks;
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['structure', true], ['config', true], ['g_idx', true], ['finite', true], ['sha256', true],
      ['copied', true], ['base-config', true], ['weights', true],
    ]);
    expect(checks.find((c) => c.name === 'g_idx')!.detail).toMatch(/not checked: .*Hessian diagonal/);
    expect(checks.find((c) => c.name === 'copied')!.detail).toMatch(/byte for byte/);
  }
});

test.each([
  ['model.layers.0.self_attn.v_proj.scales', F16_NAN],
  ['model.layers.2.mlp.down_proj.scales', F16_NAN],
  ['model.layers.3.mlp.up_proj.scales', F16_INF],
])('a non-finite value in %s fails verify --base, naming the tensor', (name, bits) => {
  const dir = variant(`nan-${name}-${bits}`, (d) => setF16(d, name, 17, bits));
  const checks = expectFails(dir, ['finite', 'weights'], new RegExp(`tensor ${name.replace(/\./g, '\\.')} has 1 NaN/Inf`));
  expect(checks.find((c) => c.name === 'weights')!.detail).toContain(name);
});

test('a NaN in the scales of a branch with its manifest fails as well (finite and sha256)', () => {
  const dir = variant('nan-manifest', (d) => setF16(d, 'model.layers.1.self_attn.o_proj.scales', 3, F16_NAN), withManifest);
  expectFails(dir, ['finite', 'sha256', 'weights'], /tensor model\.layers\.1\.self_attn\.o_proj\.scales has 1 NaN\/Inf/, []);
});

test('a zeroed lm_head fails: copied names lm_head.weight', () => {
  const dir = variant('zero-head', (d) => patchTensor(d, 'lm_head.weight', (b) => b.fill(0)));
  expectFails(dir, ['copied'], /copied \(tensor lm_head\.weight differs from the base's\)/);
});

test('a scaled final norm fails: copied names model.norm.weight', () => {
  const dir = variant('scaled-norm', (d) => scaleF16(d, 'model.norm.weight', 2));
  expectFails(dir, ['copied'], /tensor model\.norm\.weight differs from the base's/);
});

test('an edited embedding row and a NaN in a layer norm fail, naming each tensor', () => {
  const dir = variant('embed-norm', (d) => {
    patchTensor(d, 'model.embed_tokens.weight', (b) => b.writeUInt16LE(0x3c00, 1000));
    setF16(d, 'model.layers.1.input_layernorm.weight', 0, F16_NAN);
  });
  expectFails(dir, ['finite', 'copied', 'weights'], /tensor model\.layers\.1\.input_layernorm\.weight has 1 NaN\/Inf.*tensor model\.embed_tokens\.weight differs/);
});

test.each([
  ['rope_theta', 500000],
  ['rms_norm_eps', 1e-6],
])('a changed %s in config.json fails: base-config names the key', (key, value) => {
  const dir = variant(`cfg-${key}`, (d) => {
    const file = path.join(d, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    cfg[key] = value;
    fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
  });
  expectFails(dir, ['base-config'], new RegExp(`config\\.json differs from the base's: ${key} is ${value}`));
});

test('a changed config.json of a branch with its manifest fails both sha256 and base-config', () => {
  const dir = variant('cfg-manifest', (d) => {
    const file = path.join(d, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    cfg.rope_theta = 20000;
    fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
  }, withManifest);
  expectFails(dir, ['sha256', 'base-config'], /config\.json: sha256 differs from the manifest.*rope_theta is 20000/, []);
});

test('a shuffled g_idx of an act-order branch fails verify --base', () => {
  const dir = variant('shuffled', (d) => patchTensor(d, 'model.layers.2.mlp.down_proj.g_idx', (b) => {
    const g = new Int32Array(b.length / 4);
    for (let i = 0; i < g.length; i++) g[i] = b.readInt32LE(4 * i);
    let s = 7;
    for (let i = g.length - 1; i > 0; i--) {
      s = (s * 1103515245 + 12345) % 2147483648;
      const j = Math.floor((s / 2147483648) * (i + 1));
      [g[i], g[j]] = [g[j], g[i]];
    }
    g.forEach((v, i) => b.writeInt32LE(v, 4 * i));
  }));
  expectFails(dir, ['weights'], /layer 2 mlp\.down_proj/);
});

test('a g_idx group with the wrong number of columns fails g_idx', () => {
  const dir = variant('gidx-count', (d) => patchTensor(d, 'model.layers.1.self_attn.k_proj.g_idx', (b) => {
    b.writeInt32LE(b.readInt32LE(4) === 0 ? 1 : 0, 0); // column 0 moves to another group: one has 33, one 31
    if (b.readInt32LE(0) === b.readInt32LE(4)) b.writeInt32LE((b.readInt32LE(0) + 1) % 8, 0);
  }));
  expectFails(dir, ['g_idx'], /g_idx \(model\.layers\.1\.self_attn\.k_proj\.g_idx: group \d+ has 3[13] columns/);
});
