/**
 * Turn a model spec (local folder or Hub repo id `owner/name`) into a local folder, and fetch
 * single dataset files, using @huggingface/hub's own functions and the standard HF cache layout
 * (`<cache>/models--owner--name/{blobs,snapshots/<commit>,refs}`), shared with Python tools.
 *
 * Caching / resuming: we resolve the revision to a commit first and always download by commit, so
 * `downloadFileToCacheDir` returns a file already in `snapshots/<commit>/` without any request. The
 * library writes each blob to `blobs/<etag>.incomplete` and renames it only when complete; it does
 * NOT resume a partial `.incomplete` file (it truncates it), so a killed run re-downloads just the
 * file that was in flight; every finished file is kept.
 *
 * Environment (Hugging Face conventions): HF_ENDPOINT (hub URL), HF_TOKEN (never printed),
 * HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  HubApiError,
  InvalidApiResponseFormatError,
  datasetInfo,
  downloadFileToCacheDir,
  listFiles,
  modelInfo,
  type ListFileEntry,
  type RepoId,
} from '@huggingface/hub';
import { UserError } from '../errors';
import { parseLlamaConfig } from '../model/config';

export type ProgressFn = (file: string, done: number, total: number) => void;
export interface ResolveModelOptions {
  revision?: string;
  cacheDir?: string;
  onProgress?: ProgressFn;
}

const INDEX = 'model.safetensors.index.json';
const SINGLE = 'model.safetensors';
/** Fetched when the repo has them; config.json is required, weights are handled separately. */
const OPTIONAL_FILES = [
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'quantize_config.json',
];
const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const COMMIT = /^[0-9a-f]{40}$/;

export function defaultCacheDir(): string {
  const env = process.env;
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HF_HOME) return path.join(env.HF_HOME, 'hub');
  return path.join(os.homedir(), '.cache', 'huggingface', 'hub');
}

interface Ctx {
  repo: RepoId;
  revision: string;
  label: string;
  hubUrl?: string;
  accessToken?: string;
  cacheDir: string;
  fetch: typeof fetch;
  /** X-Error-Code of the last failed response (RepoNotFound, RevisionNotFound, ...). */
  errorCode?: string;
}

export const DEFAULT_HUB = 'https://huggingface.co';

/** The Hub's base URL: HF_ENDPOINT without a trailing slash, or huggingface.co. */
export function hubEndpoint(): string {
  return process.env.HF_ENDPOINT?.trim().replace(/\/+$/, '') || DEFAULT_HUB;
}

function makeCtx(repo: RepoId, opts: { revision?: string; cacheDir?: string }): Ctx {
  const ctx: Ctx = {
    repo,
    revision: opts.revision ?? 'main',
    label: `${repo.type} "${repo.name}" (revision ${opts.revision ?? 'main'})`,
    hubUrl: hubEndpoint(),
    accessToken: process.env.HF_TOKEN || undefined,
    cacheDir: opts.cacheDir ?? defaultCacheDir(),
    fetch: fetch,
  };
  // Same global fetch, but remember the Hub's X-Error-Code so errors can say what was not found.
  ctx.fetch = async (input, init) => {
    const res = await fetch(input, init);
    if (!res.ok) ctx.errorCode = res.headers.get('x-error-code') ?? undefined;
    return res;
  };
  return ctx;
}

/** The credentials/endpoint part of every library call. */
function common(ctx: Ctx) {
  return { hubUrl: ctx.hubUrl, accessToken: ctx.accessToken, fetch: ctx.fetch };
}

function storageFolder(ctx: Ctx): string {
  return path.join(ctx.cacheDir, `${ctx.repo.type}s--${ctx.repo.name.split('/').join('--')}`);
}

/** By name: fetch's errors may come from another realm (e.g. under jest), defeating instanceof. */
function isTypeError(e: unknown): e is TypeError {
  return e instanceof Error ? e.name === 'TypeError' : (e as { name?: unknown } | null)?.name === 'TypeError';
}

