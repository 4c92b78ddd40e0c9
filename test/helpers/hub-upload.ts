/**
 * The write side of the fake Hub (see hub-server.ts): in-memory model repos with git-like
 * branches and commits, and exactly the endpoints @huggingface/hub 2.x calls from repoExists,
 * createRepo, createBranch, listFiles and commit (uploadFiles) with useXet: false, plus the Hub's
 * `refs` endpoint, and the read endpoints (revision, paths-info, resolve) so that a pushed branch
 * can be downloaded again with resolveModel / `gptq eval --model OWNER/NAME --revision BRANCH`.
 *
 *   GET  /api/models/{o}/{n}                       repo info (404 RepoNotFound; 401 if private, no token)
 *   POST /api/repos/create                         {name, organization, type, visibility} → initial commit
 *   GET  /api/models/{o}/{n}/refs                  {branches: [{name, ref, targetCommit}], tags, converts}
 *   POST /api/models/{o}/{n}/branch/{b}            {startingPoint?, emptyBranch?, overwrite?} (409 if it exists)
 *   GET  /api/models/{o}/{n}/tree/{rev}            ?recursive=true|false
 *   GET  /api/models/{o}/{n}/revision/{rev}        {sha}
 *   POST /api/models/{o}/{n}/paths-info/{rev}      {paths, expand}
 *   POST /api/models/{o}/{n}/preupload/{b}         {files: [{path, size, sample}]} → uploadMode lfs|regular
 *   POST /{o}/{n}.git/info/lfs/objects/batch       git-lfs batch; answers transfer "basic", an upload action
 *                                                  (a presigned-looking URL on this server) per missing object
 *   PUT  /__lfs/{oid}?X-Amz-Signature=…            object bytes (sha256 and size checked, 400 otherwise)
 *   POST /api/models/{o}/{n}/commit/{b}            NDJSON: header, file (base64), lfsFile, deletedFile;
 *                                                  parentCommit checked (412 if the branch moved)
 *   GET|HEAD /{o}/{n}/resolve/{rev}/{path}          file bytes (Range supported)
 *
 * Writes need `Authorization: Bearer <token>` when the store has a token (401 otherwise).
 */
import { createHash } from 'node:crypto';
import type * as http from 'node:http';

export interface MemFile {
  data: Buffer;
  lfs: boolean;
}
export interface MemCommit {
  oid: string;
  parent: string | null;
  branch: string;
  title: string;
  description?: string;
  files: Map<string, MemFile>;
}
export interface MemRepo {
  private: boolean;
  /** Branch name → head commit id. */
  branches: Map<string, string>;
  commits: Map<string, MemCommit>;
}
export interface HubStore {
  /** Keyed `models/owner/name`. */
  repos: Map<string, MemRepo>;
  /** LFS objects by sha256. */
  lfs: Map<string, Buffer>;
  /** Required in Authorization for writes when set. */
  token?: string;
  /** The `transfers` of every LFS batch request, in order. */
  lfsTransfers: string[][];
}

const LFS_EXT = /\.(safetensors|bin|pth|pt|model|parquet|gguf|arrow|onnx)$/;
const GITATTRIBUTES = ['*.bin filter=lfs diff=lfs merge=lfs -text', '*.model filter=lfs diff=lfs merge=lfs -text',
  '*.safetensors filter=lfs diff=lfs merge=lfs -text', 'tokenizer.json filter=lfs diff=lfs merge=lfs -text', ''].join('\n');
const DATE = '2024-01-01T00:00:00.000Z';
const sha1 = (...parts: Array<Buffer | string>) => parts.reduce((h, p) => h.update(p), createHash('sha1')).digest('hex');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitOid = (b: Buffer) => sha1(`blob ${b.length}\0`, b);

export function createHubStore(token?: string): HubStore {
  return { repos: new Map(), lfs: new Map(), token, lfsTransfers: [] };
}

