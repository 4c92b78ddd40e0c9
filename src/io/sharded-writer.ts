/**
 * Writing a Hugging Face checkpoint folder: `model.safetensors` when the
 * tensors fit in one shard, else `model-0000i-of-0000n.safetensors` plus
 * `model.safetensors.index.json`.
 *
 * Every file is written atomically, and the shards are only renamed into
 * place once all of them are complete, then the index; a failure before that
 * leaves the folder as it was. Files of an older checkpoint that the new one
 * would leave stale (other shards, the index, a single model.safetensors) are
 * removed afterwards.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { tensorByteLength } from './dtypes';
import { atomicWriteFile } from './atomic';
import { INDEX_FILE, SINGLE_FILE } from './checkpoint';
import { fsUserError } from './fs-errors';
import { TensorSpec, compareNames } from './safetensors-header';
import { SafetensorsWriter, TensorData } from './safetensors-writer';

/** transformers' default `max_shard_size` ("5GB"). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

export interface ShardedWriteOptions {
  /** Largest sum of tensor bytes per shard (a bigger tensor gets a shard of its own). */
  maxShardBytes?: number;
  /**
   * `__metadata__` of every shard. Defaults to `{format: 'pt'}`, which
   * transformers requires to load a safetensors checkpoint.
   */
  metadata?: Record<string, string>;
}

export interface ShardedWriteResult {
  /** Paths of the safetensors files written, in shard order. */
  files: string[];
  /** Path of the index, or null when a single model.safetensors was written. */
  index: string | null;
  /** Sum of the tensors' byte lengths (the index's metadata.total_size). */
  totalSize: number;
}

const SHARD_PATTERN = /^model-\d{5}-of-\d{5}\.safetensors$/;

/**
 * Group `specs`, in their order, into shards of at most `maxShardBytes`
 * tensor bytes each (greedy, as transformers does). Always at least one group.
 */
export function planShards<T extends TensorSpec>(
  specs: readonly T[],
  maxShardBytes: number = DEFAULT_MAX_SHARD_BYTES,
): T[][] {
  if (!(maxShardBytes > 0)) throw new Error(`maxShardBytes must be positive, got ${maxShardBytes}`);
  const groups: T[][] = [];
  let current: T[] = [];
  let size = 0;
  for (const spec of specs) {
    const bytes = tensorByteLength(spec.dtype, spec.shape);
    if (current.length > 0 && size + bytes > maxShardBytes) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(spec);
    size += bytes;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  return groups;
}

/** `model.safetensors` for a single shard, else `model-00002-of-00003.safetensors` (index from 0). */
export function shardFileName(index: number, count: number): string {
  if (count === 1) return SINGLE_FILE;
  const pad = (n: number): string => String(n).padStart(5, '0');
  return `model-${pad(index + 1)}-of-${pad(count)}.safetensors`;
}

/** Write a checkpoint folder from in-memory tensors. */
export function writeShardedCheckpoint(
  dir: string,
  tensors: readonly TensorData[],
  options: ShardedWriteOptions = {},
): Promise<ShardedWriteResult> {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return writeShardedCheckpointFrom(dir, tensors, (spec) => byName.get(spec.name)!.data, options);
}

/**
 * Write a checkpoint folder whose tensors are known up front by `specs`;
 * `getData` is asked for each tensor's bytes once, in `specs` order, and only
 * one tensor is held at a time.
 */
export async function writeShardedCheckpointFrom(
  dir: string,
  specs: readonly TensorSpec[],
  getData: (spec: TensorSpec) => Promise<Uint8Array | ArrayBufferView> | Uint8Array | ArrayBufferView,
  options: ShardedWriteOptions = {},
): Promise<ShardedWriteResult> {
  const metadata = options.metadata ?? { format: 'pt' };
  const seen = new Set<string>();
  for (const { name } of specs) {
    if (seen.has(name)) throw new Error(`tensor ${JSON.stringify(name)} is listed twice`);
    seen.add(name);
  }
  const groups = planShards(specs, options.maxShardBytes);
  const names = groups.map((_, i) => shardFileName(i, groups.length));
  try {
    await fs.mkdir(dir, { recursive: true });
  } catch (err) {
    throw fsUserError(err, `cannot create folder ${dir}`);
  }

  const writers: SafetensorsWriter[] = [];
  try {
    for (let i = 0; i < groups.length; i++) {
      const writer = await SafetensorsWriter.create(path.join(dir, names[i]), groups[i], metadata);
      writers.push(writer);
      for (const spec of groups[i]) await writer.write(spec.name, await getData(spec));
      await writer.finish();
    }
    for (const writer of writers) await writer.commit();
  } catch (err) {
    await Promise.all(writers.map((w) => w.abort()));
    throw err;
  }

  const files = names.map((n) => path.join(dir, n));
  const totalSize = specs.reduce((sum, s) => sum + tensorByteLength(s.dtype, s.shape), 0);
  let index: string | null = null;
  if (groups.length > 1) {
    const weightMap: Record<string, string> = {};
    const entries = groups.flatMap((g, i) => g.map((s) => [s.name, names[i]] as const));
    entries.sort((a, b) => compareNames(a[0], b[0]));
    for (const [name, file] of entries) weightMap[name] = file;
    index = path.join(dir, INDEX_FILE);
    const json = JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2);
    await atomicWriteFile(index, `${json}\n`);
  }
  await removeStale(dir, new Set(names), groups.length > 1);
  return { files, index, totalSize };
}

/** Remove checkpoint files of `dir` that are not part of the checkpoint just written. */
async function removeStale(dir: string, keep: ReadonlySet<string>, sharded: boolean): Promise<void> {
  let entries: string[];
  try {
    entries = await fs.readdir(dir);
  } catch (err) {
    throw fsUserError(err, `cannot list ${dir}`);
  }
  for (const name of entries) {
    if (keep.has(name)) continue;
    const stale = SHARD_PATTERN.test(name) || name === (sharded ? SINGLE_FILE : INDEX_FILE);
    if (!stale) continue;
    try {
      await fs.rm(path.join(dir, name), { force: true });
    } catch (err) {
      throw fsUserError(err, `cannot remove stale ${path.join(dir, name)}`);
    }
  }
}
