#!/usr/bin/env node
'use strict';
/**
 * Writes a synthetic fp16 Llama-2 checkpoint in Hugging Face layout, for end-to-end speed and
 * memory runs of `gptq quantize` / `gptq branches` on a host with no network:
 *
 *   node bench/make-synthetic-llama.js --config ../shared/models/llama-2-70b/config.json \
 *     --layers 4 --tokenizer-from ../shared/models/llama2-m --out /tmp/syn70b [--seed 1] [--max-shard-gb 5] [--sparse true]
 *
 * --out gets config.json (num_hidden_layers = --layers, torch_dtype float16, untied lm_head), the
 * tokenizer files found in --tokenizer-from, and every Llama-2 tensor in F16: embed_tokens, per
 * layer the two norms and q/k/v/o/gate/up/down (shapes [out, in]), model.norm, lm_head. Linear
 * and embedding weights are ~N(0, 0.02²), norm weights uniform in 0.9..1.1. Values come from a
 * 65536-entry fp16 table (drawn once per seed) indexed by 16-bit halves of a xorshift32 stream
 * seeded per tensor name, so output is reproducible and independent of sharding.
 * Sharding follows transformers: greedy shards of at most --max-shard-gb (1 GB = 1e9 bytes),
 * model-0000i-of-0000n.safetensors + model.safetensors.index.json, or one model.safetensors.
 * Tensors are streamed to disk in 32 MB chunks; memory stays flat whatever the model size.
 */
const fs = require('node:fs');
const path = require('node:path');

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error('usage: node bench/make-synthetic-llama.js --config CONFIG.json --layers N --tokenizer-from DIR --out DIR [--seed 1] [--max-shard-gb 5] [--sparse true]');
  process.exit(2);
}
const opts = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  if (argv[i] === '-h' || argv[i] === '--help') usage();
  if (!argv[i].startsWith('--') || argv[i + 1] === undefined) usage(`bad argument ${argv[i]}`);
  opts[argv[i].slice(2)] = argv[i + 1];
}
for (const k of Object.keys(opts))
  if (!['config', 'layers', 'tokenizer-from', 'out', 'seed', 'max-shard-gb', 'sparse'].includes(k)) usage(`unknown option --${k}`);
for (const k of ['config', 'layers', 'tokenizer-from', 'out']) if (!opts[k]) usage(`--${k} is required`);
const layers = Number(opts.layers);
const seed = Number(opts.seed ?? 1);
const maxShard = Number(opts['max-shard-gb'] ?? 5) * 1e9;
// --sparse true: every weight is 0 and the files are sparse (no data written), for checks of what
// happens before any weight is used (e.g. a model too large for the GPU); never for timings.
const sparse = opts.sparse === 'true';
if (opts.sparse !== undefined && !['true', 'false'].includes(opts.sparse)) usage('--sparse must be true or false');
if (!Number.isInteger(layers) || layers < 1) usage('--layers must be a positive integer');
if (!Number.isInteger(seed)) usage('--seed must be an integer');
if (!(maxShard > 0)) usage('--max-shard-gb must be > 0');

// ---- config and tokenizer ----
const config = JSON.parse(fs.readFileSync(opts.config, 'utf8'));
config.num_hidden_layers = layers;
config.torch_dtype = 'float16';
config.tie_word_embeddings = false;
const hidden = config.hidden_size, ffn = config.intermediate_size, vocab = config.vocab_size;
const heads = config.num_attention_heads, kvHeads = config.num_key_value_heads ?? heads;
const headDim = config.head_dim ?? hidden / heads;
const out = opts.out;
fs.mkdirSync(out, { recursive: true });
for (const f of fs.readdirSync(out)) // stale shards of an earlier run would confuse the loader
  if (/^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$/.test(f)) fs.unlinkSync(path.join(out, f));
