#!/usr/bin/env node
'use strict';
/**
 * The get_c4 eval sampler on a synthetic C4-like validation shard (log-normal document lengths,
 * median ~250 words): time to draw 256 windows without the UTF-8 length pre-filter (every drawn
 * document tokenized, as before), with it (the same windows, checked), and through loadEvalSet
 * twice (drawing, then the cached windows). Needs `npm run build` and ../shared/models/llama2-s.
 *
 *   node bench/c4-eval-sampler.js [--docs 4000] [--seqlen 2048] [--shared ../shared]
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { loadTokenizer } = require('../dist/data/tokenizer');
const { sampleDocuments } = require('../dist/data/calibration');
const { loadEvalSet } = require('../dist/data/eval-set');
const { arrayRows } = require('../dist/data/rows');
const { PythonRandom } = require('../dist/data/python-random');

const { flag, sharedDir } = require('./args');

const arg = (name, dflt) => Number(flag(`--${name}`, dflt));
const MODEL = path.join(sharedDir(), 'models/llama2-s');

function documents(n) {
  const words = ('the of and to in a is that for it as was with be by on not he this are or his from at which but have an they '
    + 'you were her she there one all we their can has more will about if time them up so out new year also').split(' ');
  const rng = new PythonRandom(7);
  return Array.from({ length: n }, () => {
    const z = Math.sqrt(-2 * Math.log(1 - rng.random())) * Math.cos(2 * Math.PI * rng.random());
    const len = Math.max(5, Math.round(Math.exp(5.5 + 1.1 * z)));
    return `${Array.from({ length: len }, () => words[rng.getrandbits(6) % words.length]).join(' ')}.`;
  });
}

(async () => {
  const n = arg('docs', 4000);
  const seqlen = arg('seqlen', 2048);
  const docs = documents(n);
  const tok = await loadTokenizer(MODEL);
  let encoded = 0;
  const counting = { ...tok, encode: (s, o) => (encoded++, tok.encode(s, o)) };
  const rows = arrayRows(docs);
  const time = (f) => {
    encoded = 0;
    const t = process.hrtime.bigint();
    const r = f();
    return { r, ms: Number(process.hrtime.bigint() - t) / 1e6, tokenized: encoded };
  };
  const plain = time(() => sampleDocuments(rows, { ...counting, idsBound: undefined }, 256, seqlen, 0));
  const filtered = time(() => sampleDocuments(rows, counting, 256, seqlen, 0));
  const same = Buffer.compare(Buffer.from(plain.r.tokens.buffer), Buffer.from(filtered.r.tokens.buffer)) === 0;

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'c4-eval-bench-'));
  const shard = 'en/c4-validation.00000-of-00008.json.gz';
  fs.mkdirSync(path.join(dir, 'en'));
  fs.writeFileSync(path.join(dir, shard), zlib.gzipSync(docs.map((text) => `${JSON.stringify({ text })}\n`).join('')));
  const opts = { seqlen, download: async (_repo, p) => path.join(dir, p), cacheDir: path.join(dir, 'cache') };
  const evalMs = [];
  for (let k = 0; k < 2; k++) {
    const t = process.hrtime.bigint();
    await loadEvalSet(MODEL, 'c4', opts);
    evalMs.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const out = { docs: n, seqlen, windows: 256, noPrefilter: { ms: Math.round(plain.ms), tokenized: plain.tokenized },
    prefilter: { ms: Math.round(filtered.ms), tokenized: filtered.tokenized }, sameWindows: same,
    loadEvalSet: { firstMs: Math.round(evalMs[0]), cachedMs: Math.round(evalMs[1]) } };
  process.stdout.write(`${JSON.stringify(out)}\n`);
})();
