/**
 * The calibration windows of the GPTQ recipe, drawn as the reference code draws them from the
 * dataset: from the whole text tokenized with BOS (get_wikitext2, any file), or one window from
 * each drawn document for a registry dataset with `calibration: "documents"` (get_c4).
 */
import { calibrationDigest, CalibrationSample, sampleCalibration, sampleDocumentCalibration } from '../data/calibration';
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
    const { rows } = loaded;
    sample = sampleDocumentCalibration(rows.count, (i) => tokenizer.encode(rows.text(i), { addBos: true }), opts.nsamples, opts.seqlen, opts.seed);
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
