/**
 * Argument checks of the native wrappers (as sharp's is.invalidParameterError): each throws
 * "name: expected X, got Y" — a TypeError for a value of the wrong type, a RangeError for one
 * out of range — before anything crosses into the addon. The addon checks again (bindings/util.h);
 * these come first so that a wrong call names the TypeScript argument.
 */

/** A short description of a value for "got …": numbers and strings as they are, arrays by size. */
export function describeValue(v: unknown): string {
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (typeof v === 'string') return v;
  if (typeof v === 'function' || typeof v === 'symbol') return `a ${typeof v}`;
  const tag = typedArrayTag(v);
  if (tag) return `${article(tag)} ${tag} of ${(v as ArrayLike<unknown>).length} elements`;
  if (Array.isArray(v)) return `an array of ${v.length} elements`;
  let json: string | undefined;
  try {
    json = JSON.stringify(v);
  } catch {
    // cyclic: described as an object
  }
  return json === undefined ? 'an object' : json.length > 80 ? `${json.slice(0, 80)}…` : json;
}

/** "an Int32Array", "a Uint16Array". */
function article(noun: string): string {
  return /^[AEIOaeio]/.test(noun) ? 'an' : 'a';
}

/** The typed array's class, by tag: arrays made by the addon or another realm (jest's vm) still pass. */
function typedArrayTag(v: unknown): string | null {
  if (!ArrayBuffer.isView(v) || v instanceof DataView) return null;
  return Object.prototype.toString.call(v).slice(8, -1);
}

/** A RangeError "what: expected …, got …" unless cond holds. */
export function check(cond: boolean, what: string, expected: string, got: unknown): void {
  if (!cond) throw new RangeError(`${what}: expected ${expected}, got ${describeValue(got)}`);
}

function typeCheck(cond: boolean, what: string, expected: string, got: unknown): void {
  if (!cond) throw new TypeError(`${what}: expected ${expected}, got ${describeValue(got)}`);
}

export function checkLength(arr: ArrayLike<unknown>, what: string, expected: number): void {
  check(arr.length === expected, what, `${expected} elements`, arr.length);
}

export type TypedArrayName = 'Uint8Array' | 'Uint16Array' | 'Int32Array' | 'Float32Array' | 'Float64Array';

/** v is a typed array of that class (and, when given, of `length` elements). */
export function checkType(v: unknown, what: string, type: TypedArrayName | readonly TypedArrayName[], length?: number): void {
  const types: readonly TypedArrayName[] = typeof type === 'string' ? [type] : type;
  const tag = typedArrayTag(v);
  typeCheck(tag !== null && (types as readonly string[]).includes(tag), what,
    types.map((t) => `${article(t)} ${t}`).join(' or '), tag ? `${article(tag)} ${tag}` : v);
  if (length !== undefined) checkLength(v as ArrayLike<unknown>, what, length);
}

/** v is an array of typed arrays of that class (each of `length` elements when given). */
export function checkTypedArrays(v: unknown, what: string, type: TypedArrayName, length?: number): void {
  typeCheck(Array.isArray(v), what, `an array of ${type}s`, v);
  (v as unknown[]).forEach((a, i) => checkType(a, `${what}[${i}]`, type, length));
}

/** v is an integer in [min, max] (max: 2^53 − 1 unless given). */
export function checkInteger(v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): void {
  typeCheck(typeof v === 'number', what, 'an integer', v);
  const range = max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`;
  check(Number.isInteger(v) && (v as number) >= min && (v as number) <= max, what, range, v);
}

/** v is a finite number. */
export function checkNumber(v: unknown, what: string): void {
  typeCheck(typeof v === 'number', what, 'a number', v);
  check(Number.isFinite(v), what, 'a finite number', v);
}

/**
 * v is a number in [0, 1]: QEP's or GPTAQ's α as the addon takes it (the CLI's rule, settings.ts,
 * is (0, 1]; 0 is the tests' plain-GPTQ case).
 */
export function checkAlpha(v: unknown, what: string): void {
  check(typeof v === 'number' && v >= 0 && v <= 1, what, 'a number in [0, 1]', v);
}

/** v is an array of strings (linear names; the addon refuses an unknown one). */
export function checkNames(v: unknown, what: string): void {
  check(Array.isArray(v) && v.every((l) => typeof l === 'string'), what, 'an array of names', v);
}

export function checkBoolean(v: unknown, what: string): void {
  typeCheck(typeof v === 'boolean', what, 'a boolean', v);
}

/** v is a boolean or undefined (an absent flag: false, as the addon reads it). */
export function checkOptionalBoolean(v: unknown, what: string): void {
  if (v !== undefined) checkBoolean(v, what);
}

export function checkString(v: unknown, what: string): void {
  typeCheck(typeof v === 'string', what, 'a string', v);
}

/** v is a plain object (not null, not an array). */
export function checkObject(v: unknown, what: string): void {
  typeCheck(typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v), what, 'an object', v);
}

/** v is one of the names of an enum that crosses the boundary by name. */
export function checkOneOf<T extends string>(v: unknown, what: string, names: readonly T[]): asserts v is T {
  const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}` : names.join('');
  typeCheck(typeof v === 'string', what, list, v);
  check((names as readonly string[]).includes(v as string), what, list, v);
}
