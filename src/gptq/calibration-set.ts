/** The calibration windows of the GPTQ recipe: whole text tokenized with BOS, seeded windows. */
import { calibrationDigest, sampleCalibration } from '../data/calibration';
import { loadDatasetText, Split } from '../data/datasets';
import { tokenizeCached } from '../data/tokenizer';

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
  const { text, source } = await loadDatasetText(dataset, { split: opts.split, revision: opts.revision });
  const ids = await tokenizeCached(modelDir, text, { addBos: true });
  const sample = sampleCalibration(ids, opts.nsamples, opts.seqlen, opts.seed);
  return {
    tokens: sample.tokens, offsets: sample.offsets, nsamples: opts.nsamples, seqlen: opts.seqlen,
    seed: opts.seed, source, digest: calibrationDigest(sample, opts.seqlen),
  };
}
