/**
 * Progress on stderr: a cli-progress bar on a terminal; elsewhere (CI logs, pipes) a plain
 * line at most every few seconds, so logs show that long work is moving.
 */
import * as cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number, label: string): void;
  stop(): void;
}

export function createProgress(title: string, opts: { quiet?: boolean } = {}): Progress {
  if (opts.quiet) return { update() {}, stop() {} };
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: `${title} [{bar}] {percentage}% | {value}/{total} | {label} | ETA {eta_formatted}`,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(done, total, label) {
        if (!started) {
          bar.start(total, 0, { label });
          started = true;
        }
        bar.setTotal(total);
        bar.update(done, { label });
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let last = 0;
  const t0 = Date.now();
  return {
    update(done, total, label) {
      const now = Date.now();
      if (now - last < 5000 && done < total) return;
      last = now;
      const secs = ((now - t0) / 1000).toFixed(0);
      process.stderr.write(`${title}: ${done}/${total} ${label} (${secs} s)\n`);
    },
    stop() {},
  };
}
