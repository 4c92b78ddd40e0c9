/** Runs the real `gptq` binary (bin/gptq.js over dist/) as a user would. */
import { spawn, spawnSync } from 'node:child_process';
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

/**
 * The same, without blocking the event loop: needed when the test process itself serves the
 * requests of the CLI (the fake Hub of hub-server.ts), which spawnSync would starve.
 */
export function runCliAsync(args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const bin = path.resolve(__dirname, '../../bin/gptq.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gptq ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 120000} ms\n${stderr}`));
    }, opts.timeoutMs ?? 120000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
