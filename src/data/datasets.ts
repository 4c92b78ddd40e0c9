/**
 * Dataset text: a local .txt/.raw file, a local .parquet (column `text`, rows joined), or a
 * named dataset of datasets/registry.json fetched from the Hugging Face Hub, as parquet files or
 * gzipped JSON-lines shards (`.json.gz`, C4's format).
 */
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { arrayRows, JSONL_GZ_EXTENSION, readJsonlGzRows, TextRows } from './rows';

export type Split = 'train' | 'validation' | 'test';
export const SPLITS: readonly Split[] = ['train', 'validation', 'test'];

/** Fetches a file of a Hub dataset repo and returns its local path. */
export type DatasetDownload = (repo: string, pathInRepo: string, revision?: string) => Promise<string>;

/**
 * How the GPTQ reference code draws calibration windows from a dataset: `text` from the rows
 * joined into one token stream (get_wikitext2), `documents` one window from each drawn row that is
 * long enough (get_c4). See src/data/calibration.ts.
 */
export type CalibrationKind = 'text' | 'documents';
export const CALIBRATION_KINDS: readonly CalibrationKind[] = ['text', 'documents'];

export interface DatasetEntry {
  description: string;
  /** Hub dataset repo, e.g. `Salesforce/wikitext`. */
  repo: string;
  config: string;
  /** File per split, relative to the repo root: `.parquet`, or `.json.gz` (gzipped JSON lines). */
  files: Partial<Record<Split, string>>;
  /** Parquet column, or JSON field, holding the text of a row. */
  textColumn: string;
  /** Rows are joined with this (the GPTQ reference code: `"\n\n".join(data['text'])`). */
  joiner: string;
  /** Default `text`. */
  calibration?: CalibrationKind;
  /**
   * The evaluation protocol when it is not "all rows of the test split": the default split, and
   * either the joined text cut into windows — the number of leading rows joined (`valdata[:1100]`)
   * and the most windows evaluated (`valenc[:, :(256 * seqlen)]`, get_c4_new) — or, with
   * `sample: "documents"`, `windows` windows each drawn from a document of the split by the
   * get_c4 sampler after `random.seed(seed)` (get_c4's valenc; src/data/calibration.ts).
   */
  eval?: { split?: Split; rows?: number; windows?: number; sample?: 'documents'; seed?: number };
}

export interface LoadDatasetOptions {
  /** Split of a registry dataset (default: its `eval.split`, else `test`); ignored for local files. */
  split?: Split;
  /** Hub revision (branch, tag or commit) of a registry dataset. */
  revision?: string;
  /** Defaults to `resolveDatasetFile` of src/hub/resolve. */
  download?: DatasetDownload;
  /** Only the first rows of a registry dataset. */
  maxRows?: number;
}

const TEXT_EXTENSIONS = ['.txt', '.raw', '.tokens'];
const PARQUET_EXTENSION = '.parquet';

let registryCache: Record<string, DatasetEntry> | undefined;

/** The named datasets of datasets/registry.json (same relative place from src/data and dist/data). */
export function datasetRegistry(): Record<string, DatasetEntry> {
  if (!registryCache) {
    const file = path.resolve(__dirname, '../../datasets/registry.json');
    const reg = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, DatasetEntry>;
    for (const [name, e] of Object.entries(reg)) {
      const problem = entryProblem(e);
      if (problem) throw new Error(`${file}: entry ${name} ${problem}`);
    }
    registryCache = reg;
  }
  return registryCache;
}

const isCount = (v: unknown) => v === undefined || (typeof v === 'number' && Number.isSafeInteger(v) && v > 0);

