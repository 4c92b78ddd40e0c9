/**
 * The report's chart places point labels so that no two overlap, nor a label and a point, with
 * text width estimated as font size × characters × LABEL_CHAR_WIDTH (the chart's own estimate,
 * at least 0.6 em a character: wider than the average of sans-serif letters and digits).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LABEL_CHAR_WIDTH, renderChart } from '../../src/eval/report-chart';
import type { Report, ReportRow } from '../../src/eval/report-types';

interface Box { x: number; y: number; w: number; h: number; text: string }

const attr = (tag: string, name: string): string => {
  const m = new RegExp(`\\s${name}="([^"]*)"`).exec(tag);
  if (!m) throw new Error(`no ${name} in ${tag}`);
  return m[1];
};
const unescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');

/** The label boxes of a chart: start-anchored text, vertically centred on y, one em tall. */
function labelBoxes(svg: string): Box[] {
  return [...svg.matchAll(/(<text class="label"[^>]*>)([^<]*)<\/text>/g)].map(([, tag, body]) => {
    expect(tag).not.toMatch(/text-anchor="(middle|end)"/);
    expect(attr(tag, 'dominant-baseline')).toBe('central');
    const size = Number(attr(tag, 'font-size'));
    const text = unescape(body);
    return { x: Number(attr(tag, 'x')), y: Number(attr(tag, 'y')) - size / 2, w: text.length * size * LABEL_CHAR_WIDTH, h: size, text };
  });
}

function pointBoxes(svg: string): Box[] {
  return [...svg.matchAll(/<circle class="point"[^>]*>/g)].map(([tag]) => {
    const r = Number(attr(tag, 'r'));
    return { x: Number(attr(tag, 'cx')) - r, y: Number(attr(tag, 'cy')) - r, w: 2 * r, h: 2 * r, text: 'point' };
  });
}

const overlap = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

function expectNoOverlap(svg: string, rows: readonly ReportRow[]): void {
  const labels = labelBoxes(svg);
  expect(labels.map((l) => l.text)).toEqual(rows.map((r) => r.name));
  const width = Number(attr(svg.slice(0, svg.indexOf('>') + 1), 'width'));
  const height = Number(attr(svg.slice(0, svg.indexOf('>') + 1), 'height'));
  const clashes: string[] = [];
  labels.forEach((a, i) => {
    if (a.x < 0 || a.x + a.w > width || a.y < 0 || a.y + a.h > height) clashes.push(`${a.text} outside the chart`);
    labels.slice(i + 1).forEach((b) => overlap(a, b) && clashes.push(`${a.text} / ${b.text}`));
    pointBoxes(svg).forEach((p, j) => overlap(a, p) && clashes.push(`${a.text} / point of ${rows[j].name}`));
  });
  expect(clashes).toEqual([]);
}

const row = (name: string, kind: ReportRow['kind'], bits: number, sizeBytes: number, perplexity: number): ReportRow => ({
  name, kind, bits, groupSize: 128, actOrder: true, dampPercent: 0.01, dataset: 'wikitext2-v1', seqlen: 4096,
  sizeBytes, bitsPerWeight: bits + 0.16, perplexity, buildSeconds: 1, weightsId: name,
});

test('the estimate is at least 0.6 em per character', () => {
  expect(LABEL_CHAR_WIDTH).toBeGreaterThanOrEqual(0.6);
});

test('30 branches of nearly equal size and perplexity (some identical): no two labels overlap', () => {
  const rows: ReportRow[] = [row('fp16', 'fp16', 16, 49_762_952, 1093.68)];
  for (let i = 0; i < 29; i++) {
    const bits = [2, 3, 4, 8][i % 4];
    // Sizes within 0.5 % and perplexities within 0.2 % of each other; every fifth repeats its neighbour.
    const size = 35_000_000 + (i % 5 === 4 ? (i - 1) : i) * 6_000;
    const ppl = 1100 + (i % 5 === 4 ? (i - 1) : i) * 0.07;
    rows.push(row(`gptq-${bits}bit-${32 << (i % 3)}g-actorder_${i % 2 === 0 ? 'True' : 'False'}-${i}`, i % 7 === 3 ? 'rtn' : 'gptq', bits, size, ppl));
  }
  const svg = renderChart(rows, 'many close branches');
  expect(svg.match(/<circle class="point" /g)).toHaveLength(30);
  expectNoOverlap(svg, rows);
});

test('points on top of each other, long names, points at the chart edges', () => {
  const rows = [
    row('fp16', 'fp16', 16, 50e6, 1000),
    ...Array.from({ length: 12 }, (_, i) => row(`a-very-long-branch-name-for-the-label-${i}`, 'gptq', 4, 35e6, 1050)),
    row('right-edge', 'gptq', 4, 50e6, 1200),
    row('left-edge', 'rtn', 3, 20e6, 1200),
  ];
  expectNoOverlap(renderChart(rows, 'stacked'), rows);
});

test('the seed branches of a recorded report (bench/results/quality-llama2-m-cuda-report.json): no overlap, default height', () => {
  const file = path.resolve(__dirname, '../../bench/results/quality-llama2-m-cuda-report.json');
  const report = JSON.parse(fs.readFileSync(file, 'utf8')) as Report;
  const svg = renderChart(report.rows, 'llama2-m');
  expect(svg).toMatch(/^<svg [^>]*height="480"/);
  expectNoOverlap(svg, report.rows);
});