/** Files of a branch (or commit) of an in-memory repo: path → bytes. */
export function branchFiles(store: HubStore, repo: string, rev: string): Map<string, Buffer> {
  const r = store.repos.get(`models/${repo}`);
  const c = r && resolveRev(r, rev);
  if (!c) throw new Error(`no ${repo}@${rev} in the fake Hub`);
  return new Map([...c.files].map(([p, f]) => [p, f.data]));
}

function resolveRev(repo: MemRepo, rev: string): MemCommit | undefined {
  const oid = repo.branches.get(rev) ?? (repo.commits.has(rev) ? rev : undefined);
  return oid === undefined ? undefined : repo.commits.get(oid);
}

function entry(p: string, f: MemFile): Record<string, unknown> {
  if (!f.lfs) return { type: 'file', path: p, size: f.data.length, oid: gitOid(f.data) };
  const pointer = Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(f.data)}\nsize ${f.data.length}\n`);
  return { type: 'file', path: p, size: f.data.length, oid: gitOid(pointer), lfs: { oid: sha256(f.data), size: f.data.length, pointerSize: pointer.length } };
}

async function body(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

type Send = (res: http.ServerResponse, status: number, body: unknown, headers?: Record<string, string>) => void;

/**
 * Handles the request if it is one of the endpoints above for an in-memory repo (or a repo
 * creation or LFS upload); resolves to false to let hub-server.ts serve it from its folders.
 */
export async function handleUpload(
  req: http.IncomingMessage, res: http.ServerResponse, url: URL, seg: string[], store: HubStore, baseUrl: string, send: Send,
): Promise<boolean> {
  const method = req.method ?? 'GET';
  const authorized = !store.token || req.headers.authorization === `Bearer ${store.token}`;
  const unauthorized = () => send(res, 401, { error: 'Invalid credentials in Authorization header' }, { 'X-Error-Code': 'Unauthorized' });
  const err = (status: number, code: string, error: string) => send(res, status, { error }, { 'X-Error-Code': code });
  const fail = (status: number, code: string, error: string) => (err(status, code, error), true);
  const denied = () => (unauthorized(), true);

  if (method === 'POST' && url.pathname === '/api/repos/create') {
    if (!authorized) return denied();
    const b = JSON.parse((await body(req)).toString('utf8')) as { name?: string; organization?: string; type?: string; visibility?: string };
    const key = `${b.type ?? 'model'}s/${b.organization}/${b.name}`;
    if (store.repos.has(key)) return fail(409, 'RepoExists', 'You already created this model repo');
    const oid = sha1(`${key} initial`);
    const files = new Map([['.gitattributes', { data: Buffer.from(GITATTRIBUTES), lfs: false }]]);
    store.repos.set(key, {
      private: b.visibility === 'private',
      branches: new Map([['main', oid]]),
      commits: new Map([[oid, { oid, parent: null, branch: 'main', title: 'initial commit', files }]]),
    });
    send(res, 200, { url: `${baseUrl}/${b.organization}/${b.name}`, name: `${b.organization}/${b.name}`, id: oid.slice(0, 24) });
    return true;
  }

  if (method === 'PUT' && seg[0] === '__lfs' && seg.length === 2) {
    const data = await body(req);
    if (!url.searchParams.get('X-Amz-Signature')) return fail(403, 'Forbidden', 'missing signature');
    if (sha256(data) !== seg[1]) return fail(400, 'BadDigest', `sha256 of the body is not ${seg[1]}`);
    store.lfs.set(seg[1], data);
    res.writeHead(200, { ETag: `"${seg[1]}"`, 'Content-Length': '0' });
    res.end();
    return true;
  }

  // /{o}/{n}.git/info/lfs/objects/batch
  if (method === 'POST' && seg.length === 6 && seg[1].endsWith('.git') && seg.slice(2).join('/') === 'info/lfs/objects/batch') {
    const repo = store.repos.get(`models/${seg[0]}/${seg[1].slice(0, -4)}`);
    if (!repo) return false;
    if (!authorized) return denied();
    const b = JSON.parse((await body(req)).toString('utf8')) as { operation: string; transfers?: string[]; objects: Array<{ oid: string; size: number }> };
    store.lfsTransfers.push(b.transfers ?? []);
    const objects = b.objects.map((o) => (store.lfs.has(o.oid)
      ? { oid: o.oid, size: o.size }
      : { oid: o.oid, size: o.size, authenticated: true, actions: { upload: { href: `${baseUrl}/__lfs/${o.oid}?X-Amz-Signature=fake`, expires_in: 3600 } } }));
    send(res, 200, { transfer: 'basic', objects }, { 'Content-Type': 'application/vnd.git-lfs+json' });
    return true;
  }

  // /api/models/{o}/{n}[/op[/rev[/rest]]]
  if (seg[0] !== 'api' || seg[1] !== 'models' || seg.length < 4) {
    // /{o}/{n}/resolve/{rev}/{path}
    if (seg.length >= 5 && seg[2] === 'resolve' && store.repos.has(`models/${seg[0]}/${seg[1]}`)) {
      const repo = store.repos.get(`models/${seg[0]}/${seg[1]}`)!;
      const c = resolveRev(repo, seg[3]);
      if (!c) return fail(404, 'RevisionNotFound', `Invalid rev id: ${seg[3]}`);
      const f = c.files.get(seg.slice(4).join('/'));
      if (!f) return fail(404, 'EntryNotFound', 'Entry not found');
      serveBytes(req, res, f, c.oid, send);
      return true;
    }
    return false;
  }
  const key = `models/${seg[2]}/${seg[3]}`;
  const repo = store.repos.get(key);
  if (!repo) return false;
  const [op, rev] = [seg[4], seg[5]];
  if (repo.private && !authorized) return fail(401, 'RepoNotFound', 'Repository not found');

  if (method === 'GET' && op === undefined) {
    send(res, 200, { id: `${seg[2]}/${seg[3]}`, private: repo.private, sha: repo.branches.get('main'), likes: 0 });
    return true;
  }
  if (method === 'GET' && op === 'refs' && seg.length === 5) {
    const branches = [...repo.branches].map(([name, oid]) => ({ name, ref: `refs/heads/${name}`, targetCommit: oid }));
    send(res, 200, { branches, tags: [], converts: [] });
    return true;
  }
  if (rev === undefined) return fail(404, 'NotFound', 'Not found');

  if (method === 'POST' && op === 'branch') {
    if (!authorized) return denied();
    const b = JSON.parse((await body(req)).toString('utf8') || '{}') as { startingPoint?: string; emptyBranch?: boolean; overwrite?: boolean };
    if (repo.branches.has(rev) && !b.overwrite) return fail(409, 'BranchExists', `Reference refs/heads/${rev} already exists`);
    if (b.emptyBranch) return fail(400, 'Unsupported', 'empty branches are not supported by the fake Hub');
    const from = resolveRev(repo, b.startingPoint ?? 'main');
    if (!from) return fail(404, 'RevisionNotFound', `Invalid rev id: ${b.startingPoint}`);
    repo.branches.set(rev, from.oid);
    send(res, 200, {});
    return true;
  }

  if (method === 'POST' && op === 'preupload') {
    if (!authorized) return denied();
    const b = JSON.parse((await body(req)).toString('utf8')) as { files: Array<{ path: string; size: number; sample: string }> };
    const files = b.files.map((f) => {
      const binary = Buffer.from(f.sample, 'base64').includes(0);
      return { path: f.path, uploadMode: LFS_EXT.test(f.path) || f.size > 10_000_000 || binary ? 'lfs' : 'regular', shouldIgnore: false };
    });
    send(res, 200, { files, commitOid: repo.branches.get(rev) });
    return true;
  }

  if (method === 'POST' && op === 'commit') {
    if (!authorized) return denied();
    const head = repo.branches.get(rev);
    if (head === undefined) return fail(404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
    const lines = (await body(req)).toString('utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as { key: string; value: Record<string, unknown> });
    const header = lines.find((l) => l.key === 'header')?.value as { summary: string; description?: string; parentCommit?: string } | undefined;
    if (!header?.summary) return fail(400, 'BadRequest', 'missing header');
    if (header.parentCommit && header.parentCommit !== head) {
      return fail(412, 'ParentCommitMismatch', 'A commit has happened since. Please refresh and try again.');
    }
    const files = new Map(repo.commits.get(head)!.files);
    for (const { key: k, value: v } of lines) {
      if (k === 'file') files.set(v.path as string, { data: Buffer.from(v.content as string, v.encoding === 'base64' ? 'base64' : 'utf8'), lfs: false });
      else if (k === 'lfsFile') {
        const data = store.lfs.get(v.oid as string);
        if (!data || data.length !== v.size) return fail(422, 'LfsObjectMissing', `LFS object ${String(v.oid)} of ${String(v.path)} was not uploaded`);
        files.set(v.path as string, { data, lfs: true });
      } else if (k === 'deletedFile') {
        if (!files.delete(v.path as string)) return fail(404, 'EntryNotFound', `${String(v.path)} does not exist on ${rev}`);
      } else if (k !== 'header') return fail(400, 'BadRequest', `unknown operation ${k}`);
    }
    const oid = sha1(`${key}`, head, JSON.stringify(lines));
    repo.commits.set(oid, { oid, parent: head, branch: rev, title: header.summary, description: header.description, files });
    repo.branches.set(rev, oid);
    send(res, 200, { success: true, commitOid: oid, commitUrl: `${baseUrl}/${seg[2]}/${seg[3]}/commit/${oid}`, hookOutput: '' });
    return true;
  }

  const c = resolveRev(repo, rev);
  if (!c) return fail(404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
  if (method === 'GET' && op === 'revision') {
    send(res, 200, { _id: c.oid.slice(0, 24), id: `${seg[2]}/${seg[3]}`, sha: c.oid, private: repo.private, gated: false, downloads: 0, likes: 0, lastModified: DATE });
    return true;
  }
  if (method === 'GET' && op === 'tree') {
    const sub = seg.slice(6).join('/');
    const recursive = url.searchParams.get('recursive') === 'true';
    const out = [...c.files].filter(([p]) => (sub === '' || p.startsWith(`${sub}/`)))
      .filter(([p]) => recursive || !p.slice(sub ? sub.length + 1 : 0).includes('/'))
      .sort(([a], [b]) => a.localeCompare(b)).map(([p, f]) => entry(p, f));
    send(res, 200, out);
    return true;
  }
  if (method === 'POST' && op === 'paths-info') {
    const b = JSON.parse((await body(req)).toString('utf8') || '{}') as { paths?: string[]; expand?: boolean };
    const out = (b.paths ?? []).filter((p) => c.files.has(p)).map((p) => ({
      ...entry(p, c.files.get(p)!), ...(b.expand && { lastCommit: { id: c.oid, title: c.title, date: DATE } }),
    }));
    send(res, 200, out);
    return true;
  }
  err(404, 'NotFound', 'Not found');
  return true;
}

function serveBytes(req: http.IncomingMessage, res: http.ServerResponse, f: MemFile, commit: string, send: Send): void {
  const size = f.data.length;
  const etag = f.lfs ? sha256(f.data) : gitOid(f.data);
  const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ETag: `"${etag}"`, 'X-Repo-Commit': commit };
  if (f.lfs) Object.assign(headers, { 'X-Linked-ETag': `"${etag}"`, 'X-Linked-Size': String(size) });
  let [start, end, status] = [0, size - 1, 200];
  const m = req.headers.range ? /^bytes=(\d*)-(\d*)$/.exec(req.headers.range.trim()) : null;
  if (m && size > 0) {
    start = m[1] === '' ? Math.max(0, size - Number(m[2])) : Number(m[1]);
    end = m[1] !== '' && m[2] !== '' ? Math.min(Number(m[2]), size - 1) : size - 1;
    if (start > end) return send(res, 416, { error: 'Range not satisfiable' }, { 'Content-Range': `bytes */${size}` });
    status = 206;
    headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
  }
  headers['Content-Length'] = String(Math.max(0, end - start + 1));
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : f.data.subarray(start, end + 1));
}