/** What is wrong with a registry entry, or undefined. */
export function entryProblem(e: DatasetEntry): string | undefined {
  if (typeof e.repo !== 'string' || typeof e.textColumn !== 'string' || typeof e.joiner !== 'string') return 'is incomplete';
  const files = Object.entries(e.files ?? {});
  if (files.length === 0) return 'has no files';
  for (const [split, f] of files) {
    if (!SPLITS.includes(split as Split)) return `has a file for an unknown split "${split}"`;
    if (typeof f !== 'string' || rowFormat(f) === undefined) return `has a ${split} file that is neither .parquet nor ${JSONL_GZ_EXTENSION}`;
  }
  if (e.calibration !== undefined && !CALIBRATION_KINDS.includes(e.calibration)) return `has an unknown calibration "${String(e.calibration)}"`;
  if (e.eval !== undefined) {
    if (e.eval.split !== undefined && typeof e.files[e.eval.split] !== 'string') return `has no file for its eval split "${e.eval.split}"`;
    if (!isCount(e.eval.rows) || !isCount(e.eval.windows)) return 'has eval rows/windows that are not positive integers';
    if (e.eval.sample !== undefined) {
      if (e.eval.sample !== 'documents') return `has an unknown eval sample "${String(e.eval.sample)}"`;
      if (e.eval.windows === undefined || e.eval.rows !== undefined) return 'has an eval sample of documents without windows, or with rows';
      if (!Number.isSafeInteger(e.eval.seed)) return 'has an eval sample of documents without an integer seed';
    } else if (e.eval.seed !== undefined) return 'has an eval seed without an eval sample';
  }
  return undefined;
}

function rowFormat(file: string): 'parquet' | 'jsonl.gz' | undefined {
  const f = file.toLowerCase();
  if (f.endsWith(PARQUET_EXTENSION)) return 'parquet';
  if (f.endsWith(JSONL_GZ_EXTENSION)) return 'jsonl.gz';
  return undefined;
}

/** The registry entry `spec` names (a name that is not path-like), or undefined for a file. */
export function registryDataset(spec: string): { name: string; entry: DatasetEntry } | undefined {
  const registry = datasetRegistry();
  if (isPathLike(spec)) return undefined;
  return Object.prototype.hasOwnProperty.call(registry, spec) ? { name: spec, entry: registry[spec] } : undefined;
}

export async function loadDatasetText(spec: string, opts: LoadDatasetOptions = {}): Promise<{ text: string; source: string }> {
  const named = registryDataset(spec);
  if (named) return loadRegistryDataset(named.name, named.entry, opts);

  if (fs.existsSync(spec)) return loadLocalFile(spec);
  if (!isPathLike(spec)) {
    const names = Object.keys(datasetRegistry()).join(', ');
    throw new UserError(`unknown dataset "${spec}" (not a file either); known datasets: ${names}`);
  }
  throw new UserError(`dataset file not found: ${spec}`);
}

/** A spec with a slash or a dataset file's extension is a file, never a registry name. */
function isPathLike(spec: string): boolean {
  return /[\\/]/.test(spec) || hasKnownExtension(spec);
}

function hasKnownExtension(p: string): boolean {
  const ext = path.extname(p).toLowerCase();
  return ext === PARQUET_EXTENSION || TEXT_EXTENSIONS.includes(ext);
}

async function loadRegistryDataset(name: string, e: DatasetEntry, opts: LoadDatasetOptions): Promise<{ text: string; source: string }> {
  const { rows, source } = await loadDatasetRows(name, e, opts);
  const parts: string[] = [];
  for (let i = 0; i < rows.count; i++) parts.push(rows.text(i));
  return { text: parts.join(e.joiner), source };
}

/** The local file of one split of a registry dataset (downloaded through `opts.download`), with where it came from. */
export async function locateDatasetFile(
  name: string, e: DatasetEntry, opts: LoadDatasetOptions = {},
): Promise<{ file: string; split: Split; pathInRepo: string; source: string }> {
  const split = opts.split ?? e.eval?.split ?? 'test';
  if (!SPLITS.includes(split)) throw new UserError(`unknown split "${split}" (expected ${SPLITS.join(', ')})`);
  const pathInRepo = e.files[split];
  if (pathInRepo === undefined) {
    throw new UserError(`dataset "${name}" has no ${split} split (it has ${Object.keys(e.files).join(', ')})`);
  }
  const download = opts.download ?? defaultDownload;
  const file = await download(e.repo, pathInRepo, opts.revision);
  if (!fs.existsSync(file)) throw new UserError(`dataset file not found: ${file}`);
  const at = opts.revision ? `@${opts.revision}` : '';
  return { file, split, pathInRepo, source: `${name}:${split} = hf://datasets/${e.repo}${at}/${pathInRepo}` };
}

/** The rows of a dataset file located by locateDatasetFile (`opts.maxRows`: only the first rows). */
export async function readDatasetRows(file: string, pathInRepo: string, e: DatasetEntry, opts: { maxRows?: number } = {}): Promise<TextRows> {
  return rowFormat(pathInRepo) === 'parquet'
    ? arrayRows((await readParquetRows(file, e.textColumn)).slice(0, opts.maxRows))
    : readJsonlGzRows(file, e.textColumn, { maxRows: opts.maxRows });
}

