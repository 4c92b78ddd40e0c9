/**
 * `gptq push`: upload finished branches to a Hub model repo with @huggingface/hub.
 *
 * Requests, in order (all under HF_ENDPOINT, default https://huggingface.co):
 *   GET  /api/models/{repo}?expand[]=likes            repoExists
 *   POST /api/repos/create                           createRepo, when it does not exist
 *   GET  /api/models/{repo}/refs                      branches and their head commits (our own call:
 *                                                     the library has no listBranches)
 *   POST /api/models/{repo}/branch/{branch}           createBranch from main's head, when missing
 *   GET  /api/models/{repo}/tree/{commit}?recursive   listFiles: what the branch holds now
 *   POST /api/models/{repo}/preupload/{branch}        commit: which files go to LFS
 *   POST /{repo}.git/info/lfs/objects/batch          commit: LFS batch (transfers basic, multipart;
 *                                                     Xet is turned off with useXet: false)
 *   PUT  <upload href from the batch answer>          commit: one per LFS object the Hub lacks
 *   POST /api/models/{repo}/commit/{branch}           commit: NDJSON header + files + lfsFiles +
 *                                                     deletedFiles, with parentCommit = the head read
 *
 * One commit per branch: the branch's files (manifest.json included), the model card, and the
 * deletion of files left from main or an earlier push that the branch does not have. Files the
 * branch already holds with the same content are not sent again; a branch already up to date gets
 * no commit. The token (HF_TOKEN) goes only into Authorization headers; every message is scrubbed.
 */
import { openAsBlob } from 'node:fs';
import {
  HubApiError,
  InvalidApiResponseFormatError,
  commitIter,
  createBranch,
  createRepo,
  listFiles,
  repoExists,
  type CommitOperation,
  type ListFileEntry,
  type RepoId,
} from '@huggingface/hub';
import { UserError } from '../errors';
import { timedFetch } from './http';
import { hubEndpoint } from './download';
import { COMMIT_RE, GIT_OID_RE, SHA256_RE, shown, unsafeRefName, unsafeRepoPath, unsafeSize } from './safe-names';
import { UploadFile } from './push-branches';

/** The Hub's repo id rules (huggingface_hub's validate_repo_id), namespace required. */
const PART = /^[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9_])?$/;

export function checkRepoName(repo: string): void {
  const parts = repo.split('/');
  const ok = parts.length === 2 && parts.every((p) => PART.test(p)) && !repo.includes('--') && !repo.includes('..') && !repo.endsWith('.git');
  if (!ok) {
    throw new UserError(`--repo ${JSON.stringify(repo)} is not a Hub repo name: use OWNER/NAME (letters, digits, "-", "_", ".", at most 96 each, no "--" or "..")`);
  }
}

/** HF_TOKEN, checked before any request. */
export function hubToken(): string {
  const t = process.env.HF_TOKEN?.trim();
  if (!t) throw new UserError('HF_TOKEN is not set: pushing needs a Hugging Face access token with write access (https://huggingface.co/settings/tokens)');
  if (!t.startsWith('hf_')) throw new UserError('HF_TOKEN is not a Hugging Face access token (it must start with "hf_")');
  return t;
}

export interface RemoteFile {
  size: number;
  oid: string;
  lfsOid?: string;
}

export type PushEvent =
  | { kind: 'phase'; phase: 'preuploading' | 'uploadingLargeFiles' | 'committing' }
  | { kind: 'file'; path: string; progress: number; state: 'hashing' | 'uploading' | 'error' };

/** A push session: endpoint, token and a fetch that remembers what each request was. */
export class HubPusher {
  readonly repo: RepoId;
  readonly hubUrl: string;
  private readonly token: string;
  private readonly methods = new Map<string, string>();

  constructor(repoName: string, token: string, hubUrl = hubEndpoint()) {
    this.repo = { type: 'model', name: repoName };
    this.hubUrl = hubUrl;
    this.token = token;
  }

