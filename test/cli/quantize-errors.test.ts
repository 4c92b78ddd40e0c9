/**
 * Bad input to `gptq quantize`: one clear line, a non-zero exit, and nothing half-written left
 * under the output name (nor a stray temporary folder beside it).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Checkpoint } from '../../src/io/checkpoint';
import { writeSafetensors } from '../../src/io/safetensors-writer';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_V1_VALID } from '../helpers/shared';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-quantize-errors-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const calib = ['--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--quiet'];

function expectRefusal(args: string[], pattern: RegExp, out: string, code?: number): void {
  const before = fs.existsSync(out) ? fs.readdirSync(out).sort() : null;
  const r = runCli(['quantize', '--model', LLAMA2_S, '--out', out, ...args]);
  if (code !== undefined) expect(r.code).toBe(code);
  else expect(r.code).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  // The output is as it was (absent, or the same files), and no temporary folder is left.
  expect(fs.existsSync(out) ? fs.readdirSync(out).sort() : null).toEqual(before);
  expect(fs.readdirSync(path.dirname(out)).filter((f) => f.includes('.partial-'))).toEqual([]);
}

test('bits not in {2,3,4,8}: a usage error (exit 2)', () => {
  expectRefusal(['--bits', '5', ...calib], /--bits must be 2, 3, 4 or 8, got 5/, path.join(tmp, 'b5'), 2);
});

test('group size that does not divide the input width: a usage error (exit 2) naming the linear', () => {
  expectRefusal(['--group-size', '100', ...calib], /--group-size 100 does not divide in_features 256 of model\.layers\.0\.self_attn\.q_proj/, path.join(tmp, 'g100'), 2);
});

test('an output folder that holds another branch is refused without --force, replaced with it', () => {
  const out = path.join(tmp, 'branch');
  const first = runCli(['quantize', '--model', LLAMA2_S, '--out', out, '--bits', '8', ...calib]);
  expect(first.code).toBe(0);
  expectRefusal(['--bits', '4', ...calib], /already holds a GPTQ branch \(bits 8/, out);
  const forced = runCli(['quantize', '--model', LLAMA2_S, '--out', out, '--bits', '4', '--force', ...calib]);
  expect(forced.code).toBe(0);
  expect(JSON.parse(fs.readFileSync(path.join(out, 'quantize_config.json'), 'utf8')).bits).toBe(4);
}, 120000);

test('a model with a NaN weight: refused, nothing written', async () => {
  const model = path.join(tmp, 'nan-model');
  fs.mkdirSync(model);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) {
    fs.copyFileSync(path.join(LLAMA2_S, f), path.join(model, f));
  }
  const ck = await Checkpoint.open(LLAMA2_S);
  const tensors = [];
  for (const name of ck.names()) {
    const info = ck.info(name);
    const data = new Uint8Array(await ck.read(name));
    if (name === 'model.layers.2.mlp.up_proj.weight') new Uint16Array(data.buffer)[12345] = 0x7e00; // fp16 NaN
    tensors.push({ name, dtype: info.dtype, shape: info.shape, data });
  }
  await ck.close();
  await writeSafetensors(path.join(model, 'model.safetensors'), tensors);
  const out = path.join(tmp, 'nan-out');
  const r = runCli(['quantize', '--model', model, '--out', out, ...calib]);
  expect(r.code).toBe(1);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/model\.layers\.2\.mlp\.up_proj\.weight has 1 NaN\/Inf value/);
  expect(fs.existsSync(out)).toBe(false);
  expect(fs.readdirSync(tmp).filter((f) => f.includes('.partial-'))).toEqual([]);
}, 120000);

test('a GPTQ branch as input is refused', () => {
  const out = path.join(tmp, 'branch');
  const r = runCli(['quantize', '--model', out, '--out', path.join(tmp, 'again'), ...calib]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/already a GPTQ branch/);
});
