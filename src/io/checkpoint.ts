/**
 * A Hugging Face model folder's weights: `model.safetensors.index.json` and
 * its shards, or a single `model.safetensors`.
 *
 * Every shard's header is read and checked against the index on open, so that
 * a broken checkpoint fails at once and `info` can stay synchronous; the
 * shards' files are opened for data on their first `read` and kept open.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { errorCode, fsUserError } from './fs-errors';
import { SafetensorsFile, TensorInfo } from './safetensors-reader';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** How many shard headers are read at the same time. */
const OPEN_CONCURRENCY = 8;

async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw fsUserError(err, `cannot read ${file}`);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

interface ParsedIndex {
  metadata: Record<string, unknown>;
  /** Tensor name to shard file name (relative to the folder). */
  weightMap: Map<string, string>;
}

async function readIndex(indexPath: string): Promise<ParsedIndex> {
  let text: string;
  try {
    text = await fs.readFile(indexPath, 'utf8');
  } catch (err) {
    throw fsUserError(err, `cannot read ${indexPath}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    const msg = (err as Error).message.split('\n')[0].slice(0, 200);
    throw new UserError(`${indexPath}: not valid JSON (${msg})`);
  }
  if (!isPlainObject(json)) throw new UserError(`${indexPath}: not a JSON object`);
  if (!isPlainObject(json.weight_map)) throw new UserError(`${indexPath}: "weight_map" is missing or not an object`);
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(json.weight_map)) {
    if (typeof file !== 'string' || file === '') {
      throw new UserError(`${indexPath}: weight_map[${JSON.stringify(name)}] is not a file name`);
    }
    const normal = path.normalize(file);
    if (path.isAbsolute(file) || normal === '..' || normal.startsWith(`..${path.sep}`)) {
      throw new UserError(
        `${indexPath}: weight_map[${JSON.stringify(name)}] points outside the model folder (${JSON.stringify(file)})`,
      );
    }
    weightMap.set(name, file);
  }
  const metadata = isPlainObject(json.metadata) ? json.metadata : {};
  return { metadata, weightMap };
}

/** Run `fn` on every item, at most `limit` at a time; rejects on the first failure. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export class Checkpoint {
  private constructor(
    /** The model folder, as given. */
    readonly dir: string,
    /** The index's "metadata" (e.g. total_size), or the single file's `__metadata__`. */
    readonly metadata: Readonly<Record<string, unknown>>,
    /** Tensor name to the shard that holds it. */
    private readonly where: ReadonlyMap<string, SafetensorsFile>,
    private readonly shards: readonly SafetensorsFile[],
  ) {}

  static async open(dir: string): Promise<Checkpoint> {
    let st;
    try {
      st = await fs.stat(dir);
    } catch (err) {
      if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') {
        throw new UserError(`model folder not found: ${dir}`);
      }
      throw fsUserError(err, `cannot open model folder ${dir}`);
    }
    if (!st.isDirectory()) throw new UserError(`model folder ${dir} is not a folder`);

    const indexPath = path.join(dir, INDEX_FILE);
    if (await exists(indexPath)) return Checkpoint.openIndexed(dir, indexPath);
    const single = path.join(dir, SINGLE_FILE);
    if (!(await exists(single))) throw new UserError(`no ${SINGLE_FILE} or ${INDEX_FILE} in ${dir}`);
    const file = await SafetensorsFile.open(single, { lazy: true });
    const where = new Map(file.names().map((n) => [n, file]));
    return new Checkpoint(dir, file.metadata, where, [file]);
  }

  private static async openIndexed(dir: string, indexPath: string): Promise<Checkpoint> {
    const { metadata, weightMap } = await readIndex(indexPath);
    // The first tensor that names each shard, for error messages.
    const firstTensor = new Map<string, string>();
    for (const [name, file] of weightMap) if (!firstTensor.has(file)) firstTensor.set(file, name);
    const shardNames = [...firstTensor.keys()].sort();
    for (const shard of shardNames) {
      if (!(await exists(path.join(dir, shard)))) {
        throw new UserError(
          `${indexPath} names shard ${JSON.stringify(shard)} (for tensor ${JSON.stringify(firstTensor.get(shard))}), ` +
            `which is missing from ${dir}`,
        );
      }
    }
    const opened = new Map<string, SafetensorsFile>();
    try {
      await forEachLimited(shardNames, OPEN_CONCURRENCY, async (shard) => {
        opened.set(shard, await SafetensorsFile.open(path.join(dir, shard), { lazy: true }));
      });
      const where = new Map<string, SafetensorsFile>();
      for (const [name, shard] of weightMap) {
        const file = opened.get(shard)!;
        if (!file.has(name)) {
          throw new UserError(
            `${indexPath}: tensor ${JSON.stringify(name)} is listed in shard ${JSON.stringify(shard)}, ` +
              `but that file does not contain it`,
          );
        }
        where.set(name, file);
      }
      return new Checkpoint(dir, metadata, where, shardNames.map((s) => opened.get(s)!));
    } catch (err) {
      await Promise.all([...opened.values()].map((f) => f.close().catch(() => undefined)));
      throw err;
    }
  }

  /** Tensor names: in index order, or in file order for a single file. */
  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): TensorInfo {
    return this.shard(name).info(name);
  }

  /** The tensor's raw bytes, read from its shard. */
  read(name: string): Promise<Buffer> {
    return this.shard(name).read(name);
  }

  /** Part of a tensor's raw bytes (see SafetensorsFile.readSlice). */
  readSlice(name: string, start: number, length: number): Promise<Buffer> {
    return this.shard(name).readSlice(name, start, length);
  }

  /** Paths of the safetensors files of this checkpoint, sorted. */
  files(): string[] {
    return this.shards.map((s) => s.path);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }

  private shard(name: string): SafetensorsFile {
    const file = this.where.get(name);
    if (!file) throw new UserError(`${this.dir}: the checkpoint has no tensor named ${JSON.stringify(name)}`);
    return file;
  }
}