  private readonly fetch: typeof fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = init?.method ?? 'GET';
    this.methods.set(url, method);
    try {
      // A deadline per request, a line on stderr when slow, one error when dead (src/hub/http.ts).
      return await timedFetch(input, init);
    } catch (e) {
      if (e instanceof UserError) throw new UserError(this.scrub(e.message));
      if ((e as Error)?.name === 'AbortError') throw e;
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new UserError(this.scrub(`network error on ${method} ${endpoint(url)}: ${cause?.code ?? cause?.message ?? (e as Error).message}`));
    }
  };

  private get common() {
    return { hubUrl: this.hubUrl, accessToken: this.token, fetch: this.fetch };
  }

  private scrub(s: string): string {
    return s.split(this.token).join('***');
  }

  /** Any failure → one UserError line: HTTP status, method and endpoint, the Hub's message; no token. */
  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof UserError) throw new UserError(this.scrub(`${what}: ${e.message}`));
      if (e instanceof HubApiError) {
        const method = this.methods.get(e.url) ?? '';
        const detail = e.message.replace(/\. URL: .*$/s, '').replace(/^Api error with status \d+\.? ?/, '').slice(0, 300);
        const hint = e.statusCode === 401 ? ' (HF_TOKEN is invalid or expired)'
          : e.statusCode === 403 ? ` (HF_TOKEN has no write access to ${this.repo.name})` : '';
        throw new UserError(this.scrub(`${what}: HTTP ${e.statusCode} on ${method} ${endpoint(e.url)}${detail ? `: ${detail}` : ''}${hint}`));
      }
      if (e instanceof InvalidApiResponseFormatError) throw new UserError(this.scrub(`${what}: unexpected answer from ${this.hubUrl}: ${e.message}`));
      if (e instanceof Error) throw new UserError(this.scrub(`${what}: ${e.message.split('\n')[0]}`));
      throw new UserError(this.scrub(`${what}: ${String(e)}`));
    }
  }

  /** Creates the repo if it does not exist; true when it was created. */
  async ensureRepo(visibility: 'private' | undefined): Promise<boolean> {
    const exists = await this.call(`checking ${this.repo.name}`, () => repoExists({ ...this.common, repo: this.repo }));
    if (exists) return false;
    await this.call(`creating ${this.repo.name}`, () => createRepo({ ...this.common, repo: this.repo, visibility }));
    return true;
  }

  /** Branch name → head commit. */
  async branches(): Promise<Map<string, string>> {
    const url = `${this.hubUrl}/api/models/${this.repo.name}/refs`;
    const json = await this.call(`listing the branches of ${this.repo.name}`, async () => {
      const res = await this.fetch(url, { headers: { Authorization: `Bearer ${this.token}` } });
      if (!res.ok) {
        const e = new HubApiError(res.url || url, res.status, res.headers.get('X-Request-Id') ?? undefined);
        const body = await res.text();
        try {
          e.message = (JSON.parse(body) as { error?: string }).error ?? '';
        } catch {
          e.message = body.slice(0, 200);
        }
        throw e;
      }
      return (await res.json()) as { branches?: Array<{ name?: unknown; targetCommit?: unknown }> };
    });
    const out = new Map<string, string>();
    if (json === null || typeof json !== 'object' || (json.branches !== undefined && !Array.isArray(json.branches))) {
      throw new UserError(`listing the branches of ${this.repo.name}: unexpected answer from ${this.hubUrl} (no branches array)`);
    }
    for (const b of json.branches ?? []) {
      // Names and commits from the Hub go into URLs and commit headers: only well-formed ones.
      const why = typeof b?.name === 'string' ? unsafeRefName(b.name) : 'is not a string';
      if (why) throw new UserError(`listing the branches of ${this.repo.name}: the Hub answered a branch name ${shown(b?.name)}, which ${why}; refusing it`);
      if (typeof b.targetCommit !== 'string' || !COMMIT_RE.test(b.targetCommit)) {
        throw new UserError(`listing the branches of ${this.repo.name}: the Hub answered ${shown(b.targetCommit)} as the head of ${String(b.name)}, not a commit id; refusing it`);
      }
      out.set(b.name as string, b.targetCommit);
    }
    if (!out.has('main')) throw new UserError(`${this.repo.name} has no main branch (the Hub answered ${[...out.keys()].join(', ') || 'no branches'})`);
    return out;
  }

  async createBranch(branch: string, fromCommit: string): Promise<void> {
    await this.call(`creating branch ${branch}`, () => createBranch({ ...this.common, repo: this.repo, branch, revision: fromCommit }));
  }

  /** Files of a revision, by path. */
  async files(revision: string): Promise<Map<string, RemoteFile>> {
    const out = new Map<string, RemoteFile>();
    await this.call(`listing the files of ${revision}`, async () => {
      for await (const e of listFiles({ ...this.common, repo: this.repo, revision, recursive: true })) {
        const why = checkRemoteEntry(e);
        if (why) throw new UserError(`the Hub's file listing has ${why}; refusing it`);
        if (e.type === 'file') out.set(e.path, remoteFile(e));
      }
    });
    return out;
  }

  /** One commit on `branch`: add/replace `files`, delete `deletes`; resolves to the new commit id. */
  async commit(
    branch: string, parentCommit: string, title: string, description: string,
    files: UploadFile[], deletes: string[], onEvent?: (e: PushEvent) => void,
  ): Promise<string> {
    return this.call(`pushing branch ${branch}`, async () => {
      const operations: CommitOperation[] = [];
      for (const f of files) {
        // A lazy Blob over the file: read while hashing and sending, never held whole in memory;
        // reading fails if the file changes after this point.
        const content = f.content ? new Blob([f.content]) : await openAsBlob(f.abs!);
        operations.push({ operation: 'addOrUpdate', path: f.path, content });
      }
      for (const p of deletes) operations.push({ operation: 'delete', path: p });
      const it = commitIter({
        ...this.common, repo: this.repo, branch, parentCommit, title, description, operations,
        useXet: false, // plain LFS (basic / multipart PUT), no Xet
      });
      let r = await it.next();
      while (!r.done) {
        const ev = r.value;
        if (ev.event === 'phase') onEvent?.({ kind: 'phase', phase: ev.phase });
        else onEvent?.({ kind: 'file', path: ev.path, progress: ev.progress, state: ev.state });
        r = await it.next();
      }
      const oid = r.value?.commit.oid;
      if (typeof oid !== 'string' || !COMMIT_RE.test(oid)) throw new InvalidApiResponseFormatError('the commit answer has no commitOid');
      return oid;
    });
  }
}

