/**
 * The evaluation tokens of a dataset, as the GPTQ reference code builds them (`gptq eval` and
 * `gptq report` both use this): the rows joined with the dataset's joiner, tokenized whole with
 * one BOS, cut into windows (src/data/windows.ts). A registry entry's `eval` narrows it: C4 is
 * get_c4_new's `tokenizer(' '.join(valdata[:1100]['text']))` cut to `[:, :(256 * seqlen)]`,
 * i.e. the first 1100 rows and at most 256 windows.
 */
import { DatasetDownload, loadDatasetText, registryDataset, Split } from './datasets';
import { tokenizeCached } from './tokenizer';
import { evalWindows, EvalWindows } from './windows';

export interface EvalSet {
  /** Token ids of the whole evaluation text (BOS included). */
  ids: Int32Array;
  windows: EvalWindows;
  /** Where the text came from, and the protocol when it is not all of it. */
  source: string;
}

export interface EvalSetOptions {
  /** Default: the dataset's eval split (`test` unless its registry entry says otherwise). */
  split?: Split;
  seqlen: number;
  maxWindows?: number;
  revision?: string;
  download?: DatasetDownload;
  cacheDir?: string;
}

export async function loadEvalSet(modelDir: string, dataset: string, opts: EvalSetOptions): Promise<EvalSet> {
  const protocol = registryDataset(dataset)?.entry;
  const rows = protocol?.eval?.rows;
  const cap = protocol?.eval?.windows;
  const loaded = await loadDatasetText(dataset, { split: opts.split, revision: opts.revision, download: opts.download, maxRows: rows });
  const ids = await tokenizeCached(modelDir, loaded.text, { addBos: true, cacheDir: opts.cacheDir });
  const maxWindows = cap === undefined ? opts.maxWindows : Math.min(cap, opts.maxWindows ?? cap);
  const notes = [
    ...(rows !== undefined ? [`the first ${rows} rows joined with ${JSON.stringify(protocol!.joiner)}`] : []),
    ...(cap !== undefined ? [`at most ${cap} windows`] : []),
  ];
  const source = notes.length > 0 ? `${loaded.source} (${notes.join(', ')})` : loaded.source;
  return { ids, windows: evalWindows(ids, opts.seqlen, maxWindows), source };
}
