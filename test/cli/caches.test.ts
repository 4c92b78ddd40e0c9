/**
 * Caches are keyed by, and checked against, the content they derive from: a truncated or
 * corrupted token-id cache is never used; `report` measures a branch again when its weights
 * changed (whatever its manifest says); `eval --engine onnx --onnx F` refuses an export of
 * another model or branch.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { expectOnlyError } from '../helpers/hostile';
import { LLAMA2_S, WIKI_TEST_RAW, WIKI_V1_VALID } from '../helpers/shared';

let tmp: string;
let env: NodeJS.ProcessEnv;
/** The first 6000 characters of wiki.test.raw: enough for 2 windows of 128, quick to tokenize. */
let TEXT: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-caches-'));
  env = { GPTQ_FORGE_CACHE: path.join(tmp, 'cache'), GPTQ_FORGE_THREADS: '2' };
  TEXT = path.join(tmp, 'text.txt');
  fs.writeFileSync(TEXT, fs.readFileSync(WIKI_TEST_RAW, 'utf8').slice(0, 6000));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const calib = ['--dataset', WIKI_V1_VALID, '--nsamples', '2', '--seqlen', '128', '--quiet', '--device', 'cpu'];

function quantize(out: string, args: string[]): void {
  const r = runCli(['quantize', '--model', LLAMA2_S, '--out', out, ...calib, ...args], { env });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
}

function evalJson(args: string[]): { perplexity: number; tokens: number } {
  const r = runCli(['eval', '--seqlen', '128', '--max-windows', '2', '--json', '--quiet', '--device', 'cpu', ...args], { env });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout);
}

function oneLine(args: string[], pattern: RegExp, code = 1): void {
  const r = runCli([...args, '--quiet'], { env });
  expectOnlyError(r, code, pattern);
  expect(r.stdout).toBe('');
}

describe('token-id cache', () => {
  test('a truncated or corrupted cache file is tokenized again, not used', () => {
    const args = ['--model', LLAMA2_S, '--dataset', TEXT];
    const first = evalJson(args);
    const dir = path.join(tmp, 'cache', 'tokens');
    const [name] = fs.readdirSync(dir);
    expect(fs.readdirSync(dir)).toHaveLength(1);
    const file = path.join(dir, name);
    const good = fs.readFileSync(file);

    // truncated to a whole number of ids (what a torn write or a full disk leaves)
    fs.writeFileSync(file, good.subarray(0, Math.floor(good.length / 8) * 4));
    expect(evalJson(args)).toMatchObject({ perplexity: first.perplexity, tokens: first.tokens });
    expect(fs.readFileSync(file).equals(good)).toBe(true); // rewritten

    // one bit of one id flipped (an id of the first window)
    const bad = Buffer.from(good);
    bad[100] ^= 1;
    fs.writeFileSync(file, bad);
    expect(evalJson(args)).toMatchObject({ perplexity: first.perplexity, tokens: first.tokens });
    expect(fs.readFileSync(file).equals(good)).toBe(true);
  }, 120000);
});

