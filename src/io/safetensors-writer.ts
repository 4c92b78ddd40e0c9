/**
 * Streaming, atomic .safetensors writer. The header is laid out up front from
 * the tensor specs (exactly as the Python library would), then each tensor's
 * bytes are written at its offset, in any order, one tensor at a time, into a
 * temporary file that `close()` renames over the target.
 */
import { promises as fs } from 'fs';
import type { FileHandle } from 'fs/promises';
import type { DType } from './dtypes';
import { commitTemp, removeQuietly, tempPathFor, writeFully } from './atomic';
import { fsUserError } from './fs-errors';
import { HeaderEntry, TensorSpec, buildHeader } from './safetensors-header';

export type { TensorSpec } from './safetensors-header';
export { buildHeader } from './safetensors-header';

export interface TensorData {
  name: string;
  dtype: DType;
  shape: number[];
  /** Raw little-endian bytes; any typed array or DataView works. */
  data: Uint8Array | ArrayBufferView;
}

/** The bytes behind a typed array or DataView, without copying. */
export function asBytes(data: Uint8Array | ArrayBufferView): Uint8Array {
  return data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

type SlotState = 'pending' | 'writing' | 'done';
interface Slot {
  entry: HeaderEntry;
  state: SlotState;
}

type WriterState = 'open' | 'finished' | 'closed' | 'aborted';

export class SafetensorsWriter {
  private state: WriterState = 'open';

  private constructor(
    /** The final path. */
    readonly path: string,
    /** The temporary file being written. */
    readonly tempPath: string,
    private handle: FileHandle | null,
    private readonly dataStart: number,
    private readonly slots: ReadonlyMap<string, Slot>,
  ) {}

  /**
   * Start writing `path` (through a temporary file next to it). `metadata` is
   * the header's `__metadata__`, written only when given.
   */
  static async create(
    path: string,
    specs: readonly TensorSpec[],
    metadata?: Record<string, string>,
  ): Promise<SafetensorsWriter> {
    const { header, entries } = buildHeader(specs, metadata);
    const tmp = tempPathFor(path);
    let handle: FileHandle | undefined;
    try {
      handle = await fs.open(tmp, 'wx');
      await writeFully(handle, header, 0);
    } catch (err) {
      await handle?.close().catch(() => undefined);
      await removeQuietly(tmp);
      throw fsUserError(err, `cannot write ${path}`);
    }
    const slots = new Map<string, Slot>(entries.map((entry) => [entry.name, { entry, state: 'pending' }]));
    return new SafetensorsWriter(path, tmp, handle, header.length, slots);
  }

  /** Names of the tensors not written yet. */
  pending(): string[] {
    return [...this.slots.values()].filter((s) => s.state !== 'done').map((s) => s.entry.name);
  }

  /** Write one tensor's bytes (once per tensor, any order, exact byte length). */
  async write(name: string, data: Uint8Array | ArrayBufferView): Promise<void> {
    this.expect('open', 'write()');
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`${this.path}: tensor ${JSON.stringify(name)} is not one of the tensors of this file`);
    if (slot.state !== 'pending') throw new Error(`${this.path}: tensor ${JSON.stringify(name)} was already written`);
    const bytes = asBytes(data);
    const { entry } = slot;
    const expected = entry.end - entry.begin;
    if (bytes.byteLength !== expected) {
      throw new Error(
        `${this.path}: tensor ${JSON.stringify(name)} (${entry.dtype} [${entry.shape.join(', ')}]) ` +
          `needs ${expected} bytes, got ${bytes.byteLength}`,
      );
    }
    slot.state = 'writing';
    try {
      await writeFully(this.handle!, bytes, this.dataStart + entry.begin);
      slot.state = 'done';
    } catch (err) {
      slot.state = 'pending';
      throw fsUserError(err, `cannot write ${this.path}`);
    }
  }

  /**
   * Check every tensor was written, fsync and close the temporary file, and
   * rename it over the target. On any failure the temporary file is removed.
   */
  async close(): Promise<void> {
    await this.finish();
    await this.commit();
  }

  /**
   * First half of `close()`: check and fsync the temporary file, without
   * renaming it (to commit several files together). On failure it aborts.
   */
  async finish(): Promise<void> {
    this.expect('open', 'close()');
    const missing = this.pending();
    if (missing.length > 0) {
      await this.abort();
      const shown = missing.slice(0, 5).map((n) => JSON.stringify(n)).join(', ');
      const more = missing.length > 5 ? ` and ${missing.length - 5} more` : '';
      throw new Error(
        `${this.path}: ${missing.length} tensor(s) never written: ${shown}${more}; the file was not created`,
      );
    }
    try {
      await this.handle!.sync();
      const h = this.handle!;
      this.handle = null;
      await h.close();
    } catch (err) {
      await this.abort();
      throw fsUserError(err, `cannot write ${this.path}`);
    }
    this.state = 'finished';
  }

  /** Second half of `close()`: rename the finished temporary file over the target. */
  async commit(): Promise<void> {
    this.expect('finished', 'commit()');
    this.state = 'closed';
    await commitTemp(this.tempPath, this.path);
  }

  /** Give up: close and remove the temporary file. Safe to call at any time, more than once. */
  async abort(): Promise<void> {
    if (this.state === 'closed' || this.state === 'aborted') return;
    this.state = 'aborted';
    const h = this.handle;
    this.handle = null;
    await h?.close().catch(() => undefined);
    await removeQuietly(this.tempPath);
  }

  private expect(state: WriterState, what: string): void {
    if (this.state !== state) throw new Error(`${this.path}: ${what} on a writer that is ${this.state}`);
  }
}

/** Write a whole .safetensors file atomically from in-memory tensors. */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorData[],
  metadata?: Record<string, string>,
): Promise<void> {
  const writer = await SafetensorsWriter.create(path, tensors, metadata);
  try {
    for (const t of tensors) await writer.write(t.name, t.data);
    await writer.close();
  } catch (err) {
    await writer.abort();
    throw err;
  }
}