/** Why a listing entry is foreign (a name that is no repo path, a bad size or object id), or undefined. */
function checkRemoteEntry(e: ListFileEntry): string | undefined {
  const p = unsafeRepoPath(e?.path);
  if (p) return `a file name ${shown(e?.path)}, which ${p}`;
  if (e.type !== 'file') return undefined;
  const size = unsafeSize(e.size);
  if (size) return `a size for ${e.path} that is ${size}`;
  if (e.lfs) {
    if (typeof e.lfs.oid !== 'string' || !SHA256_RE.test(e.lfs.oid)) return `an LFS object id ${shown(e.lfs.oid)} for ${e.path}, not a sha256`;
  } else if (typeof e.oid !== 'string' || !GIT_OID_RE.test(e.oid)) {
    return `an object id ${shown(e.oid)} for ${e.path}, not a git object id`;
  }
  return undefined;
}

function remoteFile(e: ListFileEntry): RemoteFile {
  return { size: e.size, oid: e.oid ?? '', lfsOid: e.lfs?.oid };
}

/** URL without its query (presigned upload URLs carry credentials there). */
function endpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return url.split('?')[0];
  }
}

/** True when the Hub already holds exactly this file at this path. */
export function sameFile(local: UploadFile, remote: RemoteFile | undefined): boolean {
  if (!remote || remote.size !== local.size) return false;
  return remote.lfsOid !== undefined ? remote.lfsOid === local.sha256 : remote.oid === local.gitOid;
}

/** Remote files to delete so that the branch holds exactly `keep` (.gitattributes stays). */
export function staleFiles(remote: Map<string, RemoteFile>, keep: UploadFile[]): string[] {
  const names = new Set(keep.map((f) => f.path));
  return [...remote.keys()].filter((p) => !names.has(p) && p !== '.gitattributes').sort();
}
