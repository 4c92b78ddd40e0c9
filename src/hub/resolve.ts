/**
 * Turn a model spec (local folder or Hub repo id `owner/name`) into a local folder, and fetch
 * single dataset files, in the standard HF cache layout (`<cache>/models--owner--name/{blobs,
 * snapshots/<commit>,refs}`), shared with Python tools. The Hub's answers (revision → commit,
 * file listing, paths-info) come through @huggingface/hub; the files themselves are downloaded
 * here, because nothing the Hub answers is trusted (issue 12):
 *  - a `--revision` is a 40-hex commit or a git ref name (check-ref-format's rules), checked
 *    before any request; `refs/<revision>` is then written inside `refs/`;
 *  - every entry of a listing or paths-info answer is checked before any of it is used: its
 *    name a relative path of safe segments (no `..`, `.`, empty segment, absolute path, drive,
 *    backslash, NUL or control character), its object id 40 hex (git) or 64 hex (LFS sha256),
 *    its size an integer in [0, 1 TiB] (1 GiB for the files read whole: config, tokenizer,
 *    index); a foreign entry refuses the whole answer with one line;
 *  - paths are computed here (`blobs/<etag>`, `snapshots/<commit>/<file>`) and checked to stay
 *    inside the repo's cache folder; a file bigger than the free space is refused before writing;
 *  - the body goes to `blobs/<etag>.incomplete`, bounded by the listed size and hashed on the
 *    fly (sha256 for LFS, the git blob id otherwise); only a file of the listed size and hash is
 *    renamed into place, anything else is removed and is one error line;
 *  - every request has a deadline (src/hub/http.ts), the download body an idle timer, and the
 *    library's requests may not leave the Hub's host (a `Link: next` to another host is refused).
 *
 * Caching / resuming: we resolve the revision to a commit first and always download by commit, so
 * a file already in `snapshots/<commit>/` (with the listed size) needs no download. A killed run
 * re-downloads just the file that was in flight; every finished file is kept.
 *
 * Environment (Hugging Face conventions): HF_ENDPOINT (hub URL), HF_TOKEN (never printed; sent
 * to the Hub's own host only, never to a redirect elsewhere), HF_HUB_CACHE, else HF_HOME/hub,
 * else ~/.cache/huggingface/hub.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  HubApiError,
  InvalidApiResponseFormatError,
  datasetInfo,
  listFiles,
  modelInfo,
  pathsInfo,
  type ListFileEntry,
  type RepoId,
} from '@huggingface/hub';
import { UsageError, UserError } from '../errors';
import { parseLlamaConfig } from '../model/config';
import { endpointOf, HttpTimeoutError, idleTimer, timedFetch } from './http';
import {
  COMMIT_RE, GIT_OID_RE, MAX_SMALL_FILE_SIZE, SHA256_RE, shown, unsafeRepoPath, unsafeRevision, unsafeSize,
} from './safe-names';

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
const COMMIT = COMMIT_RE;

/** A revision from the user (or a manifest) is a 40-hex commit or a git ref name; checked before any use. */
export function checkRevision(revision: string | undefined, flag = '--revision'): void {
  if (revision === undefined) return;
  const why = unsafeRevision(revision);
  if (why) throw new UsageError(`${flag} ${shown(revision)}: not a branch, tag or commit name (it ${why.replace(/^(?!is |has |contains |starts |ends |longer )/, 'is ')})`);
}

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
  // Every request has a deadline (src/hub/http.ts) and stays on the Hub's own host: a listing's
  // `Link: next` pointing elsewhere would get the token.
  const origin = new URL(ctx.hubUrl ?? DEFAULT_HUB).origin;
  ctx.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    let other: string | undefined;
    try {
      other = new URL(url).origin === origin ? undefined : new URL(url).origin;
    } catch {
      other = url.slice(0, 100);
    }
    if (other !== undefined) throw new UserError(`${ctx.label}: the Hub answered with a link to another host (${other}); refusing to follow it`);
    const res = await timedFetch(input, init);
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
  if (e instanceof HttpTimeoutError) return new UserError(`${ctx.label}: ${e.message}`);
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
    checkRevision(ctx.revision);
    const ref = inside(path.join(storageFolder(ctx), 'refs'), ctx.revision.split('/'));
    await hub(ctx, async () => {
      await fsp.mkdir(path.dirname(ref), { recursive: true });
      await fsp.writeFile(ref, sha);
    });
  }
  return sha;
}