describe('report rows', () => {
  test('a branch whose weights changed after its manifest is measured again', () => {
    const out = path.join(tmp, 'branches');
    fs.mkdirSync(out);
    const main = path.join(out, 'main');
    const other = path.join(tmp, 'other');
    quantize(main, ['--bits', '4', '--group-size', '128', '--act-order']);
    quantize(other, ['--bits', '4', '--group-size', '128', '--no-act-order']);
    const report = (): Record<string, number> => {
      const r = runCli(['report', out, '--dataset', TEXT, '--seqlen', '128', '--max-windows', '2', '--device', 'cpu', '--json', '--quiet'], { env });
      expect(r.code).toBe(0);
      return Object.fromEntries(JSON.parse(r.stdout).rows.map((row: { name: string; perplexity: number }) => [row.name, row.perplexity]));
    };
    const first = report();
    expect(first.main).toBeCloseTo(evalJson(['--model', main, '--dataset', TEXT]).perplexity, 6);

    // Same shapes, other weights, the manifest untouched: the old row must not be reused.
    fs.copyFileSync(path.join(other, 'model.safetensors'), path.join(main, 'model.safetensors'));
    const expected = evalJson(['--model', main, '--dataset', TEXT]).perplexity;
    expect(expected).not.toBeCloseTo(first.main, 6);
    const r = runCli(['report', out, '--dataset', TEXT, '--seqlen', '128', '--max-windows', '2', '--device', 'cpu', '--json', '--quiet'], { env });
    expect(r.code).toBe(0);
    const second = Object.fromEntries(JSON.parse(r.stdout).rows.map((row: { name: string; perplexity: number }) => [row.name, row.perplexity]));
    expect(second.main).toBeCloseTo(expected, 6);
    expect(r.stderr).toMatch(/main\/model\.safetensors differs from its manifest/);
    expect(second.fp16).toBe(first.fp16);

    // A changed config.json (what the perplexity also depends on) is a change too.
    const cfgFile = path.join(main, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    fs.writeFileSync(cfgFile, JSON.stringify({ ...cfg, rms_norm_eps: 0.1 }, null, 2));
    expect(report().main).not.toBeCloseTo(second.main, 6);
  }, 240000);
});

describe('eval --engine onnx --onnx', () => {
  test('an export of another model or branch is refused with one line; its own export is used', () => {
    const b4 = path.join(tmp, 'onnx-b4'), b4b = path.join(tmp, 'onnx-b4b');
    quantize(b4, ['--bits', '4', '--group-size', '128', '--act-order']);
    quantize(b4b, ['--bits', '4', '--group-size', '128', '--no-act-order']);
    const exp = (m: string, f: string) => expect(runCli(['export-onnx', m, '--out', f, '--quiet'], { env }).code).toBe(0);
    const fp16Onnx = path.join(tmp, 'fp16.onnx'), b4Onnx = path.join(tmp, 'b4.onnx'), b4bOnnx = path.join(tmp, 'b4b.onnx');
    exp(LLAMA2_S, fp16Onnx);
    exp(b4, b4Onnx);
    exp(b4b, b4bOnnx);
    const ev = (model: string, onnx: string) => ['eval', '--model', model, '--dataset', TEXT, '--seqlen', '128', '--max-windows', '1', '--engine', 'onnx', '--onnx', onnx];
    oneLine(ev(LLAMA2_S, b4Onnx), /--onnx .*b4\.onnx is not an export of .*llama2-s/);
    oneLine(ev(b4, fp16Onnx), /--onnx .*fp16\.onnx is not an export of .*onnx-b4: .*fp16/);
    // another branch of the same base, same bits and group size (only act-order differs)
    oneLine(ev(b4, b4bOnnx), /--onnx .*b4b\.onnx is not an export of .*onnx-b4\b/);

    // another fp16 model of the same shape: llama2-s with its final norm scaled
    const twin = path.join(tmp, 'twin');
    fs.mkdirSync(twin);
    for (const f of fs.readdirSync(LLAMA2_S)) fs.copyFileSync(path.join(LLAMA2_S, f), path.join(twin, f));
    const st = path.join(twin, 'model.safetensors');
    const bytes = fs.readFileSync(st);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    const [begin, end] = header['model.norm.weight'].data_offsets as [number, number];
    const at = 8 + Number(bytes.readBigUInt64LE(0)) + Math.floor((begin + end) / 4) * 2; // the middle of the tensor
    bytes.writeUInt16LE(bytes.readUInt16LE(at) ^ 0x0400, at); // its exponent bit: ×2 or ×½
    fs.writeFileSync(st, bytes);
    oneLine(ev(twin, fp16Onnx), /is not an export of .*twin: model\.norm\.weight holds other values/);

    // the right export is accepted, with the native engine's numbers
    const ok = runCli([...ev(b4, b4Onnx), '--json', '--quiet'], { env });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).engine).toBe('onnxruntime-cpu');
  }, 240000);
});
