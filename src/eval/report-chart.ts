/** The report's chart: size on disk (x) against perplexity (y), one labelled point per row. */
import { formatSize } from './report';
import { ReportRow } from './report-types';

const W = 760, MIN_H = 480;
const M = { left: 72, right: 24, top: 40, bottom: 56 };
const COLORS: Record<ReportRow['kind'], string> = { fp16: '#222222', gptq: '#1f6feb', rtn: '#d1242f' };
const POINT_R = 5;

/** Point labels: font size in px, and the width of one character as a fraction of it (an upper estimate for sans-serif). */
export const LABEL_FONT_SIZE = 12;
export const LABEL_CHAR_WIDTH = 0.62;
/** Height of a label's box: the font size plus a little leading, so stacked labels keep apart. */
const LABEL_H = Math.ceil(LABEL_FONT_SIZE * 1.3);
const GAP = 8;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

interface Box { x: number; y: number; w: number; h: number }
const overlaps = (a: Box, b: Box) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;

/** Estimated width in px of a label of `chars` characters (what the placement and its test assume). */
export const labelWidth = (chars: number) => Math.ceil(chars * LABEL_FONT_SIZE * LABEL_CHAR_WIDTH);

/**
 * Label boxes for points (px, py), none overlapping another label, a point or the legend, inside
 * the plot's height: for each point (top to bottom) the nearest free place beside it, right or
 * left, searched in half-line steps up and down. Undefined when some label finds no place.
 */
function placeLabels(points: Array<{ x: number; y: number; w: number }>, top: number, bottom: number, fixed: Box[]): Box[] | undefined {
  const taken: Box[] = [...fixed, ...points.map((p) => ({ x: p.x - POINT_R, y: p.y - POINT_R, w: 2 * POINT_R, h: 2 * POINT_R }))];
  const out: Box[] = new Array<Box>(points.length);
  const order = points.map((_, i) => i).sort((a, b) => points[a].y - points[b].y || points[a].x - points[b].x);
  for (const i of order) {
    const p = points[i];
    const sides = p.x > W * 0.7 ? [-1, 1] : [1, -1];
    const steps = Math.ceil((bottom - top) / (LABEL_H / 2)) + 1;
    let placed: Box | undefined;
    for (let k = 0; k <= 2 * steps && !placed; k++) {
      const dy = (k % 2 === 0 ? k / 2 : -(k + 1) / 2) * (LABEL_H / 2);
      for (const side of sides) {
        const x = Math.min(W - 2 - p.w, Math.max(2, side > 0 ? p.x + GAP : p.x - GAP - p.w));
        const box = { x, y: p.y + dy - LABEL_H / 2, w: p.w, h: LABEL_H };
        if (box.y < top || box.y + box.h > bottom) continue;
        if (!taken.some((t) => overlaps(t, box))) {
          placed = box;
          break;
        }
      }
    }
    if (!placed) return undefined;
    taken.push(placed);
    out[i] = placed;
  }
  return out;
}

export function renderChart(rows: readonly ReportRow[], title: string): string {
  // The chart grows taller only when the labels do not fit (many branches of close perplexity):
  // each label blocks at most two half-line slots of another's column, so enough height always fits.
  for (let H = MIN_H; ; H += Math.max(LABEL_H * rows.length, 120)) {
    const svg = renderAt(rows, title, H);
    if (svg !== undefined) return svg;
  }
}

function renderAt(rows: readonly ReportRow[], title: string, H: number): string | undefined {
  const xs = rows.map((r) => r.sizeBytes), ys = rows.map((r) => r.perplexity);
  const pad = (lo: number, hi: number) => {
    const d = (hi - lo) * 0.08 || Math.abs(hi) * 0.01 || 1;
    return [lo - d, hi + d];
  };
  const [x0, x1] = pad(Math.min(...xs), Math.max(...xs));
  const [y0, y1] = pad(Math.min(...ys), Math.max(...ys));
  const px = (x: number) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);

  // Legend: the kinds present, top right; its entries are obstacles for the labels.
  const kinds = (['fp16', 'gptq', 'rtn'] as const).filter((k) => rows.some((r) => r.kind === k));
  const names = { fp16: 'fp16 base', gptq: 'GPTQ', rtn: 'round-to-nearest' };
  const legendX = W - M.right - 130;
  const legend = kinds.map((k, i) => ({ k, x: legendX, y: M.top + 16 + 18 * i }));
  const legendBoxes = legend.map((l) => ({ x: l.x - POINT_R, y: l.y - LABEL_H / 2, w: POINT_R + 10 + labelWidth(names[l.k].length), h: LABEL_H }));

  const points = rows.map((r) => ({ x: px(r.sizeBytes), y: py(r.perplexity), w: labelWidth(r.name.length) }));
  const labels = placeLabels(points, M.top, H - M.bottom, legendBoxes);
  if (!labels) return undefined;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  for (const t of niceTicks(x0, x1)) {
    if (t < x0 || t > x1) continue;
    const x = px(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${M.top}" x2="${x}" y2="${H - M.bottom}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x}" y="${H - M.bottom + 18}" text-anchor="middle">${esc(formatSize(t))}</text>`);
  }
  for (const t of niceTicks(y0, y1)) {
    if (t < y0 || t > y1) continue;
    const y = py(t).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${y}" x2="${W - M.right}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${t}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 14}" text-anchor="middle">size on disk</text>`);
  out.push(`<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">perplexity</text>`);
  rows.forEach((r, i) => {
    const { x, y } = points[i];
    const b = labels[i];
    const color = COLORS[r.kind];
    // A label moved away from its point gets a thin leader line to it.
    if (Math.abs(b.y + b.h / 2 - y) > LABEL_H) {
      const ex = b.x > x ? b.x : b.x + b.w;
      out.push(`<line class="leader" x1="${x.toFixed(1)}" y1="${y.toFixed(1)}" x2="${ex.toFixed(1)}" y2="${(b.y + b.h / 2).toFixed(1)}" stroke="${color}" stroke-width="0.6"/>`);
    }
    out.push(`<circle class="point" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="${POINT_R}" fill="${color}"><title>${esc(`${r.name}: ${r.perplexity.toFixed(3)}, ${formatSize(r.sizeBytes)}`)}</title></circle>`);
    out.push(`<text class="label" x="${b.x.toFixed(1)}" y="${(b.y + b.h / 2).toFixed(1)}" font-size="${LABEL_FONT_SIZE}" dominant-baseline="central" fill="${color}">${esc(r.name)}</text>`);
  });
  for (const l of legend) {
    out.push(`<circle cx="${l.x}" cy="${l.y}" r="${POINT_R}" fill="${COLORS[l.k]}"/><text x="${l.x + 10}" y="${l.y}" dominant-baseline="middle">${names[l.k]}</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