/** Map anything thrown while talking to the Hub to one UserError line (token scrubbed). */
function toUserError(e: unknown, ctx: Ctx, file?: string): Error {
  if (e instanceof UserError) return e;
  const host = ctx.hubUrl ?? 'https://huggingface.co';
  let msg: string | undefined;
  if (e instanceof HubApiError) {
    const status = e.statusCode;
    const code = ctx.errorCode;
    const detail = (e.data as { error?: unknown } | undefined)?.error;
    if (code === 'RevisionNotFound') msg = `revision "${ctx.revision}" not found (HTTP ${status})`;
    else if (code === 'EntryNotFound') msg = `file ${file ?? '?'} not found (HTTP ${status})`;
    else if (code === 'GatedRepo' || status === 403) {
      msg = `access denied: the repository is gated or private; accept its terms on the Hub and set HF_TOKEN (HTTP ${status})`;
    } else if (code === 'RepoNotFound' || status === 401 || (status === 404 && !file)) {
      msg = `repository not found on ${host} (or it is private and HF_TOKEN does not grant access) (HTTP ${status})`;
    } else {
      msg = `Hub request${file ? ` for ${file}` : ''} failed (HTTP ${status}${typeof detail === 'string' ? `: ${detail.slice(0, 200)}` : ''})`;
    }
  } else if (e instanceof InvalidApiResponseFormatError) {
    msg = `unexpected answer from ${host}${file ? ` for ${file}` : ''}: ${e.message}`;
  } else if (isTypeError(e) && /access token must start with/.test(e.message)) {
    return new UserError('HF_TOKEN is not a Hugging Face access token (it must start with "hf_")');
  } else if (isTypeError(e)) {
    // undici: "fetch failed" (cause: ECONNREFUSED, ENOTFOUND, ...) or "terminated" mid-body.
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    msg = `network error talking to ${host}${file ? ` while fetching ${file}` : ''}: ${cause?.code ?? cause?.message ?? e.message}`;
  } else if (typeof e === 'string') {
    // WebBlob.stream() aborts the download stream with a bare message string.
    msg = `download of ${file ?? 'a file'} failed: ${e}`;
  } else if (e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && (e as NodeJS.ErrnoException).syscall) {
    const err = e as NodeJS.ErrnoException;
    msg = `cannot write to the cache ${ctx.cacheDir}: ${err.code} (${err.path ?? err.syscall})`;
  }
  if (msg === undefined) return e instanceof Error ? e : new Error(String(e));
  let line = `${ctx.label}: ${msg}`;
  if (ctx.accessToken) line = line.split(ctx.accessToken).join('***');
  return new UserError(line);
}

async function hub<T>(ctx: Ctx, fn: () => Promise<T>, file?: string): Promise<T> {
  ctx.errorCode = undefined;
  try {
    return await fn();
  } catch (e) {
    throw toUserError(e, ctx, file);
  }
}

/** Revision (branch/tag/commit) → commit hash; records `refs/<revision>` like huggingface_hub. */
async function resolveCommit(ctx: Ctx): Promise<string> {
  const info = await hub(ctx, () => {
    const p = { ...common(ctx), name: ctx.repo.name, revision: ctx.revision, additionalFields: ['sha' as const] };
    return ctx.repo.type === 'dataset' ? datasetInfo(p) : modelInfo(p);
  });
  const sha = (info as { sha?: unknown }).sha;
  if (typeof sha !== 'string' || !COMMIT.test(sha)) {
    throw new UserError(`${ctx.label}: unexpected answer from the Hub (no commit id for the revision)`);
  }
  if (ctx.revision !== sha) {
    const ref = path.join(storageFolder(ctx), 'refs', ctx.revision);
    await hub(ctx, async () => {
      await fsp.mkdir(path.dirname(ref), { recursive: true });
      await fsp.writeFile(ref, sha);
    });
  }
  return sha;
}

/** Download one file of the commit into the cache (no request at all if already there). */
async function fetchFile(ctx: Ctx, commit: string, file: string, entry?: ListFileEntry, onProgress?: ProgressFn): Promise<string> {
  const total = entry?.size ?? 0;
  let finished = false;
  let timer: NodeJS.Timeout | undefined;
  if (onProgress) {
    onProgress(file, 0, total);
    // The library gives no progress callback; watch the size of its `.incomplete` blob instead.
    const etag = entry?.lfs?.oid ?? entry?.xetHash ?? entry?.oid;
    if (etag) {
      const partial = path.join(storageFolder(ctx), 'blobs', `${etag}.incomplete`);
      timer = setInterval(() => {
        fsp.stat(partial).then((s) => !finished && onProgress(file, s.size, total), () => undefined);
      }, 500);
      timer.unref();
    }
  }
  try {
    const local = await hub(
      ctx,
      () => downloadFileToCacheDir({ ...common(ctx), repo: ctx.repo, path: file, revision: commit, cacheDir: ctx.cacheDir }),
      file,
    );
    finished = true;
    onProgress?.(file, total, total);
    return local;
  } finally {
    finished = true;
    if (timer) clearInterval(timer);
  }
}

