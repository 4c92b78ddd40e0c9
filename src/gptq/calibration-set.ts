/**
 * The calibration windows of the GPTQ recipe, drawn as the reference code draws them from the
 * dataset: from the whole text tokenized with BOS (get_wikitext2, any file), or one window from
 * each drawn document for a registry dataset with `calibration: "documents"` (get_c4).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { atomicWriteFile } from '../io/atomic';
import { readJsonFile } from '../io/json-file';
import { calibrationDigest, CalibrationSample, sampleCalibration, sampleDocuments } from '../data/calibration';
import { loadDatasetRows, loadDatasetText, registryDataset, Split } from '../data/datasets';
import { loadTokenizer, tokenizeCached } from '../data/tokenizer';

export interface CalibrationSet {
  tokens: Int32Array;
  offsets: number[];
  nsamples: number;
  seqlen: number;
  seed: number;
  source: string;
  digest: string;
}

export async function loadCalibration(
  modelDir: string, dataset: string, opts: { split: Split; nsamples: number; seqlen: number; seed: number; revision?: string },
): Promise<CalibrationSet> {
  const named = registryDataset(dataset);
  let sample: CalibrationSample;
  let source: string;
  if (named?.entry.calibration === 'documents') {
    const loaded = await loadDatasetRows(named.name, named.entry, { split: opts.split, revision: opts.revision });
    const tokenizer = await loadTokenizer(modelDir);
    sample = sampleDocuments(loaded.rows, tokenizer, opts.nsamples, opts.seqlen, opts.seed);
    source = `${loaded.source} (one window from each drawn document)`;
  } else {
    const loaded = await loadDatasetText(dataset, { split: opts.split, revision: opts.revision });
    const ids = await tokenizeCached(modelDir, loaded.text, { addBos: true });
    sample = sampleCalibration(ids, opts.nsamples, opts.seqlen, opts.seed);
    source = loaded.source;
  }
  return {
    tokens: sample.tokens, offsets: sample.offsets, nsamples: opts.nsamples, seqlen: opts.seqlen,
    seed: opts.seed, source, digest: calibrationDigest(sample, opts.seqlen),
  };
}

/**
 * The folder of a branches output where `gptq branches --devices` leaves each calibration it
 * sampled (once) for its workers: `<out>/.calibration/<digest>.json`, named by the digest of the
 * windows and written atomically; removed when the run finishes.
 */
export const SHARED_CALIBRATION_DIR = '.calibration';
const SHARED_FORMAT = 'gptq-forge/calibration@1';

export async function writeSharedCalibration(out: string, c: CalibrationSet): Promise<string> {
  const dir = path.join(out, SHARED_CALIBRATION_DIR);
  await fsp.mkdir(dir, { recursive: true });
  const file = path.join(dir, `${c.digest}.json`);
  const tokens = Buffer.from(c.tokens.buffer, c.tokens.byteOffset, c.tokens.byteLength).toString('base64');
  const body = { format: SHARED_FORMAT, nsamples: c.nsamples, seqlen: c.seqlen, seed: c.seed, source: c.source, digest: c.digest, offsets: c.offsets, tokens };
  await atomicWriteFile(file, `${JSON.stringify(body)}\n`);
  return file;
}

/**
 * A calibration written by writeSharedCalibration, for the recipe `want`: refused naming the file
 * when it is not one, is for another recipe, or its windows do not hash to its digest.
 */
export async function readSharedCalibration(file: string, want: { nsamples: number; seqlen: number; seed: number }): Promise<CalibrationSet> {
  const bad = (what: string) => new UserError(`${file}: ${what}; remove it and rerun`);
  const v = (await readJsonFile(file)) as Record<string, unknown> | undefined;
  if (v === undefined) throw bad('missing');
  if (v === null || typeof v !== 'object' || v.format !== SHARED_FORMAT) throw bad(`not a shared calibration (format ${SHARED_FORMAT})`);
  if (v.nsamples !== want.nsamples || v.seqlen !== want.seqlen || v.seed !== want.seed) throw bad('another calibration recipe than the branch\'s');
  if (typeof v.tokens !== 'string' || typeof v.source !== 'string' || typeof v.digest !== 'string' || !Array.isArray(v.offsets)) throw bad('fields missing');
  const bytes = Buffer.from(v.tokens, 'base64');
  if (bytes.length !== want.nsamples * want.seqlen * 4 || v.offsets.length !== want.nsamples || !v.offsets.every((o) => Number.isSafeInteger(o))) {
    throw bad('its windows do not have the recipe\'s size');
  }
  const tokens = new Int32Array(want.nsamples * want.seqlen);
  Buffer.from(tokens.buffer).set(bytes);
  const offsets = v.offsets as number[];
  const digest = calibrationDigest({ tokens, offsets }, want.seqlen);
  if (digest !== v.digest) throw bad('its windows do not hash to its digest');
  return { tokens, offsets, nsamples: want.nsamples, seqlen: want.seqlen, seed: want.seed, source: v.source, digest };
}
