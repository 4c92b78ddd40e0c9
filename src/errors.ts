/**
 * An error caused by what the user gave us (a path, a flag, a file's contents).
 * The CLI prints its message as one line and exits non-zero, without a stack.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * A usage error: a bad flag value or a bad combination of flags (or of a matrix entry's
 * settings). The CLI prints its message as one line and exits 2, as commander's own usage
 * errors do. The message should name the flag, e.g. "--damp: expected a number in (0, 1), got 0".
 */
export class UsageError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The exit code of a usage error (README: "2 for usage errors"). */
export const USAGE_EXIT_CODE = 2;
