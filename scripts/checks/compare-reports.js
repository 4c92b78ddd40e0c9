#!/usr/bin/env node
/**
 * Compares the perplexities of two `gptq report` outputs row by row (e.g. branches built with
 * --device cpu and with --device cuda on the same calibration and protocol):
 *   node scripts/checks/compare-reports.js A/report.json B/report.json [--bar 0.3]
 * Prints one line per row present in both (B / A − 1 in %) and how many exceed the bar.
 */
'use strict';
const fs = require('node:fs');

const [a, b] = process.argv.slice(2).filter((x) => !x.startsWith('--'));
const barArg = process.argv.indexOf('--bar');
const bar = barArg > 0 ? Number(process.argv[barArg + 1]) : 0.3;
if (!a || !b) {
  console.error('usage: node scripts/checks/compare-reports.js A/report.json B/report.json [--bar percent]');
  process.exit(2);
}
const ra = JSON.parse(fs.readFileSync(a, 'utf8'));
const rb = JSON.parse(fs.readFileSync(b, 'utf8'));
if (JSON.stringify([ra.eval.seqlen, ra.eval.windows, ra.eval.tokens]) !== JSON.stringify([rb.eval.seqlen, rb.eval.windows, rb.eval.tokens])) {
  console.error('the two reports used different evaluation protocols');
  process.exit(1);
}
let over = 0, n = 0;
console.log(`${'row'.padEnd(32)} ${'A'.padStart(10)} ${'B'.padStart(10)}   B/A − 1`);
for (const row of ra.rows) {
  const other = rb.rows.find((r) => r.name === row.name);
  if (!other) continue;
  const d = (other.perplexity / row.perplexity - 1) * 100;
  const flag = Math.abs(d) > bar ? '  > bar' : '';
  if (row.kind !== 'fp16') {
    n++;
    if (Math.abs(d) > bar) over++;
  }
  console.log(`${row.name.padEnd(32)} ${row.perplexity.toFixed(3).padStart(10)} ${other.perplexity.toFixed(3).padStart(10)}   ${d >= 0 ? '+' : ''}${d.toFixed(2)} %${flag}`);
}
console.log(`${over} of ${n} quantized rows differ by more than ${bar} %`);
