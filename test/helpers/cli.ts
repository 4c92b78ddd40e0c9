/** Runs the real `gptq` binary (bin/gptq.js over dist/) as a user would. */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const bin = path.resolve(__dirname, '../../bin/gptq.js');
  const r = spawnSync(process.execPath, [bin, ...args], {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120000,
    env: { ...process.env, ...opts.env },
  });
  if (r.error) throw r.error; // a timeout is a hang: fail loudly
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
