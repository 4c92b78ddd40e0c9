/**
 * A local stand-in for the Hugging Face Hub (node:http on 127.0.0.1, port 0): no test touches the
 * internet. It implements exactly the Hub endpoints @huggingface/hub 2.x calls.
 *
 * Read side, serving snapshot folders in the Hub's URL layout (modelInfo/datasetInfo, listFiles,
 * downloadFileToCacheDir (paths-info + resolve) and fileExists):
 *
 *   GET  /api/{models|datasets}/{owner}/{name}/revision/{rev}          repo info with `sha`
 *   GET  /api/{models|datasets}/{owner}/{name}/tree/{rev}[/{dir}]      ?recursive=true|false
 *   POST /api/{models|datasets}/{owner}/{name}/paths-info/{rev}        body {paths, expand}
 *   GET|HEAD /{owner}/{name}/{resolve|raw}/{rev}/{path}                Range, ETag, X-Repo-Commit
 *   GET|HEAD /datasets/{owner}/{name}/{resolve|raw}/{rev}/{path}
 *
 * Write side (hub-upload.ts), for `gptq push`: in-memory model repos created through the server
 * (repoExists, createRepo, the `refs` listing, createBranch, listFiles, and commit's preupload,
 * LFS batch, LFS object PUT and NDJSON commit), with commits stored per branch in `store`; a
 * pushed repo is readable through the read endpoints above too.
 *
 * Errors as the Hub gives them: 404 + `X-Error-Code: RepoNotFound | RevisionNotFound |
 * EntryNotFound` and a JSON `{"error": ...}` body. Every revision of a folder repo serves the same
 * folder; each has its own fake commit id, which is accepted as a revision too.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { createHubStore, handleUpload, type HubStore } from './hub-upload';

export interface HubRepoSpec {
  dir: string;
  revisions?: string[];
}
export interface HubRequest {
  method: string;
  path: string;
  query: string;
  authorization?: string;
  range?: string;
}
export interface HubServer {
  url: string;
  /** Path (no query) of every request, in order. */
  requests: string[];
  /** The same requests with method, query and the headers tests care about. */
  log: HubRequest[];
  /** Body bytes sent per file, keyed `models/owner/name/file` or `datasets/owner/name/file`. */
  bytesServed: Record<string, number>;
  /** The in-memory repos written through the upload endpoints. */
  store: HubStore;
  close(): Promise<void>;
}

interface FileInfo {
  path: string;
  size: number;
  oid: string;
  lfs?: { oid: string; size: number; pointerSize: number };
}

const LFS_EXT = /\.(safetensors|bin|pth|pt|model|parquet|gguf|arrow)$/;
const DATE = '2024-01-01T00:00:00.000Z';
const sha1 = (b: Buffer | string) => createHash('sha1').update(b).digest('hex');

export function commitFor(repoKey: string, revision: string): string {
  return sha1(`${repoKey}@${revision}`);
}