fs.writeFileSync(path.join(out, 'config.json'), JSON.stringify(config, null, 2) + '\n');
const copied = [];
for (const f of ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json'])
  if (fs.existsSync(path.join(opts['tokenizer-from'], f))) {
    fs.rmSync(path.join(out, f), { force: true }); // sources may be read-only; so would the copy be
    fs.copyFileSync(path.join(opts['tokenizer-from'], f), path.join(out, f));
    fs.chmodSync(path.join(out, f), 0o644);
    copied.push(f);
  }
if (!copied.length) console.warn(`warning: no tokenizer files in ${opts['tokenizer-from']}`);

// ---- tensor list (transformers' state-dict order; per layer in name order) ----
const tensors = [{ name: 'model.embed_tokens.weight', shape: [vocab, hidden], kind: 'w' }];
for (let l = 0; l < layers; l++) {
  const p = `model.layers.${l}.`;
  tensors.push(
    { name: p + 'input_layernorm.weight', shape: [hidden], kind: 'norm' },
    { name: p + 'mlp.down_proj.weight', shape: [hidden, ffn], kind: 'w' },
    { name: p + 'mlp.gate_proj.weight', shape: [ffn, hidden], kind: 'w' },
    { name: p + 'mlp.up_proj.weight', shape: [ffn, hidden], kind: 'w' },
    { name: p + 'post_attention_layernorm.weight', shape: [hidden], kind: 'norm' },
    { name: p + 'self_attn.k_proj.weight', shape: [kvHeads * headDim, hidden], kind: 'w' },
    { name: p + 'self_attn.o_proj.weight', shape: [hidden, heads * headDim], kind: 'w' },
    { name: p + 'self_attn.q_proj.weight', shape: [heads * headDim, hidden], kind: 'w' },
    { name: p + 'self_attn.v_proj.weight', shape: [kvHeads * headDim, hidden], kind: 'w' },
  );
}
tensors.push({ name: 'model.norm.weight', shape: [hidden], kind: 'norm' });
tensors.push({ name: 'lm_head.weight', shape: [vocab, hidden], kind: 'w' });
for (const t of tensors) t.bytes = t.shape.reduce((a, b) => a * b, 1) * 2;

// ---- greedy sharding, as transformers' shard_checkpoint ----
const shards = [];
let cur = null;
for (const t of tensors) {
  if (!cur || (cur.size > 0 && cur.size + t.bytes > maxShard)) shards.push((cur = { tensors: [], size: 0 }));
  cur.tensors.push(t);
  cur.size += t.bytes;
}
const pad5 = (n) => String(n).padStart(5, '0');
shards.forEach((s, i) => {
  s.file = shards.length === 1 ? 'model.safetensors' : `model-${pad5(i + 1)}-of-${pad5(shards.length)}.safetensors`;
});

// ---- random fp16 values ----
const { toHalf } = require('./fp16-bits'); // float32 -> fp16 bits, round to nearest even, finite
function xorshift(s) {
  let x = s >>> 0 || 0x9e3779b9;
  return () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) / 4294967296; };
}
const tables = { w: new Uint16Array(65536), norm: new Uint16Array(65536) };
{
  const rnd = xorshift(0x2545f491 ^ seed);
  for (let i = 0; i < 65536; i += 2) { // Box-Muller, std 0.02
    const r = 0.02 * Math.sqrt(-2 * Math.log(1 - rnd())), a = 2 * Math.PI * rnd();
    tables.w[i] = toHalf(r * Math.cos(a));
    tables.w[i + 1] = toHalf(r * Math.sin(a));
  }
  for (let i = 0; i < 65536; i++) tables.norm[i] = toHalf(0.9 + (0.2 * (i + 0.5)) / 65536);
}
function nameSeed(name) { // FNV-1a of the name, mixed with --seed
  let h = 0x811c9dc5 ^ Math.imul(seed, 0x9e3779b1);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}
const CHUNK = 32 << 20; // bytes
const chunk = Buffer.alloc(CHUNK);
const chunk32 = new Uint32Array(chunk.buffer, chunk.byteOffset, CHUNK / 4);
function writeTensor(fd, t) {
  const T = t.kind === 'norm' ? tables.norm : tables.w;
  let x = nameSeed(t.name) | 0;
  for (let done = 0; done < t.bytes; ) {
    const n = Math.min(CHUNK, t.bytes - done), words = (n + 3) >>> 2;
    for (let i = 0; i < words; i++) {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      chunk32[i] = T[x & 0xffff] | (T[x >>> 16] << 16);
    }
    for (let off = 0; off < n; ) off += fs.writeSync(fd, chunk, off, n - off);
    done += n;
  }
}

// ---- write ----
const t0 = process.hrtime.bigint();
const secs = (a) => Number(process.hrtime.bigint() - a) / 1e9;
let total = 0;
const weightMap = {};
for (const s of shards) {
  const ts = process.hrtime.bigint();
  const header = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of s.tensors) {
    header[t.name] = { dtype: 'F16', shape: t.shape, data_offsets: [off, off + t.bytes] };
    off += t.bytes;
    weightMap[t.name] = s.file;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(head.length - 8), 0);
  head.write(json, 8);
  const fd = fs.openSync(path.join(out, s.file), 'w');
  try {
    fs.writeSync(fd, head);
    if (sparse) fs.ftruncateSync(fd, head.length + s.size);
    else for (const t of s.tensors) writeTensor(fd, t);
  } finally {
    fs.closeSync(fd);
  }
  total += s.size;
  const dt = secs(ts);
  console.log(`${s.file}: ${s.tensors.length} tensors, ${(s.size / 1e9).toFixed(3)} GB, ${dt.toFixed(2)} s`);
}
if (shards.length > 1) {
  const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
  fs.writeFileSync(path.join(out, 'model.safetensors.index.json'),
    JSON.stringify({ metadata: { total_size: total }, weight_map: sorted }, null, 2) + '\n');
}
const dt = secs(t0);
console.log(`wrote ${out}: ${layers} layers, ${tensors.length} tensors, ${shards.length} shard(s), ` +
  `${total} bytes (${(total / 1e9).toFixed(3)} GB) in ${dt.toFixed(2)} s, ${(total / 1e9 / dt).toFixed(2)} GB/s` +
  ` (tokenizer: ${copied.join(', ') || 'none'})`);
