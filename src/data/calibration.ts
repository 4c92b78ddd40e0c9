/**
 * Calibration windows drawn exactly as the GPTQ reference code draws them:
 *   random.seed(seed)
 *   for _ in range(nsamples):
 *       i = random.randint(0, len(ids) - seqlen - 1); window = ids[i:i + seqlen]
 */
import { createHash } from 'crypto';
import { UserError } from '../errors';
import { PythonRandom } from './python-random';

export interface CalibrationSample {
  /** Start offset of each window in the token stream, in draw order. */
  offsets: number[];
  /** The windows back to back: [nsamples * seqlen]. */
  tokens: Int32Array;
}

export function sampleCalibration(ids: Int32Array, nsamples: number, seqlen: number, seed: number): CalibrationSample {
  if (!Number.isSafeInteger(nsamples) || nsamples <= 0) {
    throw new UserError(`--nsamples must be a positive integer (got ${nsamples})`);
  }
  if (!Number.isSafeInteger(seqlen) || seqlen <= 0) {
    throw new UserError(`--seqlen must be a positive integer (got ${seqlen})`);
  }
  if (!Number.isSafeInteger(seed)) throw new UserError(`--seed must be an integer (got ${seed})`);
  if (ids.length <= seqlen) {
    throw new UserError(
      `the calibration text has ${ids.length} tokens: it needs more than --seqlen ${seqlen} to draw windows from`,
    );
  }
  const rng = new PythonRandom(seed);
  const hi = ids.length - seqlen - 1;
  const offsets: number[] = [];
  const tokens = new Int32Array(nsamples * seqlen);
  for (let s = 0; s < nsamples; s++) {
    const i = rng.randint(0, hi);
    offsets.push(i);
    tokens.set(ids.subarray(i, i + seqlen), s * seqlen);
  }
  return { offsets, tokens };
}

/** sha256 (hex) identifying a calibration set: seqlen, the offsets and the tokens. */
export function calibrationDigest(sample: CalibrationSample, seqlen: number): string {
  const nsamples = sample.offsets.length;
  if (sample.tokens.length !== nsamples * seqlen) {
    throw new Error(`calibrationDigest: ${sample.tokens.length} tokens for ${nsamples} windows of ${seqlen}`);
  }
  const h = createHash('sha256');
  h.update('gptq-forge calibration v1\0');
  const head = Buffer.alloc(16);
  head.writeBigUInt64LE(BigInt(seqlen), 0);
  head.writeBigUInt64LE(BigInt(nsamples), 8);
  h.update(head);
  const offs = Buffer.alloc(8 * nsamples);
  sample.offsets.forEach((o, k) => offs.writeBigUInt64LE(BigInt(o), 8 * k));
  h.update(offs);
  const tok = Buffer.alloc(4 * sample.tokens.length);
  for (let k = 0; k < sample.tokens.length; k++) tok.writeInt32LE(sample.tokens[k], 4 * k);
  h.update(tok);
  return h.digest('hex');
}
