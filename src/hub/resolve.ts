/**
 * Turn a model spec (local folder or Hub repo id `owner/name`) into a local folder, and fetch
 * single dataset files, in the standard HF cache layout (`<cache>/models--owner--name/{blobs,
 * snapshots/<commit>,refs}`), shared with Python tools. The Hub's answers (revision → commit,
 * file listing, paths-info) come through @huggingface/hub; the files themselves are downloaded
 * here (src/hub/download.ts: the Hub session, revision → commit, entry checks, the download
 * into the cache), because nothing the Hub answers is trusted (issue 12):
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
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { listFiles, pathsInfo, type ListFileEntry } from '@huggingface/hub';
import { UserError } from '../errors';
import { parseLlamaConfig } from '../model/config';
import {
  checkEntry, checkRevision, common, fetchFile, hub, makeCtx, resolveCommit, storageFolder, type ProgressFn,
} from './download';
import { shown, unsafeRepoPath } from './safe-names';

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
