import { UserError } from '../errors';

/** Reasons for the file-system errors a user can cause (bad path, full disk...). */
const REASONS: Record<string, string> = {
  ENOENT: 'no such file or folder',
  ENOTDIR: 'a part of the path is not a folder',
  EISDIR: 'it is a folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the file system',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EEXIST: 'already exists',
  EIO: 'input/output error',
  EXDEV: 'cannot rename across file systems',
};

export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * `err` as a one-line UserError `<what>: <reason>` when it is a file-system
 * error the user can fix; UserErrors and anything else come back unchanged.
 */
export function fsUserError(err: unknown, what: string): unknown {
  if (err instanceof UserError) return err;
  const code = errorCode(err);
  const reason = code === undefined ? undefined : REASONS[code];
  return reason === undefined ? err : new UserError(`${what}: ${reason}`);
}
