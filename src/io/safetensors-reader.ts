/**
 * Reading one .safetensors file: the header is parsed and validated on open;
 * tensor data is read on demand with positional reads, one tensor at a time,
 * never the whole file.
 */
import { promises as fs } from 'fs';
import type { FileHandle } from 'fs/promises';
import { UserError } from '../errors';
import type { DType } from './dtypes';
import { fsUserError } from './fs-errors';
import { MAX_HEADER_BYTES, checkLayout, parseHeader } from './safetensors-header';

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** The file that holds the tensor. */
  file: string;
  /** Absolute byte offset of the tensor's data in `file`. */
  offset: number;
}

export interface OpenOptions {
  /**
   * Close the file once the header is read, and open it again on the first
   * `read` (then keep it open). For checkpoints with many shards.
   */
  lazy?: boolean;
}

/** Read exactly `length` bytes at `position` into `buf` at `offset`. */
async function readFully(
  handle: FileHandle,
  file: string,
  buf: Uint8Array,
  offset: number,
  length: number,
  position: number,
): Promise<void> {
  const CHUNK = 1 << 30;
  let done = 0;
  while (done < length) {
    const want = Math.min(CHUNK, length - done);
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(buf, offset + done, want, position + done));
    } catch (err) {
      throw fsUserError(err, `cannot read ${file}`);
    }
    if (bytesRead === 0) {
      throw new UserError(`${file}: unexpected end of file at byte ${position + done} (was it truncated while open?)`);
    }
    done += bytesRead;
  }
}

/** Open `file` for reading; a UserError if it is missing or not a regular file. */
async function openRegularFile(file: string): Promise<{ handle: FileHandle; size: number }> {
  // stat first: opening a FIFO or a device would block or never end.
  let st;
  try {
    st = await fs.stat(file);
  } catch (err) {
    throw fsUserError(err, `cannot open ${file}`);
  }
  if (st.isDirectory()) throw new UserError(`${file} is a folder, not a safetensors file`);
  if (!st.isFile()) throw new UserError(`${file} is not a regular file`);
  let handle: FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    throw fsUserError(err, `cannot open ${file}`);
  }
  try {
    const { size } = await handle.stat();
    return { handle, size };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw fsUserError(err, `cannot open ${file}`);
  }
}

export class SafetensorsFile {
  private handle: Promise<FileHandle> | null;
  private closed = false;

  private constructor(
    readonly path: string,
    readonly metadata: Record<string, string>,
    private readonly tensors: ReadonlyMap<string, TensorInfo>,
    private readonly fileSize: number,
    handle: FileHandle | null,
  ) {
    this.handle = handle ? Promise.resolve(handle) : null;
  }

  /** Open and validate `path`; every problem with the file is a one-line UserError. */
  static async open(path: string, options: OpenOptions = {}): Promise<SafetensorsFile> {
    const { handle, size } = await openRegularFile(path);
    try {
      if (size < 8) {
        throw new UserError(`${path}: file is too short to be safetensors (${size} bytes, need at least 8)`);
      }
      const lenBuf = Buffer.alloc(8);
      await readFully(handle, path, lenBuf, 0, 8, 0);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER_BYTES)) {
        throw new UserError(
          `${path}: header length ${n} is over the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`,
        );
      }
      const headerLength = Number(n);
      if (8 + headerLength > size) {
        throw new UserError(
          `${path}: header length ${headerLength} runs past the end of the file (${size} bytes; truncated file?)`,
        );
      }
      const headerBytes = Buffer.alloc(headerLength);
      await readFully(handle, path, headerBytes, 0, headerLength, 8);
      const { metadata, entries } = parseHeader(path, headerBytes);
      const dataStart = 8 + headerLength;
      checkLayout(path, entries, size - dataStart);
      const tensors = new Map<string, TensorInfo>();
      for (const e of entries) {
        const info: TensorInfo = {
          name: e.name,
          dtype: e.dtype,
          shape: Object.freeze([...e.shape]) as number[],
          byteLength: e.end - e.begin,
          file: path,
          offset: dataStart + e.begin,
        };
        tensors.set(e.name, Object.freeze(info));
      }
      if (options.lazy) await handle.close();
      return new SafetensorsFile(path, Object.freeze(metadata), tensors, size, options.lazy ? null : handle);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  /** Tensor names in the order of their data in the file. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** The tensor's dtype, shape and place in the file (frozen); UserError if absent. */
  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new UserError(`${this.path}: no tensor named ${JSON.stringify(name)}`);
    return info;
  }

  /** The tensor's raw little-endian bytes, read from disk (only that tensor). */
  async read(name: string): Promise<Buffer> {
    const info = this.info(name);
    const handle = await this.getHandle();
    const buf = Buffer.allocUnsafe(info.byteLength);
    await readFully(handle, this.path, buf, 0, info.byteLength, info.offset);
    return buf;
  }

  /** `length` bytes of the tensor's data from byte `start` (clamped to the tensor's end). */
  async readSlice(name: string, start: number, length: number): Promise<Buffer> {
    const info = this.info(name);
    const from = Math.min(Math.max(0, start), info.byteLength);
    const n = Math.min(length, info.byteLength - from);
    const handle = await this.getHandle();
    const buf = Buffer.allocUnsafe(n);
    await readFully(handle, this.path, buf, 0, n, info.offset + from);
    return buf;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const pending = this.handle;
    this.handle = null;
    if (pending) await (await pending.catch(() => null))?.close();
  }

  private getHandle(): Promise<FileHandle> {
    if (this.closed) return Promise.reject(new Error(`${this.path}: read after close()`));
    if (!this.handle) {
      const opening = this.reopen();
      this.handle = opening;
      // A failed open is retried on the next read rather than cached.
      opening.catch(() => {
        if (this.handle === opening) this.handle = null;
      });
    }
    return this.handle;
  }

  private async reopen(): Promise<FileHandle> {
    const { handle, size } = await openRegularFile(this.path);
    if (size !== this.fileSize) {
      await handle.close().catch(() => undefined);
      throw new UserError(`${this.path} changed since it was opened (${this.fileSize} bytes, now ${size})`);
    }
    return handle;
  }
}
