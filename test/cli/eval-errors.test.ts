/**
 * Bad input to `gptq eval`: one clear line on stderr, a non-zero exit, no stack trace, no hang.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { LLAMA2_S, WIKI_TEST_RAW } from '../helpers/shared';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-eval-errors-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A model folder with llama2-s's config and tokenizer and the given weights file bytes. */
function modelWith(name: string, weights: Buffer, config?: object): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
    fs.copyFileSync(path.join(LLAMA2_S, f), path.join(dir, f));
  }
  const cfg = config ?? JSON.parse(fs.readFileSync(path.join(LLAMA2_S, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), weights);
  return dir;
}

/** A safetensors file with one tensor, its header given as an object. */
function safetensors(header: object, dataBytes: number): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.alloc(dataBytes)]);
}

function expectOneLineError(args: string[], pattern: RegExp): void {
  const r = runCli(['eval', ...args, '--quiet']);
  expect(r.code).not.toBe(0);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^gptq: error: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  expect(r.stdout).toBe('');
}

const data = ['--dataset', WIKI_TEST_RAW, '--seqlen', '512', '--max-windows', '1'];

test('missing model folder', () => {
  expectOneLineError(['--model', path.join(tmp, 'nope'), ...data], /model folder not found/);
});

test('truncated safetensors', () => {
  const whole = fs.readFileSync(path.join(LLAMA2_S, 'model.safetensors'));
  const dir = modelWith('truncated', whole.subarray(0, 1_000_000));
  expectOneLineError(['--model', dir, ...data], /model\.safetensors.*(past the end|truncated)/);
});

test('corrupt header (not JSON)', () => {
  const bad = Buffer.concat([Buffer.from([16, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"x": [[[ garbage')]);
  const dir = modelWith('garbage', bad);
  expectOneLineError(['--model', dir, ...data], /model\.safetensors.*JSON/i);
});

test('header length past the end of the file', () => {
  const bad = Buffer.from([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0x7b, 0x7d]);
  const dir = modelWith('hugeheader', bad);
  expectOneLineError(['--model', dir, ...data], /model\.safetensors.*header/i);
});

test('tensor offsets past the end of the file', () => {
  const st = safetensors({ 'model.norm.weight': { dtype: 'F16', shape: [256], data_offsets: [0, 512] } }, 100);
  const dir = modelWith('offsets', st);
  expectOneLineError(['--model', dir, ...data], /model\.norm\.weight.*past the end/);
});

test('unknown dtype', () => {
  const st = safetensors({ 'model.norm.weight': { dtype: 'F12', shape: [256], data_offsets: [0, 512] } }, 512);
  const dir = modelWith('dtype', st);
  expectOneLineError(['--model', dir, ...data], /dtype.*F12/);
});

test('config of another architecture', () => {
  const cfg = JSON.parse(fs.readFileSync(path.join(LLAMA2_S, 'config.json'), 'utf8'));
  cfg.model_type = 'mistral';
  cfg.architectures = ['MistralForCausalLM'];
  const dir = modelWith('mistral', Buffer.alloc(0), cfg);
  expectOneLineError(['--model', dir, ...data], /mistral.*not supported/);
});

test('dataset file that is not UTF-8', () => {
  const file = path.join(tmp, 'latin1.txt');
  fs.writeFileSync(file, Buffer.from('caf\xe9 au lait', 'latin1'));
  expectOneLineError(['--model', LLAMA2_S, '--dataset', file, '--seqlen', '4'], /latin1\.txt.*not UTF-8.*offset 3/);
});

test('--seqlen larger than the text', () => {
  const file = path.join(tmp, 'short.txt');
  fs.writeFileSync(file, 'A short text of a few tokens.');
  expectOneLineError(['--model', LLAMA2_S, '--dataset', file, '--seqlen', '4096'], /--seqlen 4096 is larger than the text/);
});

test('invalid option values are usage errors (exit 2)', () => {
  const r = runCli(['eval', '--model', LLAMA2_S, '--dataset', WIKI_TEST_RAW, '--seqlen', 'abc']);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--seqlen.*abc.*positive integer/);
});

test('missing dataset file', () => {
  expectOneLineError(['--model', LLAMA2_S, '--dataset', path.join(tmp, 'none.txt')], /dataset file not found/);
});
