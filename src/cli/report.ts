/**
 * `gptq report DIR`: perplexity, size and build time of the fp16 base and of every finished
 * branch in DIR; writes DIR/report.json, DIR/report.md and DIR/report.svg. Rows whose weights
 * and protocol are unchanged since the last report are taken from it, not measured again.
 */
import { Command, Option } from 'commander';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UsageError, UserError } from '../errors';
import { Split } from '../data/datasets';
import { loadEvalSet } from '../data/eval-set';
import { finishedBranches } from '../gptq/branches-dir';
import { buildBranch } from '../gptq/build-branch';
import { Manifest, resolveManifestBase } from '../gptq/manifest';
import { linearShape, QuantizeSettings } from '../gptq/settings';
import { checkBranchSettings } from '../gptq/settings-branch';
import { resolveModel } from '../hub/resolve';
import { atomicWriteFile } from '../io/atomic';
import { readJsonFile } from '../io/json-file';
import { modelFingerprint } from '../model/fingerprint';
import { LlamaModel } from '../model/llama-model';
import { evaluatePerplexity } from '../eval/perplexity';
import { chooseDevice, Device } from '../device';
import { bitsPerWeight, folderBytes, gptqRowBase, perplexityColumns, renderMarkdown } from '../eval/report';
import { renderChart } from '../eval/report-chart';
import { contentId, contentStamps, FileStamp, idsDigest } from '../eval/report-content';
import { Report, ReportEval, REPORT_FILE, REPORT_FORMAT, ReportRow } from '../eval/report-types';
import { deviceOption, positiveInt } from './options';
import { createProgress } from './progress';
import { checkDevicesFlags, DevicesFlags, devicesOption, devicesWorkers, maxWorkersOption } from './devices';
import { EvalJob, evalLabel, evaluateOnWorkers } from './report-workers';

interface ReportFlags extends DevicesFlags {
  base?: string;
  revision?: string;
  /** Every --dataset, in order (none given: wikitext2). */
  dataset: string[];
  split?: Split;
  seqlen: number;
  maxWindows?: number;
  rtn?: boolean;
  remeasure?: boolean;
  json?: boolean;
  quiet?: boolean;
  device?: Device;
}

export const BASELINES_DIR = '.baselines';

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('perplexity, size and build time of the base model and every branch of a branches folder')
    .argument('<dir>', 'folder written by gptq branches')
    .option('--base <path-or-repo>', 'the fp16 model (default: the one the branches\' manifests name)')
    .option('--revision <rev>', 'Hub revision of --base')
    .option('--dataset <name-or-file>', 'evaluation text, one perplexity column each; repeat for more columns (default: wikitext2)', (v: string, all: string[]) => [...all, v], [] as string[])
    .addOption(new Option('--split <split>', 'split of the named datasets (default: test; validation for c4 and c4-new)').choices(['train', 'validation', 'test']))
    .option('--seqlen <n>', 'tokens per evaluation window', positiveInt, 4096)
    .option('--max-windows <k>', 'evaluate only the first k windows', positiveInt)
    .option('--rtn', 'add round-to-nearest baselines for each (bits, group size) of the branches')
    .addOption(deviceOption('perplexity engine'))
    .addOption(devicesOption('measure in parallel, one gptq eval process'))
    .addOption(maxWorkersOption())
    .option('--remeasure', 'measure every row again instead of reusing the last report\'s')
    .option('--json', 'print report.json on stdout')
    .option('--quiet', 'no progress output')
    .action(async (dir: string, flags: ReportFlags) => {
      const t0 = process.hrtime.bigint();
      const report = await runReport(dir, flags);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (flags.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      else process.stdout.write(`wrote ${path.join(dir, REPORT_FILE)}, report.md and report.svg (${report.rows.length} rows, ${seconds.toFixed(1)} s)\n`);
    });
}

