/**
 * The evaluation tokens of a dataset, as the GPTQ reference code builds them (`gptq eval` and
 * `gptq report` both use this). By default the rows joined with the dataset's joiner, tokenized
 * whole with one BOS, cut into windows (src/data/windows.ts). A registry entry's `eval` changes
 * it:
 *  - `rows` / `windows` narrow the joined text: `c4-new` is get_c4_new's
 *    `tokenizer(' '.join(valdata[:1100]['text']))` cut to `[:, :(256 * seqlen)]`, i.e. the first
 *    1100 rows and at most 256 windows;
 *  - `sample: "documents"` draws the windows from the documents instead: `c4` is get_c4's valenc,
 *    after `random.seed(0)` 256 times a validation document drawn (again) until one is tokenized
 *    (alone, with BOS) to enough tokens, and a window of seqlen tokens at a random offset in it;
 *    the windows back to back are `torch.hstack(valenc)`, cut into seqlen windows again. The loop
 *    is get_c4's calibration sampler (src/data/calibration.ts sampleDocumentCalibration), with
 *    its rule for a document of exactly seqlen tokens (drawn past: the reference stops there in
 *    `randint(0, -1)`). `--max-windows k` keeps the first k windows, which are the windows the
 *    loop draws first, so only k are drawn. The windows are cached (tokenizer.ts
 *    derivedIdsCached) keyed by the shard's sha256 and the protocol's parameters: drawing them
 *    tokenizes hundreds of long documents.
 */
import { sha256File } from '../io/sha256-file';
import { sampleDocuments } from './calibration';
import { DatasetDownload, loadDatasetText, locateDatasetFile, readDatasetRows, registryDataset, Split } from './datasets';
import { derivedIdsCached, tokenizeCached } from './tokenizer';
import { checkWindowArgs, evalWindows, EvalWindows } from './windows';

/** Names the computation of windows drawn from documents in their cache key; bump it when the sampler changes. */
const SAMPLED_EVAL_FORMAT = 'get_c4 eval windows v1';

export interface EvalSet {
  /** Token ids of the whole evaluation text (BOS included); for windows drawn from documents, the windows back to back. */
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
  const named = registryDataset(dataset);
  const protocol = named?.entry;
  const rows = protocol?.eval?.rows;
  const cap = protocol?.eval?.windows;
  const maxWindows = cap === undefined ? opts.maxWindows : Math.min(cap, opts.maxWindows ?? cap);
  if (named && protocol?.eval?.sample === 'documents') {
    checkWindowArgs(opts.seqlen, opts.maxWindows);
    const seed = protocol.eval.seed ?? 0;
    const n = maxWindows!;
    const located = await locateDatasetFile(named.name, protocol, { split: opts.split, revision: opts.revision, download: opts.download });
    // Cached by content: the shard's bytes, the protocol and its parameters (and the tokenizer).
    const key = [SAMPLED_EVAL_FORMAT, await sha256File(located.file), protocol.textColumn, String(opts.seqlen), String(n), String(seed)];
    const ids = await derivedIdsCached(modelDir, key, async (tokenizer) => {
      const rows = await readDatasetRows(located.file, located.pathInRepo, protocol);
      return sampleDocuments(rows, tokenizer, n, opts.seqlen, seed, `the ${located.split} split of ${named.name}`).tokens;
    }, { cacheDir: opts.cacheDir });
    return {
      ids,
      windows: evalWindows(ids, opts.seqlen),
      source: `${located.source} (get_c4's eval: ${cap} windows, each from a document drawn with random.seed(${seed}))`,
    };
  }
  const loaded = await loadDatasetText(dataset, { split: opts.split, revision: opts.revision, download: opts.download, maxRows: rows });
  const ids = await tokenizeCached(modelDir, loaded.text, { addBos: true, cacheDir: opts.cacheDir });
  const notes = [
    ...(rows !== undefined ? [`the first ${rows} rows joined with ${JSON.stringify(protocol!.joiner)}`] : []),
    ...(cap !== undefined ? [`at most ${cap} windows`] : []),
  ];
  const source = notes.length > 0 ? `${loaded.source} (${notes.join(', ')})` : loaded.source;
  return { ids, windows: evalWindows(ids, opts.seqlen, maxWindows), source };
}
