/**
 * The Hub session and the HF cache layout behind src/hub/resolve.ts: a session (`Ctx`: endpoint,
 * token, cache folder, a fetch that stays on the Hub's host and remembers its X-Error-Code), the
 * mapping of anything the Hub or the network throws to one UserError line, revision → commit
 * (`refs/<revision>`), the check of every entry the Hub lists, and the download of one file into
 * `<cache>/<type>s--owner--name/{blobs,snapshots/<commit>,refs}` (see resolve.ts for the rules).
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  HubApiError,
  InvalidApiResponseFormatError,
  datasetInfo,
  modelInfo,
  type ListFileEntry,
  type RepoId,
} from '@huggingface/hub';
import { UsageError, UserError } from '../errors';
import { freeDiskBytes } from '../io/free-disk';
import { endpointOf, HttpTimeoutError, idleTimer, timedFetch } from './http';
import {
  COMMIT_RE, GIT_OID_RE, MAX_SMALL_FILE_SIZE, SHA256_RE, shown, unsafeRepoPath, unsafeRevision, unsafeSize,
} from './safe-names';

export type ProgressFn = (file: string, done: number, total: number) => void;

const COMMIT = COMMIT_RE;

/** A revision from the user (or a manifest) is a 40-hex commit or a git ref name; checked before any use. */
export function checkRevision(revision: string | undefined, flag = '--revision'): void {
  if (revision === undefined) return;
  const why = unsafeRevision(revision);
  if (why) throw new UsageError(`${flag} ${shown(revision)}: not a branch, tag or commit name (it ${why.replace(/^(?!is |has |contains |starts |ends |longer )/, 'is ')})`);
}

function defaultCacheDir(): string {
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

const DEFAULT_HUB = 'https://huggingface.co';

/** The Hub's base URL: HF_ENDPOINT without a trailing slash, or huggingface.co. */
export function hubEndpoint(): string {
  return process.env.HF_ENDPOINT?.trim().replace(/\/+$/, '') || DEFAULT_HUB;
}

export function makeCtx(repo: RepoId, opts: { revision?: string; cacheDir?: string }): Ctx {
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
export function common(ctx: Ctx) {
  return { hubUrl: ctx.hubUrl, accessToken: ctx.accessToken, fetch: ctx.fetch };
}

export function storageFolder(ctx: Ctx): string {
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

export async function hub<T>(ctx: Ctx, fn: () => Promise<T>, file?: string): Promise<T> {
  ctx.errorCode = undefined;
  try {
    return await fn();
  } catch (e) {
    throw toUserError(e, ctx, file);
  }
}

/** Revision (branch/tag/commit) → commit hash; records `refs/<revision>` like huggingface_hub. */
export async function resolveCommit(ctx: Ctx): Promise<string> {
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
export function checkEntry(ctx: Ctx, e: ListFileEntry, what: string): void {
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

/** Free bytes where `dir` (or its nearest parent that statfs can read) lives; undefined when unknown. */
const freeBytes = (dir: string): Promise<number | undefined> => freeDiskBytes(dir, () => true).catch(() => undefined);

const gb = (n: number) => `${(n / 1e9).toFixed(n < 1e9 ? 3 : 1)} GB`;

/**
 * Download one file of the commit into the cache (no request at all if already there), in the
 * layout huggingface_hub and @huggingface/hub use: `blobs/<etag>` (the LFS sha256, else the git
 * blob id), `snapshots/<commit>/<file>` a relative symlink to it. Every name comes from a checked
 * entry; the body is bounded by the listed size and hashed on the fly, and a file that does not
 * match its listed size and hash is never renamed into place.
 */
export async function fetchFile(ctx: Ctx, commit: string, file: string, entry: ListFileEntry, onProgress?: ProgressFn): Promise<string> {
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
