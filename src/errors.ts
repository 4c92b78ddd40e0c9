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
