/**
 * Perplexity columns of a report (`gptq report --dataset wikitext2 --dataset c4`): report.md and
 * the model card carry one column per dataset; a report of one dataset renders as before.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { perplexityColumns, renderMarkdown } from '../../src/eval/report';
import { Report, REPORT_FORMAT, ReportRow } from '../../src/eval/report-types';
import { modelCard } from '../../src/hub/model-card';
import { scanBranches } from '../../src/hub/push-branches';
import { settings, wikitextCalibration, writeManifest } from '../helpers/manifest-fixture';

const wikiEval = { dataset: 'wikitext2', source: 'wikitext2:test = hf://datasets/Salesforce/wikitext/wikitext-2-raw-v1/test-00000-of-00001.parquet', seqlen: 2048, windows: 140, tokens: 287000, idsSha256: 'a'.repeat(64) };
const c4Eval = { dataset: 'c4', source: 'c4:validation = hf://datasets/allenai/c4/en/c4-validation.00000-of-00008.json.gz (the first 1100 rows joined with " ", at most 256 windows)', seqlen: 2048, windows: 256, tokens: 600000, idsSha256: 'b'.repeat(64) };

function row(name: string, kind: ReportRow['kind'], ppl: number, c4?: number): ReportRow {
  return {
    name, kind, bits: kind === 'fp16' ? 16 : 4, groupSize: kind === 'fp16' ? null : 128, actOrder: kind === 'fp16' ? null : true,
    dampPercent: kind === 'fp16' ? null : 0.01, dataset: kind === 'fp16' ? null : 'wikitext2', seqlen: kind === 'fp16' ? null : 2048,
    sizeBytes: 1e9, bitsPerWeight: kind === 'fp16' ? 16 : 4.15, perplexity: ppl, buildSeconds: kind === 'fp16' ? null : 60, weightsId: 'w',
    ...(c4 !== undefined ? { extraPerplexity: { c4 } } : {}),
  };
}

const report = (rows: ReportRow[], extra: boolean): Report => ({
  format: REPORT_FORMAT, base: { model: 'meta-llama/Llama-2-7b-hf', revision: null }, eval: wikiEval,
  ...(extra ? { extraEvals: [c4Eval] } : {}), rows, createdAt: '2026-11-28T10:00:00.000Z',
});

test('one dataset: the columns and the table as before', () => {
  const r = report([row('fp16', 'fp16', 5.47), row('main', 'gptq', 5.63)], false);
  expect(perplexityColumns(r).map((c) => c.title)).toEqual(['Perplexity']);
  const md = renderMarkdown(r, 'report.svg');
  expect(md).toContain('| Branch | Bits | GS | Act Order | Damp % | GPTQ Dataset | Seq Len | Size | ExLlama | Bits/weight | Perplexity | vs fp16 | Build time | Desc |');
  expect(md).toContain('| ------ | ---: | -: | --------- | -----: | ------------ | ------: | ---: | ------- | ----------: | ---------: | ------: | ---------: | ---- |');
  expect(md).toContain('| main | 4 | 128 | Yes | 0.01 | wikitext2 | 2048 | 1.00 GB | Yes | 4.15 | 5.630 | 2.93 % | 60 s |');
  expect(md).toContain(`Perplexity on ${wikiEval.source}: 140 windows of 2048 tokens (287000 tokens in the text)`);
});

test('two datasets: a c4 column with its own vs fp16 beside the wikitext one, and its protocol line', () => {
  const r = report([row('fp16', 'fp16', 5.47, 7.26), row('main', 'gptq', 5.63, 7.52), row('old', 'gptq', 5.9)], true);
  const cols = perplexityColumns(r);
  expect(cols.map((c) => [c.title, c.value(r.rows[1])])).toEqual([['Perplexity (wikitext2)', 5.63], ['Perplexity (c4)', 7.52]]);
  const md = renderMarkdown(r, 'report.svg');
  const lines = md.split('\n');
  expect(lines).toContain('| Branch | Bits | GS | Act Order | Damp % | GPTQ Dataset | Seq Len | Size | ExLlama | Bits/weight | Perplexity (wikitext2) | vs fp16 | Perplexity (c4) | vs fp16 | Build time | Desc |');
  const rule = lines.find((l) => l.startsWith('| ------ '))!;
  expect(rule.split('|').length).toBe(lines.find((l) => l.startsWith('| Branch '))!.split('|').length);
  expect(lines).toContain('| main | 4 | 128 | Yes | 0.01 | wikitext2 | 2048 | 1.00 GB | Yes | 4.15 | 5.630 | 2.93 % | 7.520 | 3.58 % | 60 s | 4-bit, group size 128, act-order on. |');
  // a row measured before c4 was asked for (not in this report's c4 column): empty cells
  expect(lines).toContain('| old | 4 | 128 | Yes | 0.01 | wikitext2 | 2048 | 1.00 GB | Yes | 4.15 | 5.900 | 7.86 % |  |  | 60 s | 4-bit, group size 128, act-order on. |');
  expect(md).toContain(`Perplexity (c4) on ${c4Eval.source}: 256 windows of 2048 tokens (600000 tokens in the text)`);
  expect(md).toContain(`Perplexity (wikitext2) on ${wikiEval.source}: 140 windows`);
});

test('model card: one perplexity column per dataset, and a note for each', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'report-columns-'));
  try {
    const d = path.join(tmp, 'main');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'model.safetensors'), 'm');
    writeManifest(d, 'main', settings(4, 128, true), wikitextCalibration(128, 2048));
    const scan = await scanBranches(tmp);
    const card = (r: Report) => modelCard({ repo: 'me/m-GPTQ', hubUrl: 'https://hub.example', branches: scan.branches, report: r });
    const two = card(report([row('fp16', 'fp16', 5.47, 7.26), row('main', 'gptq', 5.63, 7.52)], true));
    expect(two).toContain('| Branch | Bits | GS | Act Order | Damp % | GPTQ Dataset | Seq Len | Size | ExLlama | Perplexity (wikitext2) | Perplexity (c4) | Desc |');
    expect(two).toMatch(/\| Yes \| 5\.6300 \| 7\.5200 \| 4-bit, with Act Order/);
    expect(two).toContain('Perplexity (c4): c4 (c4:validation = hf://datasets/allenai/c4/');
    expect(two).toContain('the fp16 base model scores 7.2600. Lower is better.');
    expect(two).toContain('the fp16 base model scores 5.4700. Lower is better.');
    const one = card(report([row('fp16', 'fp16', 5.47), row('main', 'gptq', 5.63)], false));
    expect(one).toContain('| ExLlama | Perplexity | Desc |');
    expect(one).toContain('Perplexity: wikitext2 (');
    expect(one).not.toContain('c4');
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
