/**
 * The AutoGPTQ v1 packing calls (native/bindings/pack.cc): pack, unpack and dequantize a
 * linear's qweight / qzeros. Arguments are checked here first (name, expected, got); every call
 * goes through ./addon.
 */
import { callNative, NATIVE_ENUMS } from './addon';
import { check, checkBoolean, checkInteger, checkLength, checkOneOf, checkType } from './check';

export interface PackedGptq {
  /** int32 [K·bits/32, N]: column n is the little-endian bit stream of row n's K codes. */
  qweight: Int32Array;
  /** int32 [G, N·bits/32]: row g is the bit stream of the N values (zero − 1) mod 2^bits. */
  qzeros: Int32Array;
  /**
   * How many zero points were 0: v1 stores them as 2^bits − 1 and every reader adds 1 without
   * wrapping, so they read back as 2^bits (the AutoGPTQ v1 format cannot hold zero = 0).
   */
  wrappedZeros: number;
}

export interface UnpackedGptq {
  /** [N·K] row-major by output row: codes[n·K + k]. */
  codes: Uint8Array;
  /** [G·N]: stored zero + 1, as readers use it (1 … 2^bits). */
  zeros: Int32Array;
}

export type PackVariant = (typeof NATIVE_ENUMS.packVariant)[number];

function checkPackLayout(bits: number, k: number, n: number): void {
  check([2, 3, 4, 8].includes(bits), 'bits', '2, 3, 4 or 8', bits);
  check(Number.isInteger(k) && k > 0 && k % 32 === 0, 'K', 'a positive multiple of 32', k);
  check(Number.isInteger(n) && n > 0 && n % 32 === 0, 'N', 'a positive multiple of 32', n);
}

/**
 * Packs a layer's integer codes (codes[n·K + k] = code of W[n, k]) and integer zero points
 * (zeros[g·N + n], NOT minus one; each in [0, 2^bits]) into AutoGPTQ v1 qweight / qzeros.
 */
export async function packGptq(
  codes: Uint8Array, zeros: Int32Array, bits: number, k: number, n: number,
  variant: PackVariant = 'optimised',
): Promise<PackedGptq> {
  checkPackLayout(bits, k, n);
  checkOneOf(variant, 'variant', NATIVE_ENUMS.packVariant);
  checkType(codes, 'codes', 'Uint8Array');
  checkType(zeros, 'zeros', 'Int32Array');
  checkLength(codes, 'codes', n * k);
  check(zeros.length > 0 && zeros.length % n === 0, 'zeros', `G × N elements (N = ${n})`, zeros.length);
  return callNative('packGptq', codes, zeros, bits, k, n, variant);
}

/** The inverse of packGptq (zeros come back as stored + 1, see UnpackedGptq). */
export async function unpackGptq(
  qweight: Int32Array, qzeros: Int32Array, bits: number, k: number, n: number, g: number,
): Promise<UnpackedGptq> {
  checkPackLayout(bits, k, n);
  checkInteger(g, 'G', 1);
  checkType(qweight, 'qweight', 'Int32Array');
  checkType(qzeros, 'qzeros', 'Int32Array');
  checkLength(qweight, 'qweight', (k * bits / 32) * n);
  checkLength(qzeros, 'qzeros', g * (n * bits / 32));
  return callNative('unpackGptq', qweight, qzeros, bits, k, n, g);
}

/**
 * The Linear weight [N, K] (row-major) an AutoGPTQ v1 reader sees:
 * w[n, k] = scales[g, n] · (code[k, n] − (stored_zero[g, n] + 1)) with g = gIdx[k], computed
 * exactly in fp32; `round16` rounds it to fp16 as AutoGPTQ's torch dequantization does.
 * scales: fp16 bits [G·N]; G = scales.length / N.
 */
export async function dequantizeGptq(
  qweight: Int32Array, qzeros: Int32Array, scales: Uint16Array, gIdx: Int32Array,
  bits: number, k: number, n: number,
  opts: { round16?: boolean; variant?: PackVariant } = {},
): Promise<Float32Array> {
  checkPackLayout(bits, k, n);
  const round16 = opts.round16 ?? false;
  const variant = opts.variant ?? 'optimised';
  checkBoolean(round16, 'round16');
  checkOneOf(variant, 'variant', NATIVE_ENUMS.packVariant);
  checkType(qweight, 'qweight', 'Int32Array');
  checkType(qzeros, 'qzeros', 'Int32Array');
  checkType(scales, 'scales', 'Uint16Array');
  checkType(gIdx, 'gIdx', 'Int32Array');
  check(scales.length > 0 && scales.length % n === 0, 'scales', `G × N elements (N = ${n})`, scales.length);
  const g = scales.length / n;
  checkLength(qweight, 'qweight', (k * bits / 32) * n);
  checkLength(qzeros, 'qzeros', g * (n * bits / 32));
  checkLength(gIdx, 'gIdx', k);
  for (let i = 0; i < k; i++) {
    if (!(gIdx[i] >= 0 && gIdx[i] < g)) check(false, `gIdx[${i}]`, `a group in [0, ${g})`, gIdx[i]);
  }
  return callNative('dequantizeGptq', qweight, qzeros, scales, gIdx, bits, k, n, round16, variant);
}
