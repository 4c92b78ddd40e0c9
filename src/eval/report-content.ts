/**
 * What a report row was measured on, by content: the sha256 of every file of the model folder
 * that the perplexity depends on (config.json, quantize_config.json, the safetensors files and
 * their index). A row of the last report is reused only when this id is unchanged; the sha256
 * of a file is recomputed unless its size and mtime are those recorded with it (a cheap check
 * first, the hash whenever the file may have changed). The manifest's recorded sha256 alone is
 * never trusted: the weights may have been changed after the build.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sha256File } from '../io/sha256-file';

export interface FileStamp {
  /** Relative to the model folder. */
  path: string;
  size: number;
  mtimeMs: number;
  sha256: string;
}

/** Files whose bytes the perplexity depends on. */
export function isContentFile(name: string): boolean {
  return name === 'config.json' || name === 'quantize_config.json' || name.endsWith('.safetensors') || name.endsWith('.safetensors.index.json');
}

/**
 * The stamps of the content files of `dir` (sorted by name; symlinks, as in the Hugging Face
 * cache, are followed). A previous stamp with the same path, size and mtime gives its sha256;
 * every other file is hashed.
 */
export async function contentStamps(dir: string, previous?: readonly FileStamp[]): Promise<FileStamp[]> {
  const list: readonly FileStamp[] = Array.isArray(previous) ? (previous as readonly FileStamp[]) : [];
  const known = new Map(list.map((s) => [s.path, s]));
  const names = (await fs.promises.readdir(dir)).filter(isContentFile).sort();
  const out: FileStamp[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const st = await fs.promises.stat(file);
    if (!st.isFile()) continue;
    const old = known.get(name);
    const sha256 = old && old.size === st.size && old.mtimeMs === st.mtimeMs && typeof old.sha256 === 'string'
      ? old.sha256
      : await sha256File(file);
    out.push({ path: name, size: st.size, mtimeMs: st.mtimeMs, sha256 });
  }
  return out;
}

/** One id for a model's content: sha256 over the (path, size, sha256) of its content files. */
export function contentId(stamps: readonly FileStamp[]): string {
  const h = createHash('sha256');
  h.update('gptq-forge report content v1\0');
  for (const s of stamps) h.update(`${s.path}\0${s.size}\0${s.sha256}\0`);
  return h.digest('hex');
}

/** sha256 of token ids (as little-endian int32): the evaluated text and tokenizer, by content. */
export function idsDigest(ids: Int32Array): string {
  const bytes = Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
  return createHash('sha256').update(bytes).digest('hex');
}
