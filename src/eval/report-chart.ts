/** The report's chart: size on disk (x) against perplexity (y), one labelled point per row. */
import { formatSize } from './report';
import { ReportRow } from './report-types';

const W = 760, H = 480;
const M = { left: 72, right: 24, top: 40, bottom: 56 };
const COLORS: Record<ReportRow['kind'], string> = { fp16: '#222222', gptq: '#1f6feb', rtn: '#d1242f' };

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

export function renderChart(rows: readonly ReportRow[], title: string): string {
  const xs = rows.map((r) => r.sizeBytes), ys = rows.map((r) => r.perplexity);
  const pad = (lo: number, hi: number) => {
    const d = (hi - lo) * 0.08 || Math.abs(hi) * 0.01 || 1;
    return [lo - d, hi + d];
  };
  const [x0, x1] = pad(Math.min(...xs), Math.max(...xs));
  const [y0, y1] = pad(Math.min(...ys), Math.max(...ys));
  const px = (x: number) => M.left + ((x - x0) / (x1 - x0)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - ((y - y0) / (y1 - y0)) * (H - M.top - M.bottom);
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
    const x = px(r.sizeBytes), y = py(r.perplexity);
    const anchor = x > W * 0.7 ? 'end' : 'start';
    const dx = anchor === 'end' ? -8 : 8;
    out.push(`<circle class="point" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="5" fill="${COLORS[r.kind]}"><title>${esc(`${r.name}: ${r.perplexity.toFixed(3)}, ${formatSize(r.sizeBytes)}`)}</title></circle>`);
    // Alternate labels above and below to keep neighbours apart.
    const dy = i % 2 === 0 ? -8 : 16;
    out.push(`<text x="${(x + dx).toFixed(1)}" y="${(y + dy).toFixed(1)}" text-anchor="${anchor}" fill="${COLORS[r.kind]}">${esc(r.name)}</text>`);
  });
  // Legend: the kinds present, top right.
  const kinds = (['fp16', 'gptq', 'rtn'] as const).filter((k) => rows.some((r) => r.kind === k));
  const names = { fp16: 'fp16 base', gptq: 'GPTQ', rtn: 'round-to-nearest' };
  kinds.forEach((k, i) => {
    const y = M.top + 16 + 18 * i, x = W - M.right - 130;
    out.push(`<circle cx="${x}" cy="${y}" r="5" fill="${COLORS[k]}"/><text x="${x + 10}" y="${y}" dominant-baseline="middle">${names[k]}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