/** `base` joined with `parts`, refused if the result is not inside `base` (names are checked before; this is the last guard). */
function inside(base: string, parts: string[]): string {
  const p = path.join(base, ...parts);
  const rel = path.relative(base, p);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new UserError(`refusing a path outside ${base}: ${shown(parts.join('/'))}`);
  return p;
}

/** A file entry of a Hub answer (tree listing or paths-info), checked field by field; throws for a foreign one. */
function checkEntry(ctx: Ctx, e: ListFileEntry, what: string): void {
  const foreign = (field: string, v: unknown, why: string): never => {
    throw new UserError(`${ctx.label}: the Hub's ${what} has ${field} ${shown(v)}, which ${why}; refusing it`);
  };
  const pathWhy = unsafeRepoPath(e?.path);
  if (pathWhy) foreign('a file name', e?.path, pathWhy);
  if (e.type !== 'file' && e.type !== 'directory') foreign(`an entry type for ${e.path}`, e.type, 'is not "file" or "directory"');
  if (e.type !== 'file') return;
  const sizeWhy = unsafeSize(e.size);
  if (sizeWhy) foreign(`a size for ${e.path}`, e.size, `is ${sizeWhy}`);
  if (e.lfs !== undefined && e.lfs !== null) {
    if (typeof e.lfs.oid !== 'string' || !SHA256_RE.test(e.lfs.oid)) foreign(`an LFS object id for ${e.path}`, e.lfs.oid, 'is not a sha256 (64 hex digits)');
    const lfsWhy = unsafeSize(e.lfs.size);
    if (lfsWhy) foreign(`an LFS size for ${e.path}`, e.lfs.size, `is ${lfsWhy}`);
    if (e.lfs.size !== e.size) foreign(`an LFS size for ${e.path}`, e.lfs.size, `differs from its size ${e.size}`);
  } else if (typeof e.oid !== 'string' || !GIT_OID_RE.test(e.oid)) {
    foreign(`an object id for ${e.path}`, e.oid, 'is not a git object id (40 hex digits)');
  }
  if (e.xetHash !== undefined && e.xetHash !== null && (typeof e.xetHash !== 'string' || !SHA256_RE.test(e.xetHash))) {
    foreign(`a xet hash for ${e.path}`, e.xetHash, 'is not 64 hex digits');
  }
}

/** Free bytes where `dir` (or its nearest existing parent) lives; undefined when unknown. */
async function freeBytes(dir: string): Promise<number | undefined> {
  for (let d = dir; ; d = path.dirname(d)) {
    const st = await fsp.statfs(d).catch(() => null);
    if (st) return st.bavail * st.bsize;
    if (path.dirname(d) === d) return undefined;
  }
}

const gb = (n: number) => `${(n / 1e9).toFixed(n < 1e9 ? 3 : 1)} GB`;

/**
 * Download one file of the commit into the cache (no request at all if already there), in the
 * layout huggingface_hub and @huggingface/hub use: `blobs/<etag>` (the LFS sha256, else the git
 * blob id), `snapshots/<commit>/<file>` a relative symlink to it. Every name comes from a checked
 * entry; the body is bounded by the listed size and hashed on the fly, and a file that does not
 * match its listed size and hash is never renamed into place.
 */
