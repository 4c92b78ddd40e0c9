/**
 * Calibration windows drawn exactly as the GPTQ reference code (IST-DASLab/gptq datautils.py)
 * draws them. From one token stream (get_wikitext2):
 *   random.seed(seed)
 *   for _ in range(nsamples):
 *       i = random.randint(0, len(ids) - seqlen - 1); window = ids[i:i + seqlen]
 * From documents (get_c4, get_c4_new: the same sampler), each tokenized alone with BOS:
 *   random.seed(seed)
 *   for _ in range(nsamples):
 *       while True:
 *           i = random.randint(0, len(traindata) - 1); ids = tokenizer(traindata[i]['text'])
 *           if len(ids) >= seqlen: break
 *       j = random.randint(0, len(ids) - seqlen - 1); window = ids[j:j + seqlen]
 * get_c4's evaluation windows (its valenc: 256 windows from the validation shard after
 * random.seed(0)) are the same loop over the validation documents, so `--dataset c4`'s eval
 * (src/data/eval-set.ts) draws them with sampleDocumentCalibration too.
 */
import { createHash } from 'crypto';
import { UserError } from '../errors';
import { PythonRandom } from './python-random';
import { TextRows } from './rows';
import { TextTokenizer } from './tokenizer';

export interface CalibrationSample {
  /** Start offset of each window in the token stream (in its document), in draw order. */
  offsets: number[];
  /** For windows drawn from documents: the row each came from. */
  documents?: number[];
  /** The windows back to back: [nsamples * seqlen]. */
  tokens: Int32Array;
}

function checkArgs(nsamples: number, seqlen: number, seed: number): void {
  if (!Number.isSafeInteger(nsamples) || nsamples <= 0) {
    throw new UserError(`--nsamples must be a positive integer (got ${nsamples})`);
  }
  if (!Number.isSafeInteger(seqlen) || seqlen <= 0) {
    throw new UserError(`--seqlen must be a positive integer (got ${seqlen})`);
  }
  if (!Number.isSafeInteger(seed)) throw new UserError(`--seed must be an integer (got ${seed})`);
}

export function sampleCalibration(ids: Int32Array, nsamples: number, seqlen: number, seed: number): CalibrationSample {
  checkArgs(nsamples, seqlen, seed);
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

/**
 * The get_c4 sampler over `count` documents; `encode(i)` gives the token ids of document i (with
 * BOS, as the reference's `tokenizer(text)`). One difference, where the reference cannot go on:
 * a document of exactly seqlen tokens passes its `>= seqlen` test and then fails in
 * `randint(0, -1)` (ValueError); here it is drawn past like a shorter one, so every seed that the
 * reference completes gives its windows. When every document has been drawn and none is longer
 * than seqlen, the reference loops forever; this is a UserError.
 *
 * `opts.bound(i)`, when given, is an upper bound on `encode(i).length` that is cheap to compute: a
 * document whose bound is at most seqlen cannot pass the test, so it is drawn past without
 * being tokenized. The random draws are the same either way (the document index is drawn before
 * the test, and nothing else is drawn for a document that fails it), so the windows are too.
 */
export function sampleDocumentCalibration(
  count: number, encode: (i: number) => Int32Array, nsamples: number, seqlen: number, seed: number,
  opts: { bound?: (i: number) => number; what?: string } = {},
): CalibrationSample {
  checkArgs(nsamples, seqlen, seed);
  const { bound, what = 'the calibration dataset' } = opts;
  if (!Number.isSafeInteger(count) || count <= 0) throw new UserError(`${what} has no documents`);
  const rng = new PythonRandom(seed);
  const tooShort = new Set<number>();
  const offsets: number[] = [];
  const documents: number[] = [];
  const tokens = new Int32Array(nsamples * seqlen);
  for (let s = 0; s < nsamples; s++) {
    let i: number;
    let ids: Int32Array;
    for (;;) {
      i = rng.randint(0, count - 1);
      if (tooShort.has(i)) continue; // the same draw; tokenizing it again would give the same length
      if (bound === undefined || bound(i) > seqlen) {
        ids = encode(i);
        if (ids.length > seqlen) break;
      }
      tooShort.add(i);
      if (tooShort.size === count) {
        throw new UserError(`no document of the ${count} in ${what} has more than --seqlen ${seqlen} tokens`);
      }
    }
    const j = rng.randint(0, ids.length - seqlen - 1);
    offsets.push(j);
    documents.push(i);
    tokens.set(ids.subarray(j, j + seqlen), s * seqlen);
  }
  return { offsets, documents, tokens };
}

/**
 * The get_c4 sampler over the rows of a dataset split, each tokenized alone with BOS, with the
 * tokenizer's length bound (tokenizer.ts idsBound: UTF-8 bytes + 2 for Llama) as the pre-filter.
 * `what` names the rows in the error when none is long enough.
 */
export function sampleDocuments(
  rows: TextRows, tokenizer: TextTokenizer, nsamples: number, seqlen: number, seed: number, what?: string,
): CalibrationSample {
  let at = -1;
  let atText = '';
  const text = (i: number): string => {
    if (i !== at) [at, atText] = [i, rows.text(i)]; // the bound and then encode read the same row
    return atText;
  };
  const idsBound = tokenizer.idsBound;
  const bound = idsBound === undefined ? undefined : (i: number) => idsBound(text(i), { addBos: true });
  return sampleDocumentCalibration(rows.count, (i) => tokenizer.encode(text(i), { addBos: true }), nsamples, seqlen, seed, { bound, what });
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
