/**
 * Hugging Face tokenizers (tokenizer.json) in pure JS, with an on-disk cache of token ids:
 * tokenizing all of wiki.test.raw takes ~15 s, a cache hit a few milliseconds.
 */
import { createHash, randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UserError } from '../errors';

export interface TextTokenizer {
  /** Token ids of the whole text in one pass (as HF does); BOS prepended when addBos (default: the model's add_bos_token). */
  encode(text: string, opts?: { addBos?: boolean }): Int32Array;
  bosId: number;
  vocabSize: number;
  /**
   * An upper bound on `encode(text, opts).length` computed without tokenizing (from the text's
   * UTF-8 length), where this tokenizer's structure proves one (see idsBoundExtra); undefined for
   * the tokenizers it does not recognise.
   */
  idsBound?: (text: string, opts?: { addBos?: boolean }) => number;
}

/** The part of @huggingface/tokenizers' Tokenizer this module uses. */
interface HfTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
}
type HfTokenizerCtor = new (tokenizerJson: object, tokenizerConfig: object) => HfTokenizer;

/**
 * The package is ESM-first but ships a CommonJS build (exports "node"."require"), so a plain
 * require works under node and jest alike, whatever tsconfig's module resolution is.
 */
function tokenizerClass(): HfTokenizerCtor {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('@huggingface/tokenizers') as { Tokenizer: HfTokenizerCtor }).Tokenizer;
}

interface TokenizerFiles {
  dir: string;
  jsonPath: string;
  jsonBytes: Buffer;
  /** tokenizer_config.json's bytes; empty when the file is absent. */
  configBytes: Buffer;
}

function readTokenizerFiles(modelDir: string): TokenizerFiles {
  const dir = path.resolve(modelDir);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new UserError(`model folder not found: ${modelDir}`);
  }
  const jsonPath = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(jsonPath)) {
    throw new UserError(`${modelDir}: no tokenizer.json in the model folder (a Hugging Face fast-tokenizer file is required)`);
  }
  const configPath = path.join(dir, 'tokenizer_config.json');
  const configBytes = fs.existsSync(configPath) ? fs.readFileSync(configPath) : Buffer.alloc(0);
  return { dir, jsonPath, jsonBytes: fs.readFileSync(jsonPath), configBytes };
}

