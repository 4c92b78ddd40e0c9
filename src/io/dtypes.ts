/**
 * safetensors element types, their sizes, and scalar conversions between the
 * 16-bit float formats and JavaScript numbers.
 *
 * The scalar conversions are for tests and small tensors; bulk conversion of
 * big arrays is done natively.
 */

/**
 * Every dtype this project reads and writes, in the order the safetensors
 * crate declares them (increasing alignment). The writer lays tensors out by
 * this order, descending, exactly as the Python/Rust library does.
 */
export const DTYPES = [
  'BOOL',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'F64',
  'I64',
  'U64',
] as const;

export type DType = (typeof DTYPES)[number];

const SIZES: Record<DType, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

const RANK = new Map<string, number>(DTYPES.map((d, i) => [d, i]));

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && RANK.has(s);
}

/** Bytes per element. */
export function dtypeSize(d: DType): number {
  const size = SIZES[d];
  if (size === undefined) throw new Error(`unknown dtype ${JSON.stringify(d)}`);
  return size;
}

/** Position in the safetensors crate's `Dtype` enum (its sort key). */
export function dtypeRank(d: DType): number {
  const rank = RANK.get(d);
  if (rank === undefined) throw new Error(`unknown dtype ${JSON.stringify(d)}`);
  return rank;
}

/**
 * Number of elements of `shape` (1 for a scalar `[]`), or NaN when the shape
 * is not a list of non-negative safe integers or the product is not a safe
 * integer.
 */
export function elementCount(shape: readonly unknown[]): number {
  let n = 1;
  for (const dim of shape) {
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) return NaN;
    n *= dim;
  }
  return Number.isSafeInteger(n) ? n : NaN;
}

/** Bytes a tensor of this dtype and shape occupies, or NaN (see elementCount). */
export function tensorByteLength(dtype: DType, shape: readonly unknown[]): number {
  const n = elementCount(shape) * dtypeSize(dtype);
  return Number.isSafeInteger(n) ? n : NaN;
}

// Shared scratch space for reinterpreting float32 bits.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits (0..0xffff) to the number it represents. */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/**
 * `x` rounded to float32 and then to the nearest binary16 (ties to even), as
 * bits. Overflow gives infinity, underflow gives (signed) zero or a subnormal,
 * NaN stays a (quiet) NaN.
 */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): the value is m * 2^(e - 25) with the implicit bit.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

/** bfloat16 bits (0..0xffff) to the number it represents. */
export function bf16ToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/** `x` rounded to float32 and then to the nearest bfloat16 (ties to even), as bits. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7f800000) === 0x7f800000 && u & 0x7fffff) return ((u >>> 16) | 0x40) & 0xffff;
  const rounded = u + 0x7fff + ((u >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}
