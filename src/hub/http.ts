/**
 * Every network call of the tool goes through `timedFetch`: the global fetch with
 *  - a deadline for the answer's headers: GPTQ_FORGE_HTTP_TIMEOUT_MS (default 30 s), plus the
 *    time to send the request's body at 256 KiB/s when it has one of a known size (an upload);
 *  - the same deadline again for the body of the answer to arrive (JSON answers are small; the
 *    downloads of src/hub/download.ts read their bodies with their own idle timer, `idleTimer`);
 *  - one progress line on stderr after a few seconds of silence (GPTQ_FORGE_HTTP_SLOW_MS,
 *    default 5 s, at most half the timeout), and one UserError line when the deadline passes.
 */
import { UserError } from '../errors';

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_SLOW_MS = 5_000;
const UPLOAD_BYTES_PER_S = 256 * 1024;

function envMs(name: string, dflt: number): number {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v : dflt;
}

export function httpTimeoutMs(): number {
  return envMs('GPTQ_FORGE_HTTP_TIMEOUT_MS', DEFAULT_TIMEOUT_MS);
}

export function httpSlowMs(): number {
  return Math.min(envMs('GPTQ_FORGE_HTTP_SLOW_MS', DEFAULT_SLOW_MS), httpTimeoutMs() / 2);
}

const seconds = (ms: number) => `${+(ms / 1000).toFixed(1)} s`;

/** URL without its query (presigned upload URLs carry credentials there). */
export function endpointOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return url.split('?')[0];
  }
}

export class HttpTimeoutError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'HttpTimeoutError';
  }
}

function bodySize(body: unknown): number {
  if (body === undefined || body === null) return 0;
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof ArrayBuffer) return body.byteLength;
  if (ArrayBuffer.isView(body)) return body.byteLength;
  const size = (body as { size?: unknown }).size;
  return typeof size === 'number' && Number.isFinite(size) ? size : 0;
}

/** A timer that says once when it has been quiet for `slowMs`, and fails after `timeoutMs`. */
export function idleTimer(what: string, onDead: (e: Error) => void, timeoutMs = httpTimeoutMs()) {
  let slowT: NodeJS.Timeout | undefined;
  let deadT: NodeJS.Timeout | undefined;
  let warned = false;
  const clear = () => {
    if (slowT) clearTimeout(slowT);
    if (deadT) clearTimeout(deadT);
  };
  const arm = (ms = timeoutMs) => {
    clear();
    const slow = Math.min(httpSlowMs(), ms / 2);
    slowT = setTimeout(() => {
      if (!warned) process.stderr.write(`gptq: waiting for ${what}: no answer for ${seconds(slow)} (gives up after ${seconds(ms)})\n`);
      warned = true;
    }, slow);
    deadT = setTimeout(() => {
      onDead(new HttpTimeoutError(`no answer from ${what} in ${seconds(ms)}: the server is not responding (GPTQ_FORGE_HTTP_TIMEOUT_MS sets the wait)`));
    }, ms);
    slowT.unref();
    deadT.unref();
  };
  return { arm, clear };
}

/** fetch with the deadlines above; a dead server becomes an HttpTimeoutError (a UserError). */
export async function timedFetch(
  input: string | URL | Request, init: RequestInit = {}, opts: { bodyDeadline?: boolean } = {},
): Promise<Response> {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const method = init.method ?? (input instanceof Request ? input.method : 'GET');
  const what = `${method} ${endpointOf(url)}`;
  const ctl = new AbortController();
  let dead: Error | undefined;
  // The caller's signal (a download's own idle timer) still reaches the body after the headers.
  const signal = init.signal ? AbortSignal.any([init.signal, ctl.signal]) : ctl.signal;
  const timer = idleTimer(what, (e) => {
    dead = e;
    ctl.abort(e);
  });
  timer.arm(httpTimeoutMs() + (bodySize(init.body) / UPLOAD_BYTES_PER_S) * 1000);
  try {
    const res = await fetch(input, { ...init, signal });
    // The body gets its own deadline, which ends once the body has been read; the abort
    // reaches a body still being read.
    if (opts.bodyDeadline === false || res.body === null) timer.clear();
    else {
      timer.arm();
      clearWhenRead(res, timer.clear);
    }
    return res;
  } catch (e) {
    timer.clear();
    if (dead) throw dead;
    if (init.signal?.aborted && init.signal.reason instanceof Error) throw init.signal.reason;
    throw e;
  }
}

const BODY_READERS = ['arrayBuffer', 'blob', 'bytes', 'formData', 'json', 'text'] as const;

/**
 * Ends the body's deadline when one of the methods that read the whole body settles. Without
 * this the timer of an answer read long ago would still say "no answer" (and abort) when the
 * process runs on for longer than the deadline, e.g. through an evaluation after a download.
 */
function clearWhenRead(res: Response, clear: () => void): void {
  for (const name of BODY_READERS) {
    const read: unknown = Reflect.get(res, name);
    if (typeof read !== 'function') continue;
    const wrapped = (...args: unknown[]): Promise<unknown> => Promise.resolve(Reflect.apply(read, res, args)).finally(clear);
    Object.defineProperty(res, name, { value: wrapped, configurable: true, writable: true });
  }
}