async function runReport(dir: string, flags: ReportFlags): Promise<Report> {
  const datasets = flags.dataset.length > 0 ? flags.dataset : ['wikitext2'];
  const twice = datasets.find((d, k) => datasets.indexOf(d) !== k);
  if (twice !== undefined) throw new UsageError(`--dataset ${twice} is given twice`);
  const device = chooseDevice(flags.device);
  checkDevicesFlags(flags);
  // --devices: each device checked before anything else; the workers are chosen once the
  // measurements left to make are known.
  const workersFor = devicesWorkers(flags, device);
  const manifests = (await finishedBranches(dir)).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  if (manifests.length === 0) throw new UserError(`${dir} holds no finished branch (a folder with manifest.json); run gptq branches first`);
  // every branch's quantize_config against its config.json before anything is measured
  for (const m of manifests) await checkBranchSettings(path.join(dir, m.branch));
  const baseSpec = flags.base ?? manifests[0].base.model;
  const revision = flags.base ? flags.revision : manifests[0].base.revision ?? undefined;
  const baseDir = flags.base ? await resolveModel(baseSpec, { revision }) : await resolveManifestBase(manifests[0].base);
  const base = await LlamaModel.open(baseDir);
  const fingerprint = await modelFingerprint(baseDir, base.checkpoint).finally(() => base.close());
  const strangers = manifests.filter((m) => m.base.fingerprint !== fingerprint);
  if (strangers.length > 0) {
    throw new UserError(`${strangers[0].branch} was not built from ${baseSpec} (its manifest names ${strangers[0].base.model}); give --base`);
  }

  const evals: { info: ReportEval; tokens: Int32Array }[] = [];
  for (const dataset of datasets) {
    const set = await loadEvalSet(baseDir, dataset, { split: flags.split, seqlen: flags.seqlen, maxWindows: flags.maxWindows });
    evals.push({
      info: { dataset, source: set.source, seqlen: flags.seqlen, windows: set.windows.count, tokens: set.ids.length, idsSha256: idsDigest(set.windows.tokens) },
      tokens: set.windows.tokens,
    });
  }
  const read = flags.remeasure ? undefined : ((await readJsonFile(path.join(dir, REPORT_FILE))) as Report | undefined);
  const previous = read?.format === REPORT_FORMAT && read.eval && Array.isArray(read.rows) ? read : undefined;
  // A column of the last report is reused for the column measured on the same protocol and ids.
  const lastColumns = previous ? perplexityColumns(previous) : [];
  const reuse = evals.map((e) => lastColumns.find((c) => JSON.stringify(c.eval) === JSON.stringify(e.info)));

  // A row is keyed by the content it was measured on (report-content.ts), never by what a
  // manifest or the last report says about it.
  type Measured = Pick<ReportRow, 'perplexity' | 'extraPerplexity' | 'weightsId'> & { files: FileStamp[] };
  // With --devices: what each worker measured, by model folder and column (taken before measuring here).
  const measured = new Map<string, number>();
  // Each model folder's content is stamped (hashed where it changed) once, before it is measured:
  // with --devices the pre-pass below stamps it and the row reuses that.
  const stamped = new Map<string, Promise<{ files: FileStamp[]; weightsId: string }>>();
  const stamps = (modelDir: string, previousFiles: FileStamp[] | undefined) => {
    let s = stamped.get(modelDir);
    if (s === undefined) {
      s = contentStamps(modelDir, previousFiles).then((files) => ({ files, weightsId: contentId(files) }));
      stamped.set(modelDir, s);
    }
    return s;
  };
  const reused = async (name: string, modelDir: string) => {
    const last = previous?.rows.find((r) => r.name === name);
    const { files, weightsId } = await stamps(modelDir, last?.files);
    const same = last !== undefined && last.weightsId === weightsId;
    const values = reuse.map((c, k) => (same && c ? c.value(last) : measured.get(`${k}\0${modelDir}`)));
    return { files, weightsId, values };
  };
  const measure = async (name: string, modelDir: string): Promise<Measured> => {
    const { files, weightsId, values } = await reused(name, modelDir);
    if (values.some((v) => v === undefined)) {
      const model = await LlamaModel.open(modelDir);
      try {
        for (let k = 0; k < evals.length; k++) {
          if (values[k] !== undefined) continue;
          const progress = createProgress(evalLabel(name, evals[k].info.dataset, evals.length), { quiet: flags.quiet });
          try {
            const onProgress = (d: number, t: number, l: string) => progress.update(d, t, l);
            values[k] = (await evaluatePerplexity(model, evals[k].tokens, flags.seqlen, { device, round16: true, onProgress })).perplexity;
          } finally {
            progress.stop();
          }
        }
      } finally {
        await model.close();
      }
    }
    const extra = evals.slice(1).map((e, k) => [e.info.dataset, values[k + 1]!] as const);
    return { perplexity: values[0]!, ...(extra.length > 0 ? { extraPerplexity: Object.fromEntries(extra) } : {}), weightsId, files };
  };

  // --devices: the baselines first (they are measured too), then every measurement on the workers.
  const baselines = flags.devices && flags.rtn ? await rtnBaselines(dir, baseDir, baseSpec, revision ?? null, fingerprint, manifests, flags.quiet) : undefined;
  if (flags.devices) {
    const models: [string, string][] = [['fp16', baseDir], ...(baselines ?? []).map((m): [string, string] => [m.branch, path.join(dir, BASELINES_DIR, m.branch)]),
      ...manifests.map((m): [string, string] => [m.branch, path.join(dir, m.branch)])];
    const todo: EvalJob[] = [];
    for (const [name, modelDir] of models) {
      const { values } = await reused(name, modelDir);
      values.forEach((v, k) => v === undefined && todo.push({ name, modelDir, column: k, dataset: evals[k].info.dataset }));
    }
    // No slots: one worker on this process's own device; the rows below measure here.
    const slots = workersFor(todo.length);
    if (slots) {
      const o = { split: flags.split, seqlen: flags.seqlen, maxWindows: flags.maxWindows, device, quiet: flags.quiet, columns: evals.length };
      for (const [key, ppl] of await evaluateOnWorkers(slots, todo, o)) measured.set(key, ppl);
    }
  }

  const rows: ReportRow[] = [];
  const c = base.config;
  const baseBytes = (await Promise.all(base.checkpoint.files().map(async (f) => (await fsp.stat(f)).size))).reduce((a, b) => a + b, 0);
  rows.push({
    name: 'fp16', kind: 'fp16', bits: 16, groupSize: null, actOrder: null, dampPercent: null, dataset: null, seqlen: null,
    sizeBytes: baseBytes, bitsPerWeight: 16, buildSeconds: null, ...(await measure('fp16', baseDir)),
  });
  const branchRow = async (m: Manifest, branchDir: string): Promise<ReportRow> => {
    const weights = m.files.find((f) => f.path.endsWith('.safetensors'))!;
    const measured = await measure(m.branch, branchDir);
    // The settings of the row come from the manifest: say so when the files are no longer the ones it hashed.
    const changed = m.files.filter((f) => {
      const now = measured.files.find((s) => s.path === f.path);
      return now !== undefined && now.sha256 !== f.sha256;
    });
    if (changed.length > 0) {
      process.stderr.write(`warning: ${m.branch}/${changed[0].path} differs from its manifest (changed after the build); measured as it is now, run gptq verify ${branchDir}\n`);
    }
    return {
      ...gptqRowBase(m), sizeBytes: await folderBytes(branchDir),
      bitsPerWeight: await bitsPerWeight(path.join(branchDir, weights.path), c, (n) => linearShape(c, n)),
      ...measured,
    };
  };
  if (flags.rtn) {
    for (const m of baselines ?? (await rtnBaselines(dir, baseDir, baseSpec, revision ?? null, fingerprint, manifests, flags.quiet))) {
      rows.push(await branchRow(m, path.join(dir, BASELINES_DIR, m.branch)));
    }
  }
  for (const m of manifests) rows.push(await branchRow(m, path.join(dir, m.branch)));

  const report: Report = {
    format: REPORT_FORMAT, base: { model: baseSpec, revision: revision ?? null }, eval: evals[0].info,
    ...(evals.length > 1 ? { extraEvals: evals.slice(1).map((e) => e.info) } : {}), rows, createdAt: new Date().toISOString(),
  };
  await atomicWriteFile(path.join(dir, REPORT_FILE), `${JSON.stringify(report, null, 2)}\n`);
  await atomicWriteFile(path.join(dir, 'report.md'), renderMarkdown(report, 'report.svg'));
  await atomicWriteFile(path.join(dir, 'report.svg'), renderChart(rows, `${baseSpec}: size on disk against perplexity`));
  return report;
}