/** The rows of one split of a registry dataset (downloaded through `opts.download`), with where they came from. */
export async function loadDatasetRows(name: string, e: DatasetEntry, opts: LoadDatasetOptions = {}): Promise<{ rows: TextRows; source: string }> {
  const { file, pathInRepo, source } = await locateDatasetFile(name, e, opts);
  return { rows: await readDatasetRows(file, pathInRepo, e, { maxRows: opts.maxRows }), source };
}

/** Lazily bound so that this module does not depend on src/hub at load time. */
const defaultDownload: DatasetDownload = (repo, pathInRepo, revision) => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const hub = require('../hub/resolve') as {
    resolveDatasetFile(repo: string, pathInRepo: string, opts: { revision?: string }): Promise<string>;
  };
  return hub.resolveDatasetFile(repo, pathInRepo, { revision });
};

async function loadLocalFile(file: string): Promise<{ text: string; source: string }> {
  const abs = path.resolve(file);
  const st = fs.statSync(abs);
  if (!st.isFile()) throw new UserError(`${file}: is not a file (a .txt, .raw or .parquet dataset file is expected)`);
  const ext = path.extname(file).toLowerCase();
  if (ext === PARQUET_EXTENSION) return { text: await readParquetText(file, 'text', '\n\n'), source: abs };
  if (TEXT_EXTENSIONS.includes(ext)) return { text: readUtf8File(file), source: abs };
  throw new UserError(`${file}: unsupported dataset file type "${ext}" (expected ${[...TEXT_EXTENSIONS, PARQUET_EXTENSION].join(', ')})`);
}

/** The whole file as UTF-8 (a BOM is kept, as Python's `utf-8` codec does); UserError on invalid bytes. */
export function readUtf8File(file: string): string {
  const bytes = fs.readFileSync(file);
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new UserError(`${file}: not UTF-8 text (invalid byte at offset ${firstInvalidUtf8(bytes)})`);
  }
}

/** Offset of the first byte that starts an invalid UTF-8 sequence (Python's error position), or -1. */
export function firstInvalidUtf8(b: Uint8Array): number {
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // > U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return i;
      const d = b[i + k];
      if (d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

/** The parts of hyparquet this module uses (required at run time: ESM, loadable by require in node >= 20.19 and jest). */
interface Hyparquet {
  parquetMetadata(buf: ArrayBuffer): object;
  parquetSchema(md: object): { children: { element: { name: string } }[] };
  parquetReadObjects(opts: { file: ArrayBuffer; metadata?: object; columns?: string[] }): Promise<Record<string, unknown>[]>;
}

function hyparquet(): Hyparquet {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('hyparquet') as Hyparquet;
}

/** Reads one string column of a parquet file and joins its rows. */
export async function readParquetText(file: string, column: string, joiner: string): Promise<string> {
  return (await readParquetRows(file, column)).join(joiner);
}

/** Reads one string column of a parquet file, row by row. */
async function readParquetRows(file: string, column: string): Promise<string[]> {
  const buf = fs.readFileSync(file);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  const hp = hyparquet();
  let metadata: object;
  let columns: string[];
  try {
    metadata = hp.parquetMetadata(ab);
    columns = hp.parquetSchema(metadata).children.map((c) => c.element.name);
  } catch (e) {
    throw new UserError(`${file}: not a readable parquet file (${(e as Error).message})`);
  }
  if (!columns.includes(column)) {
    throw new UserError(`${file}: no column "${column}" in the parquet file (columns: ${columns.join(', ') || 'none'})`);
  }
  let rows: Record<string, unknown>[];
  try {
    rows = await hp.parquetReadObjects({ file: ab, metadata, columns: [column] });
  } catch (e) {
    throw new UserError(`${file}: cannot read column "${column}" (${(e as Error).message})`);
  }
  const decoder = new TextDecoder('utf-8');
  return rows.map((r, i) => {
    const v = r[column];
    if (typeof v === 'string') return v;
    if (v instanceof Uint8Array) return decoder.decode(v);
    throw new UserError(`${file}: row ${i} of column "${column}" is ${v === null ? 'null' : typeof v}, not text`);
  });
}