async function fileInfo(abs: string, rel: string): Promise<FileInfo> {
  const data = await fsp.readFile(abs);
  const gitBlob = (b: Buffer) => sha1(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b]));
  if (!LFS_EXT.test(rel)) return { path: rel, size: data.length, oid: gitBlob(data) };
  const sha256 = createHash('sha256').update(data).digest('hex');
  const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${data.length}\n`);
  return { path: rel, size: data.length, oid: gitBlob(pointer), lfs: { oid: sha256, size: data.length, pointerSize: pointer.length } };
}

/** Entries under `sub` (repo-relative, '' for the root), like the tree API. */
async function listTree(root: string, sub: string, recursive: boolean): Promise<Array<Record<string, unknown>>> {
  const out: Array<Record<string, unknown>> = [];
  const walk = async (rel: string) => {
    const dirents = await fsp.readdir(path.join(root, rel), { withFileTypes: true });
    for (const d of dirents.sort((a, b) => a.name.localeCompare(b.name))) {
      const p = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) {
        out.push({ type: 'directory', oid: sha1(p), size: 0, path: p });
        if (recursive) await walk(p);
      } else if (d.isFile()) {
        out.push({ type: 'file', ...(await fileInfo(path.join(root, p), p)) });
      }
    }
  };
  await walk(sub);
  return out;
}

export interface HubServerOptions {
  /** When set, write requests must carry `Authorization: Bearer <token>` (401 otherwise). */
  token?: string;
  /**
   * Hostile modes (tests of what the CLI does with a server it must not trust). `intercept` sees
   * every request first and answers it itself when it returns true (e.g. never answers at all);
   * `mutateJson` rewrites the JSON of the read endpoints; `mutateFile` replaces the bytes and
   * headers a resolve answer sends (the Content-Length follows the new bytes unless set).
   */
  intercept?: (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => boolean | Promise<boolean>;
  mutateJson?: (op: 'revision' | 'tree' | 'paths-info', body: unknown, repoKey: string) => unknown;
  mutateFile?: (repoKey: string, rel: string, data: Buffer) => { data?: Buffer; headers?: Record<string, string> } | undefined;
}

export async function startHubServer(repos: Record<string, HubRepoSpec>, opts: HubServerOptions = {}): Promise<HubServer> {
  const store = createHubStore(opts.token);
  let baseUrl = '';
  const requests: string[] = [];
  const log: HubRequest[] = [];
  const bytesServed: Record<string, number> = {};

  const json = (op: 'revision' | 'tree' | 'paths-info', body: unknown, repoKey: string) => (opts.mutateJson ? opts.mutateJson(op, body, repoKey) : body);
  const send = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  };
  const notFound = (res: http.ServerResponse, code: string, error: string) => send(res, 404, { error }, { 'X-Error-Code': code });

  /** Find repo + commit, or answer 404 like the Hub and return undefined. */
  const lookup = (res: http.ServerResponse, kind: string, owner: string, name: string, rev: string) => {
    const key = `${kind}/${owner}/${name}`;
    const spec = repos[key];
    if (!spec) return void notFound(res, 'RepoNotFound', 'Repository not found');
    const revisions = spec.revisions ?? ['main'];
    const named = rev === 'HEAD' ? revisions[0] : revisions.find((r) => r === rev || commitFor(key, r) === rev);
    if (!named) return void notFound(res, 'RevisionNotFound', `Invalid rev id: ${rev}`);
    return { key, dir: path.resolve(spec.dir), commit: commitFor(key, named) };
  };

  const resolveFile = async (req: http.IncomingMessage, res: http.ServerResponse, repo: { key: string; dir: string; commit: string }, rel: string) => {
    const abs = path.join(repo.dir, rel);
    const st = rel.split('/').includes('..') ? null : await fsp.stat(abs).catch(() => null);
    if (!st || !st.isFile()) return notFound(res, 'EntryNotFound', 'Entry not found');
    const info = await fileInfo(abs, rel);
    const size = st.size;
    const headers: Record<string, string> = {
      'Content-Type': 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      ETag: `"${info.lfs?.oid ?? info.oid}"`,
      'X-Repo-Commit': repo.commit,
    };
    if (info.lfs) Object.assign(headers, { 'X-Linked-ETag': `"${info.lfs.oid}"`, 'X-Linked-Size': String(size) });
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    if (range) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) return send(res, 416, { error: 'Invalid range' }, { 'Content-Range': `bytes */${size}` });
      if (m[1] === '') start = Math.max(0, size - Number(m[2]));
      else {
        start = Number(m[1]);
        end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
      }
      if (size === 0) {
        // Not HTTP-exact, but tells the library the size of an empty file.
        res.writeHead(206, { ...headers, 'Content-Range': 'bytes */0', 'Content-Length': '0' });
        return void res.end();
      }
      if (start >= size || start > end) return send(res, 416, { error: 'Range not satisfiable' }, { 'Content-Range': `bytes */${size}` });
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    headers['Content-Length'] = String(Math.max(0, end - start + 1));
    const mutated = opts.mutateFile?.(repo.key, rel, await fsp.readFile(abs));
    if (mutated) {
      const data = (mutated.data ?? (await fsp.readFile(abs))).subarray(start, range ? end + 1 : undefined);
      res.writeHead(status, { ...headers, 'Content-Length': String(data.length), ...mutated.headers });
      if (req.method === 'HEAD') return void res.end();
      res.end(data);
      return;
    }
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || size === 0) return void res.end();
    const counter = `${repo.key}/${rel}`;
    bytesServed[counter] ??= 0;
    const stream = createReadStream(abs, { start, end });
    stream.on('data', (chunk) => (bytesServed[counter] += chunk.length));
    stream.pipe(res);
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    requests.push(url.pathname);
    log.push({
      method,
      path: url.pathname,
      query: url.search,
      authorization: req.headers.authorization,
      range: req.headers.range,
    });
    const seg = url.pathname.split('/').slice(1).map((s) => decodeURIComponent(s));
    let m: RegExpMatchArray | null;
    const joined = seg.join('\u0000');
    if (opts.intercept && (await opts.intercept(req, res, url))) return;
    if (await handleUpload(req, res, url, seg, store, baseUrl, send)) return;

    // /api/{models|datasets}/{owner}/{name}/{revision|tree|paths-info}/{rev}[/...]
    if (seg[0] === 'api' && (seg[1] === 'models' || seg[1] === 'datasets') && seg.length >= 6) {
      const [, kind, owner, name, op, rev] = seg;
      const rest = seg.slice(6).join('/');
      if (op === 'revision' && method === 'GET' && !rest) {
        const repo = lookup(res, kind, owner, name, rev);
        if (!repo) return;
        return send(res, 200, json('revision', {
          _id: repo.commit.slice(0, 24), id: `${owner}/${name}`, sha: repo.commit, private: false, gated: false,
          downloads: 0, likes: 0, lastModified: DATE, ...(kind === 'models' && { pipeline_tag: 'text-generation' }),
        }, repo.key));
      }
      if (op === 'tree' && method === 'GET') {
        const repo = lookup(res, kind, owner, name, rev);
        if (!repo) return;
        const st = rest.split('/').includes('..') ? null : await fsp.stat(path.join(repo.dir, rest)).catch(() => null);
        if (!st?.isDirectory()) return notFound(res, 'EntryNotFound', `${rest} does not exist on "${rev}"`);
        return send(res, 200, json('tree', await listTree(repo.dir, rest, url.searchParams.get('recursive') === 'true'), repo.key));
      }
      if (op === 'paths-info' && method === 'POST' && !rest) {
        const repo = lookup(res, kind, owner, name, rev);
        if (!repo) return;
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as { paths?: string[]; expand?: boolean };
        const out: Array<Record<string, unknown>> = [];
        for (const p of body.paths ?? []) {
          const abs = path.join(repo.dir, p);
          const st = p.split('/').includes('..') ? null : await fsp.stat(abs).catch(() => null);
          if (!st) continue; // the Hub silently leaves out missing paths
          const entry = st.isDirectory() ? { type: 'directory', oid: sha1(p), size: 0, path: p } : { type: 'file', ...(await fileInfo(abs, p)) };
          out.push(body.expand ? { ...entry, lastCommit: { id: repo.commit, title: 'Upload', date: DATE } } : entry);
        }
        return send(res, 200, json('paths-info', out, repo.key));
      }
      return send(res, 404, { error: 'Not found' });
    }

    // [/datasets]/{owner}/{name}/{resolve|raw}/{rev}/{path...}
    // eslint-disable-next-line no-control-regex -- NUL separates the path's segments (see `joined`)
    if ((m = /^(?:(datasets)\u0000)?([^\u0000]+)\u0000([^\u0000]+)\u0000(resolve|raw)\u0000([^\u0000]+)\u0000(.+)$/.exec(joined))) {
      if (method !== 'GET' && method !== 'HEAD') return send(res, 405, { error: 'Method not allowed' });
      const repo = lookup(res, m[1] ?? 'models', m[2], m[3], m[5]);
      if (!repo) return;
      return resolveFile(req, res, repo, m[6].split('\u0000').join('/'));
    }
    return send(res, 404, { error: 'Not found' });
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) send(res, 500, { error: String(e) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}`;
  return {
    url: baseUrl,
    requests,
    log,
    bytesServed,
    store,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
