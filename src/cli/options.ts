/** Option parsers shared by the commands (commander reports their errors as usage errors). */
import { Command, InvalidArgumentError, Option } from 'commander';
import { UsageError } from '../errors';
import { recipeProblem, recipesHelp } from '../gptq/recipes';
import { checkSetting, comboProblem, SETTING_RULES, SettingName } from '../gptq/settings';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n <= 0) {
    throw new InvalidArgumentError('expected a positive integer.');
  }
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError('expected a non-negative integer.');
  }
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new InvalidArgumentError('expected a non-negative number.');
  }
  return n;
}

/** `--device cpu|cuda` (default: cuda where the addon has it and a GPU is visible). */
export function deviceOption(what = 'quantization engine'): Option {
  return new Option('--device <device>', `${what} (default: cuda when a CUDA device is visible, else cpu)`).choices(['cpu', 'cuda']);
}

/** `--recipe <name>` (src/gptq/recipes.ts): an unknown name is a usage error listing the known ones. */
export function recipeOption(what: string): Option {
  return new Option('--recipe <name>', `named set of quality settings applied ${what} (see Recipes below); explicit flags and keys override it`)
    .argParser((v: string) => {
      const problem = recipeProblem(v);
      if (problem !== undefined) throw new InvalidArgumentError(`${problem}.`);
      return v;
    });
}

/** The epilog of a command with --recipe: each recipe, what it sets and its cost. */
export function recipesHelpText(): string {
  return `\nRecipes (--recipe):\n${recipesHelp()}\n`;
}

/**
 * Checks the parsed options of `command` that are settings with a rule in src/gptq/settings.ts
 * (bits, group size, damping, QEP's and GPTAQ's α, seqlen, nsamples, seed, max windows) and the refused
 * combinations; throws a UsageError (exit 2) naming the flag as the user typed it. Options left
 * undefined (optional overrides) are not checked. Runs before every command's action.
 */
export function checkOptionSettings(command: Command): void {
  const opts = command.opts<Record<string, unknown>>();
  const flagOf = (key: string): string | undefined => command.options.find((o) => o.attributeName() === key)?.long;
  for (const name of Object.keys(SETTING_RULES) as SettingName[]) {
    const flag = flagOf(name);
    if (flag === undefined || opts[name] === undefined) continue;
    checkSetting(name, opts[name], flag);
  }
  if (flagOf('groupSize') !== undefined && typeof opts.groupSize === 'number') {
    const problem = comboProblem({
      groupSize: opts.groupSize,
      staticGroups: flagOf('staticGroups') !== undefined ? !!opts.staticGroups : undefined,
      sym: flagOf('sym') !== undefined ? opts.sym !== false : undefined,
      qep: typeof opts.qep === 'number' ? opts.qep : undefined,
      gptaq: typeof opts.gptaq === 'number' ? opts.gptaq : undefined,
      rtn: flagOf('rtn') !== undefined ? !!opts.rtn : undefined,
    });
    if (problem !== undefined) throw new UsageError(problem);
  }
}
