/**
 * AutoGPTQ v1 tensors → the inputs of ONNX Runtime's `com.microsoft` MatMulNBits:
 *   Y[.., N] = A[.., K] · dequant(B)ᵀ,  dequant(B)[n, k] = scales[n, blk] · (code[n, k] − zp[n, blk])
 * with B uint8 [N, n_blocks, blob_size] (blob_size = block_size · bits / 8, codes packed
 * low bits first along K), scales [N · n_blocks] (A's dtype), zero_points uint8 packed the same
 * way per row ([N · ceil(n_blocks · bits / 8)]), blocks of `block_size` consecutive K.
 *
 * GPTQ's groups are given by g_idx [K], which act-order makes a scatter: group j is the set of
 * columns {k : g_idx[k] = j}. MatMulNBits's blocks are contiguous, so we permute K: the columns
 * sorted by (g_idx, k) make every group contiguous, B's K axis is stored in that order, and the
 * graph gathers A's last axis with the same permutation (Σ_k a[k]·w[n,k] does not depend on
 * the order of k). Without act-order the permutation is the identity and no Gather is emitted.
 * ORT's own g_idx input is not used: its CPU kernel supports it for 4 bits only, on a slow
 * unpacked path (contrib_ops/cpu/quantization/matmul_nbits.cc, ComputeBUnpacked).
 *
 * Supported here: bits 2, 4 and 8 (the kernel refuses others: "Only 2b, 4b and 8b quantization
 * is supported"), each group a whole number of blocks of a power of two ≥ 16 (we pick the
 * largest of 128, 64, 32, 16 that fits), and zero points < 2^bits (v1's "wrapped" zero of 0
 * reads back as 2^bits, which a bits-wide zero point cannot hold). Anything else is exported
 * as a dequantized MatMul by the caller, with the reason returned here.
 */
import { f16ToF32 } from '../../io/dtypes';

/** Bit widths the ORT 1.30 CPU MatMulNBits kernel accepts. */
export const NBITS_SUPPORTED: readonly number[] = [2, 4, 8];
const BLOCK_SIZES = [128, 64, 32, 16];

export interface GptqUnpacked {
  bits: number;
  k: number;
  n: number;
  /** [N·K], codes[n·K + k]. */
  codes: Uint8Array;
  /** [G·N], zero points as readers use them (stored + 1). */
  zeros: Int32Array;
  /** [G·N] fp16 bits. */
  scales: Uint16Array;
  /** [K]. */
  gIdx: Int32Array;
}

export interface NBitsPacked {
  blockSize: number;
  nBlocks: number;
  /** Original column index of each stored K position, or null for the identity. */
  perm: Int32Array | null;
  /** uint8 [N, nBlocks, blockSize·bits/8]. */
  b: Uint8Array;
  /** float32 [N·nBlocks]. */
  scales: Float32Array;
  /** uint8 [N · ceil(nBlocks·bits/8)]. */
  zeroPoints: Uint8Array;
}

export type NBitsPlan = { ok: true; packed: NBitsPacked } | { ok: false; reason: string };

/** The K order that makes every group contiguous: columns sorted by (g_idx, k). */
export function groupOrder(gIdx: Int32Array): Int32Array {
  const order = Int32Array.from(gIdx.keys());
  order.sort((a, b) => gIdx[a] - gIdx[b] || a - b);
  return order;
}

/** Chooses a block size and packs, or says why MatMulNBits cannot hold this linear. */
export function packForMatMulNBits(q: GptqUnpacked): NBitsPlan {
  const { bits, k, n } = q;
  if (!NBITS_SUPPORTED.includes(bits)) {
    return { ok: false, reason: `${bits}-bit is not supported by ORT's CPU MatMulNBits (2, 4, 8 only)` };
  }
  const g = q.scales.length / n;
  for (let i = 0; i < q.zeros.length; i++) {
    if (q.zeros[i] < 0 || q.zeros[i] >= 1 << bits) {
      return { ok: false, reason: `zero point ${q.zeros[i]} does not fit in ${bits} bits` };
    }
  }
  const order = groupOrder(q.gIdx);
  let identity = true;
  for (let i = 0; i < k; i++) if (order[i] !== i) { identity = false; break; }
  const blockSize = BLOCK_SIZES.find((bs) => k % bs === 0 && blocksHomogeneous(q.gIdx, order, bs));
  if (blockSize === undefined) {
    return { ok: false, reason: 'the groups are not whole blocks of 16, 32, 64 or 128 columns' };
  }
  const nBlocks = k / blockSize;
  const blob = (blockSize * bits) / 8;
  const b = new Uint8Array(n * nBlocks * blob);
  const zpRow = Math.ceil((nBlocks * bits) / 8);
  const zeroPoints = new Uint8Array(n * zpRow);
  const scales = new Float32Array(n * nBlocks);
  const scaleF32 = new Float32Array(q.scales.length);
  for (let i = 0; i < q.scales.length; i++) scaleF32[i] = f16ToF32(q.scales[i]);
  for (let row = 0; row < n; row++) {
    const codes = q.codes.subarray(row * k, (row + 1) * k);
    const out = b.subarray(row * nBlocks * blob, (row + 1) * nBlocks * blob);
    // The row's codes in stored order, `bits` bits each, low bits first: one bit stream.
    for (let p = 0; p < k; p++) {
      const bit = p * bits;
      out[bit >> 3] |= codes[order[p]] << (bit & 7);
    }
    for (let blk = 0; blk < nBlocks; blk++) {
      const group = q.gIdx[order[blk * blockSize]];
      if (group < 0 || group >= g) throw new RangeError(`g_idx: group ${group} outside [0, ${g})`);
      scales[row * nBlocks + blk] = scaleF32[group * n + row];
      const bit = blk * bits;
      zeroPoints[row * zpRow + (bit >> 3)] |= q.zeros[group * n + row] << (bit & 7);
    }
  }
  return { ok: true, packed: { blockSize, nBlocks, perm: identity ? null : order, b, scales, zeroPoints } };
}

function blocksHomogeneous(gIdx: Int32Array, order: Int32Array, bs: number): boolean {
  for (let start = 0; start < order.length; start += bs) {
    const g0 = gIdx[order[start]];
    for (let p = start + 1; p < start + bs; p++) if (gIdx[order[p]] !== g0) return false;
  }
  return true;
}

/** Reference dequantization of the packed form, w[n·K + k] in original column order (tests). */
export function dequantizeNBits(p: NBitsPacked, bits: number, k: number, n: number): Float32Array {
  const w = new Float32Array(n * k);
  const blob = (p.blockSize * bits) / 8;
  const zpRow = Math.ceil((p.nBlocks * bits) / 8);
  const mask = (1 << bits) - 1;
  for (let row = 0; row < n; row++) {
    for (let pos = 0; pos < k; pos++) {
      const bit = pos * bits;
      const code = (p.b[row * p.nBlocks * blob + (bit >> 3)] >> (bit & 7)) & mask;
      const blk = Math.floor(pos / p.blockSize);
      const zbit = blk * bits;
      const zp = (p.zeroPoints[row * zpRow + (zbit >> 3)] >> (zbit & 7)) & mask;
      const col = p.perm ? p.perm[pos] : pos;
      w[row * k + col] = p.scales[row * p.nBlocks + blk] * (code - zp);
    }
  }
  return w;
}
