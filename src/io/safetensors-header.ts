/**
 * The safetensors header: parsing and validating one read from a file, and
 * building one for the writer, byte for byte as the Python/Rust library does.
 *
 * Layout of a file: u64 little-endian N, N bytes of UTF-8 JSON (padded with
 * spaces), then the data region, which the tensors must cover exactly, without
 * gaps or overlaps. Offsets in the header are relative to the data region.
 */
import { TextDecoder } from 'util';
import { UserError } from '../errors';
import { DType, dtypeRank, isDType, tensorByteLength } from './dtypes';

/** Headers larger than this are rejected, as the safetensors crate does. */
export const MAX_HEADER_BYTES = 100_000_000;
export const METADATA_KEY = '__metadata__';

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
}

/** A tensor of a header, with its offsets in the data region. */
export interface HeaderEntry extends TensorSpec {
  begin: number;
  end: number;
}

export interface ParsedHeader {
  metadata: Record<string, string>;
  /** Sorted by data offsets. */
  entries: HeaderEntry[];
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function fmtShape(shape: readonly unknown[]): string {
  return `[${shape.join(', ')}]`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** One line of an error's message, shortened. */
function oneLine(message: string): string {
  const line = message.split('\n')[0];
  return line.length > 200 ? `${line.slice(0, 200)}...` : line;
}

/**
 * Parse the header JSON bytes of `file` and check every entry on its own:
 * dtype, shape, offsets and their agreement. The layout of the data region is
 * checked by `checkLayout`.
 */
export function parseHeader(file: string, bytes: Uint8Array): ParsedHeader {
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw new UserError(`${file}: header is not valid UTF-8 (not a safetensors file?)`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${file}: header is not valid JSON (${oneLine((err as Error).message)})`);
  }
  if (!isPlainObject(json)) throw new UserError(`${file}: header is not a JSON object`);

  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) {
      if (value === null) continue;
      if (!isPlainObject(value)) throw new UserError(`${file}: "${METADATA_KEY}" is not an object`);
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') {
          throw new UserError(`${file}: ${METADATA_KEY} value of ${JSON.stringify(k)} is not a string`);
        }
        metadata[k] = v;
      }
      continue;
    }
    entries.push(parseEntry(file, name, value));
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  return { metadata, entries };
}

function parseEntry(file: string, name: string, value: unknown): HeaderEntry {
  const where = `${file}: tensor ${JSON.stringify(name)}`;
  if (!isPlainObject(value)) throw new UserError(`${where}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== 'string') throw new UserError(`${where}: "dtype" is missing or not a string`);
  if (!isDType(dtype)) throw new UserError(`${where} has unknown dtype ${JSON.stringify(dtype)}`);
  if (
    !Array.isArray(shape) ||
    !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)
  ) {
    throw new UserError(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0) ||
    offsets[0] > offsets[1]
  ) {
    throw new UserError(`${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`);
  }
  const [begin, end] = offsets as [number, number];
  const expected = tensorByteLength(dtype, shape);
  if (Number.isNaN(expected)) throw new UserError(`${where}: shape ${fmtShape(shape)} is too large`);
  if (end - begin !== expected) {
    throw new UserError(
      `${where}: data_offsets [${begin}, ${end}) hold ${end - begin} bytes but ${dtype} ${fmtShape(shape)} needs ${expected}`,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/**
 * Check that `entries` (sorted by offsets) cover a data region of `dataSize`
 * bytes exactly: nothing past its end, no overlaps, no gaps, nothing left over.
 */
export function checkLayout(file: string, entries: readonly HeaderEntry[], dataSize: number): void {
  const past = entries.find((e) => e.end > dataSize);
  if (past) {
    throw new UserError(
      `${file}: tensor ${JSON.stringify(past.name)} data [${past.begin}, ${past.end}) runs past the end of the file ` +
        `(data region is ${dataSize} bytes; truncated file?)`,
    );
  }
  let cursor = 0;
  let prev: HeaderEntry | undefined;
  for (const e of entries) {
    if (e.begin < cursor && prev) {
      throw new UserError(
        `${file}: tensors ${JSON.stringify(prev.name)} [${prev.begin}, ${prev.end}) and ` +
          `${JSON.stringify(e.name)} [${e.begin}, ${e.end}) overlap`,
      );
    }
    if (e.begin > cursor) {
      throw new UserError(`${file}: bytes [${cursor}, ${e.begin}) of the data region belong to no tensor (a gap)`);
    }
    cursor = e.end;
    prev = e;
  }
  if (cursor !== dataSize) {
    throw new UserError(
      `${file}: ${dataSize - cursor} bytes after the last tensor's data belong to no tensor ` +
        `(data region is ${dataSize} bytes, tensors end at ${cursor})`,
    );
  }
}

/** A header ready to be written, and where each tensor's data goes. */
export interface HeaderLayout {
  /** The 8-byte length followed by the space-padded JSON. */
  header: Buffer;
  /** In data order: dtype descending (by the crate's enum), then name. */
  entries: HeaderEntry[];
  /** Bytes of the data region. */
  dataLength: number;
}

/** Compare strings by their UTF-8 bytes (= code points), as Rust sorts `String`s. */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Check `specs` and `metadata` for the writer; throws Error on misuse. */
function checkSpecs(specs: readonly TensorSpec[], metadata?: Record<string, string>): void {
  const seen = new Set<string>();
  for (const spec of specs) {
    const { name, dtype, shape } = spec;
    if (typeof name !== 'string') throw new Error(`tensor name ${String(name)} is not a string`);
    if (name === METADATA_KEY) throw new Error(`"${METADATA_KEY}" cannot be a tensor name`);
    if (seen.has(name)) throw new Error(`tensor ${JSON.stringify(name)} is listed twice`);
    seen.add(name);
    if (!isDType(dtype)) throw new Error(`tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || Number.isNaN(tensorByteLength(dtype, shape))) {
      throw new Error(`tensor ${JSON.stringify(name)}: bad shape ${JSON.stringify(shape)}`);
    }
  }
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') throw new Error(`metadata value of ${JSON.stringify(k)} is not a string`);
  }
}

/**
 * The header the safetensors library would write for these tensors: tensors
 * sorted by dtype (descending enum order) then name, offsets assigned in that
 * order, compact JSON with `__metadata__` first (only when given), padded with
 * spaces to a multiple of 8 bytes.
 */
export function buildHeader(specs: readonly TensorSpec[], metadata?: Record<string, string>): HeaderLayout {
  checkSpecs(specs, metadata);
  const keyed = specs.map((s) => ({ s, rank: dtypeRank(s.dtype), key: Buffer.from(s.name, 'utf8') }));
  keyed.sort((a, b) => b.rank - a.rank || Buffer.compare(a.key, b.key));

  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify({ ...metadata })}`);
  const entries: HeaderEntry[] = [];
  let offset = 0;
  for (const { s } of keyed) {
    const end = offset + tensorByteLength(s.dtype, s.shape);
    if (!Number.isSafeInteger(end)) throw new Error('tensors are too large in total');
    const shape = [...s.shape];
    entries.push({ name: s.name, dtype: s.dtype, shape, begin: offset, end });
    const info = JSON.stringify({ dtype: s.dtype, shape, data_offsets: [offset, end] });
    parts.push(`${JSON.stringify(s.name)}:${info}`);
    offset = end;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const header = Buffer.alloc(8 + padded, 0x20);
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);
  return { header, entries, dataLength: offset };
}