/** Round-to-nearest branches for each distinct (bits, group size), built once into DIR/.baselines. */
async function rtnBaselines(
  dir: string, baseDir: string, baseSpec: string, revision: string | null, fingerprint: string, manifests: Manifest[], quiet?: boolean,
): Promise<Manifest[]> {
  const grids = new Map<string, { bits: number; groupSize: number }>();
  for (const m of manifests) grids.set(`rtn-${m.settings.bits}bit-${m.settings.groupSize}g`, m.settings);
  const root = path.join(dir, BASELINES_DIR);
  const existing = new Map((await finishedBranches(root).catch(() => [] as Manifest[])).map((m) => [m.branch, m]));
  const out: Manifest[] = [];
  for (const [name, g] of grids) {
    const have = existing.get(name);
    if (have && have.base.fingerprint === fingerprint) {
      out.push(have);
      continue;
    }
    const model = await LlamaModel.open(baseDir);
    const settings: QuantizeSettings = {
      bits: g.bits, groupSize: g.groupSize, actOrder: false, staticGroups: false, sym: true, mse: false, dampPercent: 0.01,
      trueSequential: true, rtn: true,
    };
    const progress = createProgress(`baseline ${name}`, { quiet });
    try {
      const res = await buildBranch({
        model, base: { model: baseSpec, revision, fingerprint }, branch: name, settings, device: 'cpu', calib: null, dataset: '', split: '',
        out: path.join(root, name), workDir: path.join(root, `${name}.partial`), resume: false, resumable: false,
        events: { onProgress: (d, t, label) => progress.update(d, t, label), onStage: () => progress.stop() },
      });
      out.push(res.manifest);
    } finally {
      progress.stop();
      await model.close();
    }
  }
  return out;
}
