/** Hand-built safetensors bytes and temp folders for the safetensors tests. */
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { UserError } from '../../src/errors';

export function u64le(n: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

/** Little-endian float32 bytes of `values`. */
export function f32le(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
}

export interface RawOptions {
  /** The u64 written as the header length (default: the real one). */
  headerLength?: number | bigint;
  /** Pad the JSON with spaces to a multiple of 8 (default false). */
  pad?: boolean;
}

/**
 * A safetensors file built by hand: u64 length, the header (a string used
 * verbatim, or an object passed through JSON.stringify), then `data`.
 */
export function buildRaw(header: string | object, data: Uint8Array = Buffer.alloc(0), opts: RawOptions = {}): Buffer {
  let json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  if (opts.pad) json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  return Buffer.concat([u64le(opts.headerLength ?? json.length), json, data]);
}

/** Deterministic pseudo-random bytes. */
export function patternBytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

const made: string[] = [];

/** A fresh folder under os.tmpdir(); removed by `cleanupTmp`. */
export async function makeTmp(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gptq-forge-st-'));
  made.push(dir);
  return dir;
}

export async function cleanupTmp(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => fs.rm(d, { recursive: true, force: true })));
}

/** The rejection of `p`, checked to be a one-line UserError matching `re`. */
export async function expectUserError(p: Promise<unknown>, re: RegExp): Promise<UserError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UserError);
  const msg = (err as Error).message;
  expect(msg).toMatch(re);
  expect(msg).not.toContain('\n');
  return err as UserError;
}

/** Files in `dir`, sorted. */
export async function listDir(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).sort();
}