async function readJson(file: string, shown: string): Promise<unknown> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${shown}: invalid JSON (${(e as Error).message})`);
  }
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

function looksLikePath(spec: string): boolean {
  if (/^[.~/]/.test(spec) || spec.includes('\\') || path.isAbsolute(spec)) return true;
  if (path.sep !== '/' && spec.includes(path.sep)) return true;
  return spec.split('/').length - 1 > 1;
}

/** Local folder → itself; Hub `owner/name` → the cached snapshot folder with only what we need. */
export async function resolveModel(spec: string, opts: ResolveModelOptions = {}): Promise<string> {
  const local = expandHome(spec);
  const st = await fsp.stat(local).catch(() => null);
  if (st) {
    if (!st.isDirectory()) throw new UserError(`not a model folder (it is a file): ${spec}`);
    if (opts.revision !== undefined) throw new UserError(`a revision applies to Hub models only, not to the local folder ${spec}`);
    return path.resolve(local);
  }
  if (looksLikePath(spec)) throw new UserError(`model folder not found: ${spec}`);
  if (!spec.includes('/')) throw new UserError(`model folder not found: ${spec} (a Hub model id has the form owner/name)`);
  if (!REPO_ID.test(spec)) throw new UserError(`not a folder nor a Hub model id (owner/name): ${spec}`);

  const ctx = makeCtx({ type: 'model', name: spec }, opts);
  const commit = await resolveCommit(ctx);
  const files = new Map<string, ListFileEntry>();
  await hub(ctx, async () => {
    for await (const e of listFiles({ ...common(ctx), repo: ctx.repo, revision: commit })) {
      if (e.type === 'file') files.set(e.path, e);
    }
  });
  const get = (file: string) => fetchFile(ctx, commit, file, files.get(file), opts.onProgress);

  if (!files.has('config.json')) throw new UserError(`${ctx.label}: the repository has no config.json`);
  // Check the architecture before fetching gigabytes of weights.
  const cfgPath = await get('config.json');
  parseLlamaConfig(await readJson(cfgPath, `${spec}/config.json`), `${spec}/config.json`);

  for (const f of OPTIONAL_FILES) if (files.has(f)) await get(f);

  if (files.has(INDEX)) {
    const index = (await readJson(await get(INDEX), `${spec}/${INDEX}`)) as { weight_map?: unknown };
    const map = index?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) {
      throw new UserError(`${spec}/${INDEX}: no weight_map object`);
    }
    const shards = [...new Set(Object.values(map as Record<string, unknown>))].sort();
    for (const shard of shards) {
      if (typeof shard !== 'string' || !shard.endsWith('.safetensors')) {
        throw new UserError(`${spec}/${INDEX}: weight_map names ${JSON.stringify(shard)}, not a .safetensors file`);
      }
      if (!files.has(shard)) throw new UserError(`${ctx.label}: ${INDEX} names ${shard}, which is not in the repository`);
    }
    for (const shard of shards as string[]) await get(shard);
  } else if (files.has(SINGLE)) {
    await get(SINGLE);
  } else {
    const other = [...files.keys()].filter((f) => /\.(bin|pth|pt|gguf|ckpt|h5|msgpack)$/.test(f));
    throw new UserError(
      `${ctx.label}: no safetensors weights (${SINGLE} or ${INDEX})` +
        (other.length ? `; ${other.slice(0, 3).join(', ')}${other.length > 3 ? ', ...' : ''} are not supported` : ''),
    );
  }
  return path.join(storageFolder(ctx), 'snapshots', commit);
}

/** One file of a Hub dataset repo (e.g. `Salesforce/wikitext`, `wikitext-2-raw-v1/test-00000-of-00001.parquet`). */
export async function resolveDatasetFile(
  repo: string,
  pathInRepo: string,
  opts: { revision?: string; cacheDir?: string } = {},
): Promise<string> {
  if (!/^([A-Za-z0-9][\w.-]*\/)?[\w.-]+$/.test(repo)) throw new UserError(`not a Hub dataset id (owner/name): ${repo}`);
  const parts = pathInRepo.split('/');
  if (!pathInRepo || pathInRepo.startsWith('/') || parts.includes('..') || parts.includes('')) {
    throw new UserError(`invalid file path in dataset ${repo}: ${pathInRepo}`);
  }
  const ctx = makeCtx({ type: 'dataset', name: repo }, opts);
  const commit = await resolveCommit(ctx);
  try {
    return await fetchFile(ctx, commit, pathInRepo);
  } catch (e) {
    // paths-info answers [] for a missing path; the library turns that into a plain Error.
    if (!(e instanceof UserError) && e instanceof Error && /cannot get path info/.test(e.message)) {
      throw new UserError(`${ctx.label}: file ${pathInRepo} not found`);
    }
    throw e;
  }
}