function parseJson(bytes: Buffer, file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new UserError(`${file}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** A special token in tokenizer_config.json: a string or an AddedToken object `{content: ...}`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

type Json = Record<string, unknown>;
const asObject = (v: unknown): Json | undefined => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined);
/** A normalizer's or pre-tokenizer's steps: [] when absent (null), undefined when malformed. */
const steps = (raw: unknown, key: string): Json[] | undefined => {
  if (raw === null || raw === undefined) return [];
  const v = asObject(raw);
  if (v === undefined) return undefined;
  if (v.type !== 'Sequence') return [v];
  const list = v[key];
  return Array.isArray(list) && list.every((x) => asObject(x) !== undefined) ? (list as Json[]) : undefined;
};
const isOneChar = (v: unknown): v is string => typeof v === 'string' && [...v].length === 1;

/**
 * For a tokenizer.json whose structure it recognises, the most symbols that normalization and
 * pre-tokenization can add to a text beyond one per UTF-8 byte (`extra`), so that every encoding
 * without special tokens has at most `utf8Bytes(text) + extra` ids; undefined otherwise.
 *
 * Recognised: model BPE; normalizer absent, or Prepend / Replace(" " -> c) steps whose strings are
 * one character in the vocabulary (Llama 1/2: Prepend "▁", Replace " " -> "▁"); pre-tokenizer
 * absent, or (without such a normalizer) ByteLevel / Split / Digits / Punctuation steps. Why the
 * bound holds for them:
 *  - BPE starts a (pre-)token from one symbol per character, a character missing from the
 *    vocabulary giving one symbol per UTF-8 byte with byte_fallback, or one (unk) or none
 *    otherwise; merges only join symbols. So a character gives at most its UTF-8 length of ids,
 *    and a character of the vocabulary exactly one.
 *  - Replace(" " -> c) swaps a 1-byte character for one that is in the vocabulary: still at most
 *    one id for that byte. Splitting (Split, Digits, Punctuation) adds no characters. ByteLevel
 *    maps each byte to one character of its alphabet: at most one id per byte, plus one for
 *    add_prefix_space. (ByteLevel after a Replace is not recognised: "▁" would be 3 bytes.)
 *  - Each Prepend adds one character (one id) to each piece of text between added tokens, and
 *    to each piece at most one more where a pre-tokenizer adds a prefix space; those pieces are
 *    at most one more than the added tokens found, and each added token found gives one id for
 *    at least `1 + extra` bytes (required of every added token's content), paying for the
 *    prefix of the piece after it.
 * With BOS the bound is one more.
 */
export function idsBoundExtra(tokenizerJson: Json): number | undefined {
  const model = asObject(tokenizerJson.model);
  if (model?.type !== 'BPE') return undefined;
  const vocab = asObject(model.vocab);
  if (vocab === undefined) return undefined;
  const norm = steps(tokenizerJson.normalizer, 'normalizers');
  const pre = steps(tokenizerJson.pre_tokenizer, 'pretokenizers');
  if (norm === undefined || pre === undefined) return undefined;
  let extra = 0;
  for (const n of norm) {
    if (n.type === 'Prepend' && isOneChar(n.prepend) && n.prepend in vocab) extra++;
    else if (n.type === 'Replace' && asObject(n.pattern)?.String === ' ' && isOneChar(n.content) && n.content in vocab) continue;
    else return undefined;
  }
  for (const p of pre) {
    if (p.type === 'Split' || p.type === 'Digits' || p.type === 'Punctuation') continue;
    if (p.type !== 'ByteLevel' || norm.length > 0) return undefined;
    if (p.add_prefix_space === true) extra++;
  }
  const added = Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens : [];
  for (const a of added) {
    const content = asObject(a)?.content;
    if (typeof content !== 'string' || Buffer.byteLength(content, 'utf8') < 1 + extra) return undefined;
  }
  return extra;
}

function buildTokenizer(files: TokenizerFiles): TextTokenizer {
  const json = parseJson(files.jsonBytes, files.jsonPath);
  const configPath = path.join(files.dir, 'tokenizer_config.json');
  const config = files.configBytes.length ? parseJson(files.configBytes, configPath) : {};
  let tok: HfTokenizer;
  try {
    const Tokenizer = tokenizerClass();
    tok = new Tokenizer(json, config);
  } catch (e) {
    throw new UserError(`${files.jsonPath}: cannot load the tokenizer (${(e as Error).message})`);
  }
  const bosToken = tokenContent(config.bos_token) ?? '<s>';
  const bosId = tok.token_to_id(bosToken);
  if (bosId === undefined) throw new UserError(`${files.jsonPath}: BOS token ${JSON.stringify(bosToken)} is not in the vocabulary`);
  const defaultAddBos = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : true;
  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const extra = idsBoundExtra(json);

  return {
    bosId,
    vocabSize,
    idsBound: extra === undefined ? undefined : (text, opts) => Buffer.byteLength(text, 'utf8') + extra + ((opts?.addBos ?? defaultAddBos) ? 1 : 0),
    encode(text: string, opts?: { addBos?: boolean }): Int32Array {
      const addBos = opts?.addBos ?? defaultAddBos;
      // Special tokens are added here rather than by tokenizer.json's post-processor, which
      // transformers rebuilds from add_bos_token anyway; for Llama both give the same ids.
      const ids = tok.encode(text, { add_special_tokens: false }).ids;
      const off = addBos ? 1 : 0;
      const out = new Int32Array(ids.length + off);
      if (addBos) out[0] = bosId;
      for (let i = 0; i < ids.length; i++) out[i + off] = ids[i];
      return out;
    },
  };
}

/** Loads `tokenizer.json` (+ `tokenizer_config.json`) from a Hugging Face model folder. */
export async function loadTokenizer(modelDir: string): Promise<TextTokenizer> {
  return buildTokenizer(readTokenizerFiles(modelDir));
}

/** `$GPTQ_FORGE_CACHE` or `~/.cache/gptq-forge`. */
export function defaultCacheDir(): string {
  const env = process.env.GPTQ_FORGE_CACHE;
  return env && env.length > 0 ? path.resolve(env) : path.join(os.homedir(), '.cache', 'gptq-forge');
}

const CACHE_FORMAT = 'gptq-forge tokens v2';

/**
 * A cache file: MAGIC (8 bytes), the number of ids (u64 LE), sha256 of the ids' little-endian
 * bytes (32 bytes), then the ids (int32 LE). A file whose length, count or digest does not
 * match (truncated, torn, corrupted, a v1 file of raw ids) is never used: the text is
 * tokenized again and the entry rewritten.
 */
const MAGIC = Buffer.from('GPTQTOK2', 'latin1');
const HEADER_BYTES = MAGIC.length + 8 + 32;
/** The cache key of ids computed from the tokenizer's files and `parts` (each length-prefixed). */
function keyOf(files: TokenizerFiles, parts: readonly string[]): string {
  const h = createHash('sha256');
  const part = (b: Buffer | string) => {
    const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(buf.length));
    h.update(len);
    h.update(buf);
  };
  part(CACHE_FORMAT);
  part(files.jsonBytes);
  part(files.configBytes);
  for (const p of parts) part(p);
  return h.digest('hex');
}

function digestIds(le: Uint8Array): Buffer {
  return createHash('sha256').update(le).digest();
}

/** The ids of a verified cache file; undefined when it is absent or fails any check. */
export function readCached(file: string): Int32Array | undefined {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return undefined;
  }
  if (buf.length < HEADER_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const count = buf.readBigUInt64LE(MAGIC.length);
  if (BigInt(buf.length - HEADER_BYTES) !== count * 4n) return undefined; // truncated or padded
  const digest = buf.subarray(MAGIC.length + 8, HEADER_BYTES);
  const body = buf.subarray(HEADER_BYTES);
  if (!digestIds(body).equals(digest)) return undefined; // corrupted
  const copy = new Uint8Array(body.length);
  copy.set(body);
  if (os.endianness() === 'BE') Buffer.from(copy.buffer).swap32();
  return new Int32Array(copy.buffer);
}

function writeCached(file: string, ids: Int32Array): void {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const native = Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
    const le = os.endianness() === 'BE' ? Buffer.from(native).swap32() : native;
    const header = Buffer.alloc(HEADER_BYTES);
    MAGIC.copy(header, 0);
    header.writeBigUInt64LE(BigInt(ids.length), MAGIC.length);
    digestIds(le).copy(header, MAGIC.length + 8);
    fs.writeFileSync(tmp, Buffer.concat([header, le]));
    fs.renameSync(tmp, file);
  } catch {
    // The cache is an optimisation only: an unwritable cache folder must not fail the run.
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* nothing to remove */
    }
  }
}

/** `<cacheDir>/tokens/<key>.i32`: where tokenizeCached and derivedIdsCached keep ids. */
function idsCacheFile(key: string, cacheDir: string | undefined): string {
  return path.join(cacheDir ?? defaultCacheDir(), 'tokens', `${key}.i32`);
}

function tokenCacheFile(files: TokenizerFiles, text: string, opts: { addBos: boolean; cacheDir?: string }): string {
  return idsCacheFile(keyOf(files, [opts.addBos ? 'bos' : 'nobos', text]), opts.cacheDir);
}

/** The ids cached in `file` (header checked), else computed with this model's tokenizer and cached there. */
async function cachedIds(
  file: string,
  files: TokenizerFiles,
  compute: (tokenizer: TextTokenizer) => Int32Array | Promise<Int32Array>,
): Promise<Int32Array> {
  const hit = readCached(file);
  if (hit) return hit;
  const ids = await compute(buildTokenizer(files));
  writeCached(file, ids);
  return ids;
}

/** Where tokenizeCached keeps the ids of `text` for this model's tokenizer (for tests and tools). */
export function tokenCachePath(modelDir: string, text: string, opts: { addBos: boolean; cacheDir?: string }): string {
  return tokenCacheFile(readTokenizerFiles(modelDir), text, opts);
}

/**
 * Token ids of `text` (whole, in one pass, like HF), cached under
 * `<cacheDir>/tokens/<sha256(tokenizer.json, tokenizer_config.json, addBos, text)>.i32` with a
 * header (count and sha256 of the ids) that is checked on every read.
 */
export async function tokenizeCached(
  modelDir: string,
  text: string,
  opts: { addBos: boolean; cacheDir?: string },
): Promise<Int32Array> {
  const files = readTokenizerFiles(modelDir);
  return cachedIds(tokenCacheFile(files, text, opts), files, (t) => t.encode(text, { addBos: opts.addBos }));
}

/**
 * Token ids derived from texts by a deterministic computation (`compute`, given this model's
 * tokenizer), cached like tokenizeCached's under `<cacheDir>/tokens/<sha256(tokenizer.json,
 * tokenizer_config.json, "derived", ...key)>.i32`: `key` must identify the computation and its
 * input by content (e.g. a protocol name, its parameters and the sha256 of the dataset file).
 */
export async function derivedIdsCached(
  modelDir: string,
  key: readonly string[],
  compute: (tokenizer: TextTokenizer) => Int32Array | Promise<Int32Array>,
  opts: { cacheDir?: string } = {},
): Promise<Int32Array> {
  const files = readTokenizerFiles(modelDir);
  return cachedIds(idsCacheFile(keyOf(files, ['derived', ...key]), opts.cacheDir), files, compute);
}