async function fetchFile(ctx: Ctx, commit: string, file: string, entry: ListFileEntry, onProgress?: ProgressFn): Promise<string> {
  checkEntry(ctx, entry, 'file listing');
  if (entry.path !== file || entry.type !== 'file') throw new UserError(`${ctx.label}: the Hub's answer for ${file} describes ${shown(entry.path)}; refusing it`);
  if (!COMMIT.test(commit)) throw new UserError(`${ctx.label}: unexpected commit id ${shown(commit)}`);
  const storage = storageFolder(ctx);
  const pointer = inside(path.join(storage, 'snapshots'), [commit, ...file.split('/')]);
  const total = entry.size;
  const st = await fsp.stat(pointer).catch(() => null);
  if (st) {
    if (!st.isFile() || st.size !== total) {
      throw new UserError(`${ctx.label}: the cached ${pointer} has ${st.isFile() ? `${st.size} bytes` : 'no file'}, the Hub lists ${total} bytes; remove it to download it again`);
    }
    return pointer;
  }
  const lfs = entry.lfs ?? undefined;
  const etag = (lfs ? lfs.oid : entry.oid) as string;
  const blob = inside(path.join(storage, 'blobs'), [etag]);
  const big = /\.(safetensors|parquet)$/.test(file);
  const sizeWhy = unsafeSize(total, big ? undefined : MAX_SMALL_FILE_SIZE);
  if (sizeWhy) throw new UserError(`${ctx.label}: the Hub lists ${file} at ${sizeWhy}; refusing to download it`);

  return hub(ctx, async () => {
    const have = await fsp.stat(blob).catch(() => null);
    if (!(have?.isFile() && have.size === total)) {
      const free = await freeBytes(ctx.cacheDir);
      if (free !== undefined && total > free) {
        throw new UserError(`${ctx.label}: ${file} is ${gb(total)}, the cache ${ctx.cacheDir} has ${gb(free)} free; nothing was downloaded`);
      }
      await download(ctx, commit, file, total, etag, lfs ? 'sha256' : 'git', blob, onProgress);
    }
    await fsp.mkdir(path.dirname(pointer), { recursive: true });
    const old = await fsp.lstat(pointer).catch(() => null);
    if (old?.isSymbolicLink()) await fsp.unlink(pointer); // a dangling link of an earlier run
    try {
      await fsp.symlink(path.relative(path.dirname(pointer), blob), pointer);
    } catch {
      await fsp.copyFile(blob, pointer);
    }
    return pointer;
  }, file);
}

