/**
 * The rows of a dataset file, by index: what the GPTQ code's `traindata[i]['text']` reads.
 * A gzipped JSON-lines shard (C4's `en/c4-*.json.gz`) is streamed through zlib and checked line
 * by line as it arrives; its lines are kept as the decompressed bytes (outside the JS heap: the
 * C4 train shard is ~800 MB of JSON) and a row's text is parsed out again when it is asked for.
 */
import * as fs from 'fs';
import * as zlib from 'zlib';
import { UserError } from '../errors';

export interface TextRows {
  /** Number of rows (`len(data)`). */
  readonly count: number;
  /** The text of row i, 0 <= i < count. */
  text(i: number): string;
}

export function arrayRows(texts: readonly string[]): TextRows {
  return {
    count: texts.length,
    text: (i) => {
      if (!Number.isInteger(i) || i < 0 || i >= texts.length) throw new RangeError(`row ${i} of ${texts.length}`);
      return texts[i];
    },
  };
}

export const JSONL_GZ_EXTENSION = '.json.gz';

/**
 * The rows of a gzipped JSON-lines file: one JSON object per line, `field` a string in every
 * one (blank lines are skipped). Stops reading after `maxRows` rows when given. UserError on a
 * truncated or corrupt gzip stream, a line that is not UTF-8 JSON, or a row without the field.
 */
export async function readJsonlGzRows(file: string, field: string, opts: { maxRows?: number } = {}): Promise<TextRows> {
  const maxRows = opts.maxRows ?? Infinity;
  const lines: Buffer[] = [];
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let lineNo = 0;
  const take = (line: Buffer): void => {
    lineNo++;
    if (lines.length >= maxRows || isBlank(line)) return;
    parseRow(line, field, utf8, `${file}: line ${lineNo}`);
    lines.push(line);
  };

  const source = fs.createReadStream(file, { highWaterMark: 1 << 20 });
  const gunzip = zlib.createGunzip({ chunkSize: 1 << 20 });
  source.on('error', (e) => gunzip.destroy(e));
  source.pipe(gunzip);
  let carry: Buffer | undefined;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      let start = 0;
      for (let nl = chunk.indexOf(0x0a); nl >= 0; nl = chunk.indexOf(0x0a, start)) {
        const piece = chunk.subarray(start, nl);
        take(carry ? Buffer.concat([carry, piece]) : piece);
        carry = undefined;
        start = nl + 1;
      }
      if (start < chunk.length) carry = carry ? Buffer.concat([carry, chunk.subarray(start)]) : chunk.subarray(start);
      if (lines.length >= maxRows) break;
    }
  } catch (e) {
    if (e instanceof UserError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new UserError(`dataset file not found: ${file}`);
    if (err.code === 'Z_BUF_ERROR') throw new UserError(`${file}: truncated gzip file (${err.message})`);
    if (typeof err.code === 'string' && err.code.startsWith('Z_')) throw new UserError(`${file}: not valid gzip data (${err.message})`);
    throw new UserError(`${file}: cannot read (${err.message})`);
  } finally {
    source.destroy();
    gunzip.destroy();
  }
  if (carry && lines.length < maxRows) take(carry); // a last line without a newline
  const count = lines.length;
  return {
    count,
    text: (i) => {
      if (!Number.isInteger(i) || i < 0 || i >= count) throw new RangeError(`row ${i} of ${count}`);
      return (JSON.parse(lines[i].toString('utf8')) as Record<string, string>)[field];
    },
  };
}

function isBlank(line: Buffer): boolean {
  for (const b of line) if (b !== 0x20 && b !== 0x09 && b !== 0x0d) return false;
  return true;
}

function parseRow(line: Buffer, field: string, utf8: { decode(b: Uint8Array): string }, where: string): void {
  let s: string;
  try {
    s = utf8.decode(line);
  } catch {
    throw new UserError(`${where} is not UTF-8 text`);
  }
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch (e) {
    throw new UserError(`${where} is not JSON (${(e as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new UserError(`${where} is not a JSON object`);
  const value = (v as Record<string, unknown>)[field];
  if (typeof value === 'string') return;
  if (value === undefined) {
    const fields = Object.keys(v).join(', ') || 'none';
    throw new UserError(`${where} has no "${field}" field (fields: ${fields})`);
  }
  throw new UserError(`${where}: "${field}" is ${value === null ? 'null' : typeof value}, not text`);
}
