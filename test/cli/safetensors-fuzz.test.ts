/**
 * Fuzz of corrupted model files read by `gptq eval` (llama2-s, one short window): properties,
 * not messages.
 *   - The process ends by itself with exit 0 or 1 (never a signal, never another code).
 *   - A failure is exactly one `gptq: error:` line, with no stack trace.
 *   - Damage confined to the header (length prefix, JSON, padding) never gives exit 0 with a
 *     perplexity other than the clean file's: either it is refused or it did not change what the
 *     header means.
 *   - Damage to the tensor data may change the result (another model), but an exit 0 reports a
 *     finite perplexity.
 *   - Nothing is written outside the test's scratch folder, and there only the token cache.
 * The seed is printed; GPTQ_FORGE_FUZZ_SEED replays a run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCli } from '../helpers/cli';
import { treeHash } from '../helpers/hostile';
import { LLAMA2_S } from '../helpers/shared';
import { seeded } from '../helpers/work-folder';

const SEED = Number(process.env.GPTQ_FORGE_FUZZ_SEED ?? Date.now() % 1e9);
const RUNS = 20;

let tmp: string;
let clean: Buffer;
let headerEnd: number;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gptq-st-fuzz-'));
  clean = fs.readFileSync(path.join(LLAMA2_S, 'model.safetensors'));
  headerEnd = 8 + Number(clean.readBigUInt64LE(0));
  // A short text: tokenizing it is fast, and 64 tokens make one window.
  fs.writeFileSync(path.join(tmp, 'text.txt'), 'The tower is 324 metres tall, about the same height as an 81-storey building. '.repeat(8));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function modelWith(name: string, weights: Buffer): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(LLAMA2_S, f), path.join(dir, f));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), weights);
  return dir;
}

function evalModel(dir: string) {
  return runCli(['eval', '--model', dir, '--dataset', path.join(tmp, 'text.txt'), '--seqlen', '64', '--max-windows', '1',
    '--device', 'cpu', '--json', '--quiet'], { env: { GPTQ_FORGE_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' } });
}

type Damage = { kind: 'header' | 'data'; what: string; bytes: Buffer };

function damage(rand: () => number): Damage {
  const b = Buffer.from(clean);
  const pick = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo));
  switch (pick(0, 6)) {
    case 0: { // flip bytes of the JSON header
      const n = pick(1, 4);
      for (let i = 0; i < n; i++) b[pick(8, headerEnd)] ^= 1 << pick(0, 8);
      return { kind: 'header', what: `${n} bit(s) flipped in the header`, bytes: b };
    }
    case 1: { // a random byte of the length prefix
      b[pick(0, 8)] = pick(0, 256);
      return { kind: 'header', what: 'length prefix changed', bytes: b };
    }
    case 2: { // truncated anywhere
      const at = pick(0, b.length);
      return { kind: at < headerEnd ? 'header' : 'data', what: `truncated at ${at}`, bytes: b.subarray(0, at) };
    }
    case 3: { // a run of garbage over the header
      const at = pick(8, headerEnd - 16), len = pick(1, 16);
      for (let i = 0; i < len; i++) b[at + i] = pick(0, 256);
      return { kind: 'header', what: `${len} garbage bytes at ${at}`, bytes: b };
    }
    case 4: { // bytes of the tensor data, possibly making NaN/Inf halves
      const n = pick(1, 8);
      for (let i = 0; i < n; i++) b[pick(headerEnd, b.length)] = pick(0, 256);
      return { kind: 'data', what: `${n} data byte(s) changed`, bytes: b };
    }
    default: { // extra bytes after the data
      return { kind: 'data', what: 'bytes appended', bytes: Buffer.concat([b, Buffer.alloc(pick(1, 64), 7)]) };
    }
  }
}

test(`corrupted safetensors: one line or a right answer, never a crash (seed ${SEED})`, () => {
  const base = evalModel(modelWith('clean', clean));
  expect(base.code).toBe(0);
  const cleanPpl = JSON.parse(base.stdout).perplexity as number;
  expect(Number.isFinite(cleanPpl)).toBe(true);
  const rand = seeded(SEED);
  const outside = treeHash(tmp, [path.join(tmp, 'cache')]);
  for (let run = 0; run < RUNS; run++) {
    const d = damage(rand);
    const dir = modelWith(`m${run}`, d.bytes);
    const before = treeHash(dir);
    const r = evalModel(dir);
    const where = `seed ${SEED}, run ${run}: ${d.what}`;
    expect({ where, code: r.code }).toEqual({ where, code: r.code === 0 ? 0 : 1 });
    if (r.code === 0) {
      const ppl = JSON.parse(r.stdout).perplexity as number;
      expect({ where, finite: Number.isFinite(ppl) }).toEqual({ where, finite: true });
      if (d.kind === 'header') expect({ where, ppl }).toEqual({ where, ppl: cleanPpl });
    } else {
      const lines = r.stderr.trim().split('\n');
      expect({ where, lines: lines.length, first: /^gptq: error: /.test(lines[0]) }).toEqual({ where, lines: 1, first: true });
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect({ where, tree: treeHash(dir) }).toEqual({ where, tree: before });
    fs.rmSync(dir, { recursive: true, force: true });
  }
  expect(treeHash(tmp, [path.join(tmp, 'cache')])).toEqual(outside);
}, 180000);