/** GET the file's resolve URL (redirects followed by hand, the token only to the Hub) into `blob`. */
async function download(
  ctx: Ctx, commit: string, file: string, total: number, etag: string, hashKind: 'sha256' | 'git', blob: string, onProgress?: ProgressFn,
): Promise<void> {
  const hubUrl = ctx.hubUrl ?? DEFAULT_HUB;
  const hubOrigin = new URL(hubUrl).origin;
  const prefix = ctx.repo.type === 'dataset' ? 'datasets/' : '';
  let url = `${hubUrl}/${prefix}${ctx.repo.name}/resolve/${commit}/${file.split('/').map(encodeURIComponent).join('/')}`;
  const ctl = new AbortController();
  let res: Response | undefined;
  for (let hop = 0; ; hop++) {
    const headers: Record<string, string> = {};
    if (ctx.accessToken && new URL(url).origin === hubOrigin) headers.Authorization = `Bearer ${ctx.accessToken}`;
    ctx.errorCode = undefined;
    res = await timedFetch(url, { headers, redirect: 'manual', signal: ctl.signal }, { bodyDeadline: false });
    if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
      await res.body?.cancel().catch(() => undefined);
      if (hop >= 5) throw new UserError(`${ctx.label}: too many redirects while fetching ${file}`);
      const next = new URL(res.headers.get('location')!, url);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new UserError(`${ctx.label}: the Hub redirected ${file} to ${shown(next.protocol)}; refusing it`);
      url = next.href;
      continue;
    }
    break;
  }
  if (!res.ok) {
    ctx.errorCode = res.headers.get('x-error-code') ?? undefined;
    await res.body?.cancel().catch(() => undefined);
    throw new HubApiError(url, res.status, res.headers.get('x-request-id') ?? undefined);
  }
  const len = res.headers.get('content-length');
  if (len !== null && Number(len) !== total) {
    await res.body?.cancel().catch(() => undefined);
    throw new UserError(`${ctx.label}: the Hub sends ${shown(len)} bytes for ${file}, its listing says ${total}; nothing was written`);
  }
  const incomplete = `${blob}.incomplete`;
  await fsp.mkdir(path.dirname(blob), { recursive: true });
  const h = createHash(hashKind === 'sha256' ? 'sha256' : 'sha1');
  if (hashKind === 'git') h.update(`blob ${total}\0`);
  let done = 0;
  let dead: Error | undefined;
  const timer = idleTimer(`GET ${endpointOf(url)}`, (e) => {
    dead = e;
    ctl.abort(e);
  });
  // As @huggingface/hub logs it (the CLI shows console.debug on stderr unless --quiet).
  console.debug(`Downloading ${file} to ${incomplete}`);
  const out = await fsp.open(incomplete, 'w');
  let ok = false;
  let lastShown = 0;
  onProgress?.(file, 0, total);
  try {
    timer.arm();
    if (res.body) {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        timer.arm();
        done += chunk.length;
        if (done > total) throw new UserError(`${ctx.label}: the Hub sends more than the ${total} bytes its listing gives ${file}; stopped and removed the partial file`);
        h.update(chunk);
        await out.write(chunk);
        const now = Date.now();
        if (onProgress && now - lastShown >= 500) {
          lastShown = now;
          onProgress(file, done, total);
        }
      }
    }
    if (done !== total) throw new UserError(`${ctx.label}: ${file} ended after ${done} of its ${total} bytes; removed the partial file`);
    const digest = h.digest('hex');
    if (digest !== etag) {
      throw new UserError(`${ctx.label}: the downloaded ${file} has ${hashKind === 'sha256' ? 'sha256' : 'git object id'} ${digest}, the Hub lists ${etag}; removed it`);
    }
    ok = true;
  } catch (e) {
    throw dead ?? e;
  } finally {
    timer.clear();
    await out.close().catch(() => undefined);
    if (!ok) await fsp.rm(incomplete, { force: true }).catch(() => undefined);
  }
  await fsp.rename(incomplete, blob);
  onProgress?.(file, total, total);
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
  checkRevision(opts.revision);
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
      // Every entry is checked, used or not: a listing with a foreign name is not the Hub's.
      checkEntry(ctx, e, 'file listing');
      if (files.has(e.path)) throw new UserError(`${ctx.label}: the Hub's file listing names ${shown(e.path)} twice; refusing it`);
      if (e.type === 'file') files.set(e.path, e);
      // A folder under the name of a file this loader reads would make that file seem absent.
      else if (['config.json', INDEX, ...OPTIONAL_FILES].includes(e.path) || /\.safetensors$/.test(e.path)) {
        throw new UserError(`${ctx.label}: the Hub's file listing says ${shown(e.path)} is a folder; refusing it`);
      }
    }
  });
  const get = (file: string) => fetchFile(ctx, commit, file, files.get(file)!, opts.onProgress);

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
        throw new UserError(`${spec}/${INDEX}: weight_map names ${shown(shard)}, not a .safetensors file`);
      }
      const why = unsafeRepoPath(shard);
      if (why) throw new UserError(`${spec}/${INDEX}: weight_map names ${shown(shard)}, which ${why}; refusing it`);
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
  if (!/^([A-Za-z0-9][\w.-]*\/)?[\w.-]+$/.test(repo) || repo.split('/').some((p) => p === '..' || p === '.')) {
    throw new UserError(`not a Hub dataset id (owner/name): ${repo}`);
  }
  if (unsafeRepoPath(pathInRepo)) {
    throw new UserError(`invalid file path in dataset ${repo}: ${pathInRepo}`);
  }
  checkRevision(opts.revision);
  const ctx = makeCtx({ type: 'dataset', name: repo }, opts);
  const commit = await resolveCommit(ctx);
  const pointer = path.join(storageFolder(ctx), 'snapshots', commit, ...pathInRepo.split('/'));
  const infos = await hub(ctx, () => pathsInfo({ ...common(ctx), repo: ctx.repo, revision: commit, paths: [pathInRepo] }), pathInRepo);
  if (!Array.isArray(infos) || infos.length === 0) {
    // paths-info answers [] for a missing path.
    if (await fsp.stat(pointer).catch(() => null)) throw new UserError(`${ctx.label}: file ${pathInRepo} not found (the cache has it, the Hub no longer lists it)`);
    throw new UserError(`${ctx.label}: file ${pathInRepo} not found`);
  }
  for (const e of infos) checkEntry(ctx, e as ListFileEntry, 'paths-info answer');
  if (infos.length !== 1 || infos[0].path !== pathInRepo || infos[0].type !== 'file') {
    throw new UserError(`${ctx.label}: the Hub's paths-info answer for ${pathInRepo} describes ${shown(infos.map((i) => i.path))}; refusing it`);
  }
  return fetchFile(ctx, commit, pathInRepo, infos[0] as ListFileEntry);
}
