/**
 * Names that come from outside (a Hub listing or answer, a `--revision`, a matrix) checked
 * before they become a path, a URL segment or a cache key. Each check returns a reason when the
 * name is foreign, undefined when it is safe.
 */

export const COMMIT_RE = /^[0-9a-f]{40}$/;
export const SHA256_RE = /^[0-9a-f]{64}$/;
/** A git blob id (sha1) as the Hub lists it in `oid`. */
export const GIT_OID_RE = /^[0-9a-f]{40}$/;

/**
 * The largest file size we accept from a Hub answer: the Hub refuses files over 50 GB; 1 TiB
 * leaves room while keeping a hostile 10^15 out.
 */
export const MAX_HUB_FILE_SIZE = 2 ** 40;
/** Files read whole into memory (config, tokenizer, index): at most this many bytes. */
export const MAX_SMALL_FILE_SIZE = 1 << 30;

/** Control characters, backslash, NUL and the like: never in a name we turn into a path. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f\\]/;

/**
 * A relative file path inside a repo: '/'-separated segments, none empty, '.' or '..', no
 * absolute path, no backslash, NUL or control character, no drive letter, each at most 255 bytes.
 */
export function unsafeRepoPath(p: unknown): string | undefined {
  if (typeof p !== 'string') return `not a string (${JSON.stringify(p)})`;
  if (p.length === 0) return 'empty';
  if (p.length > 4096) return 'longer than 4096 characters';
  if (CONTROL.test(p)) return 'contains a backslash, NUL or control character';
  if (p.startsWith('/')) return 'is an absolute path';
  if (/^[A-Za-z]:/.test(p)) return 'starts with a drive letter';
  for (const seg of p.split('/')) {
    if (seg === '') return 'has an empty path segment';
    if (seg === '.' || seg === '..') return `has a "${seg}" path segment`;
    if (Buffer.byteLength(seg) > 255) return 'has a path segment longer than 255 bytes';
  }
  return undefined;
}

/** A single path segment (a folder name made from a branch name, a repo-folder part). */
export function unsafeSegment(s: unknown): string | undefined {
  if (typeof s !== 'string') return `not a string (${JSON.stringify(s)})`;
  if (s.includes('/')) return 'contains "/"';
  return unsafeRepoPath(s);
}

/**
 * git check-ref-format's rules for a branch or tag name (a ref name such as `refs/pr/1` has
 * several components), plus a length bound: what may be written as `refs/<revision>` in the cache.
 */
export function unsafeRefName(r: string): string | undefined {
  if (r.length === 0) return 'empty';
  if (r.length > 255) return 'longer than 255 characters';
  if (r === '@') return 'is "@"';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f~^:?*[\\]/.test(r)) return 'contains a space, control character or one of ~ ^ : ? * [ \\';
  if (r.includes('..')) return 'contains ".."';
  if (r.includes('@{')) return 'contains "@{"';
  if (r.startsWith('/') || r.endsWith('/') || r.includes('//')) return 'has an empty component (a leading, trailing or double "/")';
  if (r.endsWith('.')) return 'ends with "."';
  if (r.startsWith('-')) return 'starts with "-"';
  for (const c of r.split('/')) {
    if (c.startsWith('.')) return 'has a component starting with "."';
    if (c.endsWith('.lock')) return 'has a component ending with ".lock"';
  }
  return undefined;
}

/** A revision: a 40-hex commit or a git ref name. */
export function unsafeRevision(r: unknown): string | undefined {
  if (typeof r !== 'string') return `not a string (${JSON.stringify(r)})`;
  if (COMMIT_RE.test(r)) return undefined;
  return unsafeRefName(r);
}

/** A byte size from a Hub answer: a safe integer in [0, max]. */
export function unsafeSize(n: unknown, max = MAX_HUB_FILE_SIZE): string | undefined {
  if (typeof n !== 'number' || !Number.isSafeInteger(n)) return `not an integer (${JSON.stringify(n)})`;
  if (n < 0) return `negative (${n})`;
  if (n > max) return `${n} bytes, more than the ${max} accepted`;
  return undefined;
}

/** A short, printable form of a hostile value for an error line. */
export function shown(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}
