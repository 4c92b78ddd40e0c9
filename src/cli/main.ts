/** The `gptq` program: one sub-command per file in src/cli/. */
import { Command, CommanderError } from 'commander';
import { USAGE_EXIT_CODE, UsageError, UserError } from '../errors';
import { checkOptionSettings } from './options';
import { registerBranches } from './branches';
import { registerEval } from './eval';
import { registerExportOnnx } from './export-onnx';
import { registerPush } from './push';
import { registerQuantize } from './quantize';
import { registerReport } from './report';
import { registerVerify } from './verify';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json lies outside rootDir (src/), so it cannot be imported
const VERSION = (require('../../package.json') as { version: string }).version;

/** Control characters (newlines included) as spaces, runs of white space as one. */
function oneLine(s: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are what it replaces
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029]+/g, ' ').replace(/ {2,}/g, ' ').trim();
}

/** One line for any error: the message of a user error, a short description otherwise. */
export function describeError(e: unknown): string {
  // A message may quote a file's bytes (a JSON parser's snippet): always one line of text.
  if (e instanceof UserError) return oneLine(e.message);
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') return `no space left on device (${oneLine(e.message)})`;
    const first = oneLine(e.message.split('\n')[0]);
    if (process.env.GPTQ_FORGE_DEBUG) return `${first}\n${e.stack ?? ''}`;
    return `${first} (set GPTQ_FORGE_DEBUG=1 for a stack trace)`;
  }
  return String(e);
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('gptq')
    .description('Produce and validate GPTQ branches of Llama models')
    .version(VERSION)
    // commander's own usage errors as ours: one line, "gptq: error: …", exit 2
    .configureOutput({
      outputError: (str, write) => write(`gptq: ${str.trim().replace(/\s*\n\s*/g, ' ')} (run with --help for usage)\n`),
    })
    .exitOverride()
    // every setting of every command checked by its one rule (src/gptq/settings.ts) before the
    // command does anything: a bad value or combination is a UsageError naming the flag
    .hook('preAction', (_program, command) => checkOptionSettings(command));
  registerEval(program);
  registerExportOnnx(program);
  registerQuantize(program);
  registerBranches(program);
  registerReport(program);
  registerVerify(program);
  registerPush(program);
  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function run(argv: string[]): Promise<number> {
  // stdout carries results (--json); libraries' chatter (@huggingface/hub logs each download
  // with console.debug) goes to stderr with the progress output.
  // --quiet (every command has it) silences that chatter too.
  console.debug = argv.includes('--quiet') ? () => undefined : (...args: unknown[]) => console.error(...args);
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed its message (usage errors, --help, --version).
      return e.exitCode === 0 ? 0 : USAGE_EXIT_CODE;
    }
    if (e instanceof UsageError) {
      // A bad flag value or combination: one line, exit 2 (as commander's own usage errors).
      process.stderr.write(`gptq: error: ${describeError(e)}\n`);
      return USAGE_EXIT_CODE;
    }
    throw e;
  }
}
