#!/usr/bin/env node
'use strict';
/**
 * Writes a synthetic GPTQ branch in the AutoGPTQ "gptq" (v1) layout directly, without an fp16
 * base model, for speed and memory runs of `gptq eval` on a big (Llama-2-70B-shaped) model:
 *
 *   node bench/make-synthetic-gptq.js --config ../shared/models/llama-2-70b/config.json --layers 80 \
 *     --bits 4 --group-size 128 --act-order true --tokenizer-from ../shared/models/llama2-m \
 *     --out /tmp/syn70b-gptq [--seed 1]
 *
 * --out gets what `gptq quantize` writes for a branch (no manifest.json):
 * - config.json: the given config with num_hidden_layers = --layers, torch_dtype float16,
 *   tie_word_embeddings false and `quantization_config`;
 * - quantize_config.json: src/gptq/format.ts's makeQuantizeConfig (bits, group_size,
 *   damp_percent 0.01, desc_act, static_groups false, sym true, true_sequential true,
 *   model_name_or_path null (there is no base model), model_file_base_name "model",
 *   quant_method "gptq", checkpoint_format "gptq"), as JSON.stringify(…, null, 2) + "\n";
 * - the tokenizer files found in --tokenizer-from;
 * - one model.safetensors laid out as src/io/safetensors-header.ts's buildHeader does (tensors
 *   by dtype, descending safetensors enum order, then by name: every I32 tensor, then every
 *   F16 one; compact JSON, `__metadata__` first, spaces to a multiple of 8 bytes), with the
 *   `__metadata__` of safetensorsMetadata (format "pt", gptq_* keys) plus
 *   gptq_forge_synthetic = "seed=<seed>" so it cannot pass for a real branch.
 *
 * Tensors: embed_tokens and lm_head F16 ~N(0, 0.02²); norms F16 1.0; per linear [N, K]:
 * qweight I32 [K·bits/32, N], qzeros I32 [G, N·bits/32], scales F16 [G, N], g_idx I32 [K],
 * G = K / group_size (1 for −1).
 * - Codes are uniform in [0, 2^bits). In the v1 layout column n of qweight is the little-endian
 *   bit stream of row n's K codes (code k at bits [bits·k, bits·k + bits) of the stream, so
 *   32/bits codes per word for bits 2, 4, 8, and codes crossing words for 3), which makes the
 *   packed form of i.i.d. uniform codes exactly a sequence of i.i.d. uniform 32-bit words, for
 *   every bits. So qweight is a slice of one xorshift32 word pool (seeded by --seed), taken at
 *   an offset hashed from --seed and the tensor name: no packing work, and every tensor differs.
 * - Zero points are 2^(bits−1) everywhere: qzeros holds the fields 2^(bits−1) − 1, packed along
 *   N the same way (cross-word for 3 bits).
 * - scales: one magnitude per linear type, s = target / (rms(code − zero) · √K), with
 *   rms(code − zero) = √((4^bits + 2) / 12) and target 1 for q, k, v, gate, up and 0.3 for o
 *   and down, so that with unit-scale inputs (RMSNorm) the outputs have about that standard
 *   deviation; each entry is s · (1 ± 5 % uniform) with a RANDOM SIGN. The sign matters:
 *   uniform codes around zero = 2^(bits−1) have mean(code − zero) = −1/2, so positive scales
 *   give every linear a rank-one part −s/2 · 1·1ᵀ that feeds the residual stream's mean back
 *   into itself through v→o (gain ≈ t_v·t_o·√(K·K_o)/(4·rms²), ~29 for 4-bit 70B) and the
 *   activations collapse onto the all-ones direction within a few layers; random signs make
 *   the weights zero-mean. (`--positive-scales true` keeps them positive, to see that.)
 *   Per type a pool of such values is made once and each tensor is a slice of it at a hashed
 *   offset.
 * - g_idx: without act-order k // group_size; with it floor(pos[k] / group_size) for a random
 *   permutation pos of 0..K−1 (Fisher–Yates on xorshift32 seeded by --seed and the tensor name),
 *   so every group has exactly group_size columns.
 * Output is a function of the arguments only (reproducible for a seed; --writers does not
 * change it). Data goes out in file order as large positioned writes, --writers (default 4) in
 * flight at once on libuv's pool (one thread copying into the page cache tops out near
 * 1.5–2 GB/s): slices of the pools directly, small tensors gathered in 64 MB buffers. Memory:
 * the pools (the largest qweight + 4 MB: 0.12 GB at 4 bits for 70B, 0.24 GB at 8; 64 MB of
 * fp16 normals) and (writers + 1) × 64 MB of buffers; 0.6 GB RSS measured for 70B 4-bit. The
 * file is written as model.safetensors.partial-<pid> and renamed when complete; it is not
 * fsynced, so the speed printed is what the page cache and disk took. Stale model*.safetensors*
 * and manifest.json in --out are removed first. Usage errors: one line on stderr, exit 2;
 * write errors: one line, exit 1.
 */
