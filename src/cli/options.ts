/** Option parsers shared by the commands (commander reports their errors as usage errors). */
import { InvalidArgumentError, Option } from 'commander';

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