const fs = require('node:fs');
const path = require('node:path');

const t0 = process.hrtime.bigint();

const USAGE =
  'usage: node bench/make-synthetic-gptq.js --config CONFIG.json --layers N --tokenizer-from DIR --out DIR ' +
  '[--bits 2|3|4|8] [--group-size G|-1] [--act-order true|false] [--seed 1] [--positive-scales false] [--writers 4]';

function usage(msg) { // one line on stderr, exit 2
  console.error(msg ? `error: ${msg}` : USAGE);
  process.exit(2);
}
const opts = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  if (argv[i] === '-h' || argv[i] === '--help') usage();
  if (!argv[i].startsWith('--') || argv[i + 1] === undefined) usage(`bad argument ${argv[i]}`);
  opts[argv[i].slice(2)] = argv[i + 1];
}
const KNOWN = ['config', 'layers', 'tokenizer-from', 'out', 'seed', 'bits', 'group-size', 'act-order', 'positive-scales', 'writers'];
for (const k of Object.keys(opts)) if (!KNOWN.includes(k)) usage(`unknown option --${k}`);
for (const k of ['config', 'layers', 'tokenizer-from', 'out']) if (!opts[k]) usage(`--${k} is required`);
const intArg = (k, dflt) => {
  const s = opts[k] ?? String(dflt);
  return /^-?\d+$/.test(s) ? Number(s) : NaN;
};
const boolArg = (k, dflt) => {
  const s = opts[k] ?? String(dflt);
  if (s !== 'true' && s !== 'false') usage(`--${k} must be true or false, got ${s}`);
  return s === 'true';
};
const layers = intArg('layers');
const seed = intArg('seed', 1);
const bits = intArg('bits', 4);
const groupSize = intArg('group-size', 128);
const actOrder = boolArg('act-order', true);
const positiveScales = boolArg('positive-scales', false);
const writers = intArg('writers', 4);
if (!Number.isSafeInteger(layers) || layers < 1) usage('--layers must be a positive integer');
if (!Number.isSafeInteger(seed)) usage('--seed must be an integer');
if (![2, 3, 4, 8].includes(bits)) usage(`--bits must be 2, 3, 4 or 8, got ${opts.bits}`);
if (!Number.isSafeInteger(groupSize) || (groupSize !== -1 && groupSize <= 0)) usage('--group-size must be -1 or a positive integer');
if (!(writers >= 1 && writers <= 64)) usage('--writers must be an integer from 1 to 64');
if (writers > 4 && !process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(writers); // before libuv's pool starts
if (!fs.existsSync(opts['tokenizer-from']) || !fs.statSync(opts['tokenizer-from']).isDirectory()) usage(`--tokenizer-from ${opts['tokenizer-from']} is not a folder`);

// ---- config ----
let config;
try {
  config = JSON.parse(fs.readFileSync(opts.config, 'utf8'));
} catch (e) {
  usage(`cannot read --config ${opts.config}: ${e.code ?? e.message.split('\n')[0]}`);
}
if (typeof config !== 'object' || config === null || Array.isArray(config)) usage(`${opts.config}: not a JSON object`);
const dim = (key, v) => {
  if (!Number.isSafeInteger(v) || v <= 0) usage(`${opts.config}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
};
const hidden = dim('hidden_size', config.hidden_size);
const ffn = dim('intermediate_size', config.intermediate_size);
const vocab = dim('vocab_size', config.vocab_size);
const heads = dim('num_attention_heads', config.num_attention_heads);
const kvHeads = dim('num_key_value_heads', config.num_key_value_heads ?? heads);
const headDim = dim('head_dim', config.head_dim ?? hidden / heads);
const qd = heads * headDim, kvd = kvHeads * headDim;

// The seven linears: [N, K] and the output standard deviation aimed at.
const LINEARS = [
  { name: 'self_attn.q_proj', n: qd, k: hidden, target: 1 },
  { name: 'self_attn.k_proj', n: kvd, k: hidden, target: 1 },
  { name: 'self_attn.v_proj', n: kvd, k: hidden, target: 1 },
  { name: 'self_attn.o_proj', n: hidden, k: qd, target: 0.3 },
  { name: 'mlp.gate_proj', n: ffn, k: hidden, target: 1 },
  { name: 'mlp.up_proj', n: ffn, k: hidden, target: 1 },
  { name: 'mlp.down_proj', n: hidden, k: ffn, target: 0.3 },
];
for (const l of LINEARS) {
  for (const [what, v] of [['in_features (K)', l.k], ['out_features (N)', l.n]]) {
    if (v % 32 !== 0) usage(`${opts.config}: ${l.name} ${what} = ${v} is not a multiple of 32, which AutoGPTQ packing needs`);
  }
  if (groupSize !== -1 && l.k % groupSize !== 0) usage(`${opts.config}: ${l.name} K = ${l.k} is not a multiple of --group-size ${groupSize}`);
}

const qconfig = { // makeQuantizeConfig's keys, in its order
  bits, group_size: groupSize, damp_percent: 0.01, desc_act: actOrder, static_groups: false, sym: true,
  true_sequential: true, model_name_or_path: null, model_file_base_name: 'model', quant_method: 'gptq',
  checkpoint_format: 'gptq',
};
let version = 'unknown';
try { version = require('../package.json').version; } catch { /* outside the checkout */ }
const metadata = { // safetensorsMetadata(qconfig)
  format: 'pt', gptq_forge_version: version, gptq_bits: String(bits), gptq_group_size: String(groupSize),
  gptq_desc_act: actOrder ? 'True' : 'False', gptq_damp_percent: '0.01', gptq_checkpoint_format: 'gptq',
  gptq_quant_method: 'gptq', gptq_forge_synthetic: `seed=${seed}`,
};

// ---- PRNG, fp16 ----
function nameSeed(name) { // FNV-1a of the name, mixed with --seed (as make-synthetic-llama.js)
  let h = 0x811c9dc5 ^ Math.imul(seed, 0x9e3779b1);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}
function xorshift(s) { // xorshift32: () => uint32
  let x = s >>> 0 || 0x9e3779b9;
  return () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
}
function fillWords(u32, s) {
  let x = s | 0 || 0x9e3779b9;
  for (let i = 0; i < u32.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; u32[i] = x; }
}
const { toHalf } = require('./fp16-bits'); // float32 -> fp16 bits, round to nearest even, finite
const bytesOf = (a) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

// ---- pools and per-shape buffers ----
const groupsOf = (k) => (groupSize === -1 ? 1 : k / groupSize);
const SLACK_WORDS = 1 << 20; // qweight offsets: 0 .. 4 MB
let maxQWords = 0;
for (const l of LINEARS) maxQWords = Math.max(maxQWords, (l.k * bits / 32) * l.n);
const qPool = new Uint32Array(maxQWords + SLACK_WORDS);
fillWords(qPool, nameSeed('qweight pool'));

/** [G, N·bits/32] words: every field (zero − 1) = 2^(bits−1) − 1, packed along N. */
const qzerosCache = new Map();
function qzerosFor(g, n) {
  const key = `${g}x${n}`;
  if (!qzerosCache.has(key)) {
    const field = (1 << (bits - 1)) - 1;
    const period = new Uint32Array(bits); // 32 fields fill exactly `bits` words
    for (let i = 0; i < 32; i++) {
      for (let b = 0; b < bits; b++) {
        const pos = i * bits + b;
        if ((field >> b) & 1) period[pos >>> 5] |= 1 << (pos & 31);
      }
    }
    const out = new Uint32Array((g * n * bits) / 32);
    for (let i = 0; i < out.length; i++) out[i] = period[i % bits];
    qzerosCache.set(key, out);
  }
  return qzerosCache.get(key);
}

const RMS_CODE = Math.sqrt((4 ** bits + 2) / 12); // rms of (code − 2^(bits−1)), codes uniform in [0, 2^bits)
const SCALE_JITTER = 0.05;
const SLACK_HALVES = 1 << 16;
/** Per linear type: scale magnitude and a pool of G·N + slack fp16 values around it. */
const scaleCache = new Map();
function scalesFor(l) {
  const g = groupsOf(l.k), s = l.target / (RMS_CODE * Math.sqrt(l.k));
  const key = `${l.k}x${l.n}x${l.target}`;
  if (!scaleCache.has(key)) {
    const pool = new Uint16Array(g * l.n + SLACK_HALVES);
    const rnd = xorshift(nameSeed(`scales ${key}`));
    for (let i = 0; i < pool.length; i++) {
      const r = rnd();
      const v = s * (1 + SCALE_JITTER * (2 * ((r >>> 1) / 2147483648) - 1));
      pool[i] = toHalf(positiveScales || (r & 1) === 0 ? v : -v);
    }
    scaleCache.set(key, { s, pool, count: g * l.n });
  }
  return scaleCache.get(key);
}

const gIdxCache = new Map(); // without act-order: one per K
function gIdxFor(k, name) {
  const gs = groupSize === -1 ? k : groupSize;
  if (!actOrder || gs === k) {
    if (!gIdxCache.has(k)) gIdxCache.set(k, Int32Array.from({ length: k }, (_, i) => Math.floor(i / gs)));
    return gIdxCache.get(k);
  }
  const pos = new Int32Array(k);
  for (let i = 0; i < k; i++) pos[i] = i;
  const rnd = xorshift(nameSeed(name));
  for (let i = k - 1; i > 0; i--) { // Fisher–Yates
    const j = rnd() % (i + 1);
    const t = pos[i]; pos[i] = pos[j]; pos[j] = t;
  }
  const out = new Int32Array(k);
  for (let i = 0; i < k; i++) out[i] = Math.floor(pos[i] / gs);
  return out;
}

// N(0, 0.02²) fp16 for embed_tokens / lm_head: a 65536-entry table (Box–Muller), indexed by the
// 16-bit halves of xorshift32 words, fills a 64 MB pool; tensors are 32 MB slices of it.
const NORMAL_SEG = Math.min(16 << 20, vocab * hidden); // halves per slice
const normalPool = new Uint16Array(2 * NORMAL_SEG);
{
  const table = new Uint16Array(65536);
  const rnd = xorshift(0x2545f491 ^ seed);
  const unit = () => rnd() / 4294967296;
  for (let i = 0; i < 65536; i += 2) {
    const r = 0.02 * Math.sqrt(-2 * Math.log(1 - unit())), a = 2 * Math.PI * unit();
    table[i] = toHalf(r * Math.cos(a));
    table[i + 1] = toHalf(r * Math.sin(a));
  }
  const words = new Uint32Array(normalPool.buffer);
  let x = nameSeed('normal pool') | 0;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    words[i] = table[x & 0xffff] | (table[x >>> 16] << 16);
  }
}
const ones = new Uint16Array(hidden).fill(0x3c00);

// ---- tensor list: each with an emitter of its bytes ----
const tensors = [];
const add = (name, dtype, shape, segments) => tensors.push({ name, dtype, shape, segments }); // segments(t): its bytes, in order
const RANK = { F16: 7, I32: 9 }; // position in the safetensors crate's Dtype enum
const SIZE = { F16: 2, I32: 4 };
add('model.embed_tokens.weight', 'F16', [vocab, hidden], normalSegments);
add('lm_head.weight', 'F16', [vocab, hidden], normalSegments);
add('model.norm.weight', 'F16', [hidden], () => [bytesOf(ones)]);
for (let layer = 0; layer < layers; layer++) {
  const p = `model.layers.${layer}.`;
  add(p + 'input_layernorm.weight', 'F16', [hidden], () => [bytesOf(ones)]);
  add(p + 'post_attention_layernorm.weight', 'F16', [hidden], () => [bytesOf(ones)]);
  for (const l of LINEARS) {
    const q = p + l.name, g = groupsOf(l.k);
    add(q + '.qweight', 'I32', [(l.k * bits) / 32, l.n], (t) => {
      const words = (l.k * bits / 32) * l.n, off = nameSeed(t.name) % (SLACK_WORDS + 1);
      return [bytesOf(qPool.subarray(off, off + words))];
    });
    add(q + '.qzeros', 'I32', [g, (l.n * bits) / 32], () => [bytesOf(qzerosFor(g, l.n))]);
    add(q + '.scales', 'F16', [g, l.n], (t) => {
      const { pool, count } = scalesFor(l), off = nameSeed(t.name) % (SLACK_HALVES + 1);
      return [bytesOf(pool.subarray(off, off + count))];
    });
    add(q + '.g_idx', 'I32', [l.k], (t) => [bytesOf(gIdxFor(l.k, t.name))]);
  }
}
function normalSegments(t) {
  const count = t.shape[0] * t.shape[1], segs = [];
  for (let done = 0, seg = 0; done < count; seg++) {
    const n = Math.min(NORMAL_SEG, count - done), off = nameSeed(`${t.name} ${seg}`) % (NORMAL_SEG + 1);
    segs.push(bytesOf(normalPool.subarray(off, off + n)));
    done += n;
  }
  return segs;
}

// ---- header, as buildHeader ----
const keyed = tensors.map((t) => ({ t, key: Buffer.from(t.name, 'utf8') }));
keyed.sort((a, b) => RANK[b.t.dtype] - RANK[a.t.dtype] || Buffer.compare(a.key, b.key));
const order = keyed.map((x) => x.t);
const parts = [`"__metadata__":${JSON.stringify(metadata)}`];
let dataLength = 0;
for (const t of order) {
  t.bytes = t.shape.reduce((a, b) => a * b, 1) * SIZE[t.dtype];
  t.begin = dataLength;
  dataLength += t.bytes;
  parts.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [t.begin, dataLength] })}`);
}
const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
const padded = json.length + ((8 - (json.length % 8)) % 8);
const header = Buffer.alloc(8 + padded, 0x20);
header.writeBigUInt64LE(BigInt(padded), 0);
json.copy(header, 8);

// ---- writer: large slices straight from the pools, small tensors gathered in 64 MB buffers; up
// to DEPTH positioned writes in flight (libuv's pool), since one thread copying into the page
// cache tops out near 1.5–2 GB/s ----
const STAGE = 64 << 20, DIRECT = 4 << 20, DEPTH = writers;
function writeAt(fd, u8, position) {
  return new Promise((resolve, reject) => {
    const step = (off) => fs.write(fd, u8, off, u8.length - off, position + off, (err, n) => {
      if (err) reject(err);
      else if (off + n < u8.length) step(off + n);
      else resolve();
    });
    step(0);
  });
}
class Writer {
  constructor(fd) {
    this.fd = fd;
    this.pos = 0; // file position of the next byte handed over
    this.inflight = new Set();
    this.free = Array.from({ length: DEPTH + 1 }, () => Buffer.allocUnsafe(STAGE));
    this.stage = null;
    this.fill = 0;
  }
  async submit(u8, done) { // u8 must stay unchanged until its write is finished
    while (this.inflight.size >= DEPTH) await Promise.race(this.inflight);
    const p = writeAt(this.fd, u8, this.pos).then(done);
    this.pos += u8.length;
    this.inflight.add(p);
    p.then(() => this.inflight.delete(p), () => undefined);
  }
  async flush() {
    if (this.fill === 0) return;
    const buf = this.stage;
    await this.submit(buf.subarray(0, this.fill), () => this.free.push(buf));
    this.stage = null;
    this.fill = 0;
  }
  async put(u8) {
    if (u8.length >= DIRECT) {
      await this.flush();
      for (let off = 0; off < u8.length; off += STAGE) await this.submit(u8.subarray(off, off + STAGE), () => undefined);
      return;
    }
    for (let off = 0; off < u8.length; ) {
      if (this.stage === null) {
        while (this.free.length === 0) await Promise.race(this.inflight);
        this.stage = this.free.pop();
      }
      const n = Math.min(u8.length - off, STAGE - this.fill);
      this.stage.set(u8.subarray(off, off + n), this.fill);
      this.fill += n; off += n;
      if (this.fill === STAGE) await this.flush();
    }
  }
  async end() {
    await this.flush();
    await Promise.all(this.inflight);
  }
  get handed() { return this.pos + this.fill; }
}

async function main() {
  const out = opts.out;
  const file = path.join(out, 'model.safetensors');
  const tmp = `${file}.partial-${process.pid}`;
  const copied = [];
  try {
    fs.mkdirSync(out, { recursive: true });
    for (const f of fs.readdirSync(out)) // stale weights or manifest of an earlier branch would confuse readers
      if (/^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$|^manifest\.json$/.test(f)) fs.unlinkSync(path.join(out, f));
    const fd = fs.openSync(tmp, 'w');
    const w = new Writer(fd);
    try {
      await w.put(header);
      for (const t of order) {
        const before = w.handed;
        for (const seg of t.segments(t)) await w.put(seg);
        if (w.handed - before !== t.bytes) throw new Error(`internal: ${t.name} has ${w.handed - before} bytes, expected ${t.bytes}`);
      }
      await w.end();
    } finally {
      await Promise.allSettled(w.inflight);
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);

    const cfg = { ...config, num_hidden_layers: layers, torch_dtype: 'float16', tie_word_embeddings: false, quantization_config: qconfig };
    fs.writeFileSync(path.join(out, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
    fs.writeFileSync(path.join(out, 'quantize_config.json'), `${JSON.stringify(qconfig, null, 2)}\n`);
    for (const f of ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json']) {
      if (fs.existsSync(path.join(opts['tokenizer-from'], f))) {
        fs.rmSync(path.join(out, f), { force: true }); // sources may be read-only; so would the copy be
        fs.copyFileSync(path.join(opts['tokenizer-from'], f), path.join(out, f));
        fs.chmodSync(path.join(out, f), 0o644);
        copied.push(f);
      }
    }
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    console.error(`error: cannot write ${out}: ${e.code ? `${e.code} (${e.message.split('\n')[0]})` : e.message}`);
    process.exit(1);
  }
  if (!copied.length) console.warn(`warning: no tokenizer files in ${opts['tokenizer-from']}`);
  const total = header.length + dataLength;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`wrote ${out}: ${layers} layers, ${bits}-bit, group ${groupSize}, act-order ${actOrder}, ${tensors.length} tensors, ` +
    `${total} bytes (${(total / 1e9).toFixed(3)} GB) in ${dt.toFixed(2)} s, ${(total / 1e9 / dt).toFixed(2)} GB/s`);
}
main();
