#!/usr/bin/env node
'use strict';
/**
 * Issue 15's measurement: the seed matrix's eight branches of a Llama-2-70B-shaped model on every
 * GPU of one host at once (`gptq branches --devices all`), then `gptq report --devices all`, with
 * the peak host RSS of the whole process tree, peak GPU memory per card and the output's disk use,
 * projected to 80 layers against the goals "eight branches ≤ 10 min, report ≤ 3 min more".
 *
 *   bin/node bench/multi-gpu-70b.js [--shared ../shared] [--work /tmp/mgpu70b] [--small] [--fresh]
 *
 * Steps (each one's result is kept in WORK/results/<step>.json and a rerun skips it, so the whole
 * can be spread over several commands of at most 10 minutes each: rerun the same command):
 *   syn<L>     bench/make-synthetic-llama.js: a 70B-shaped fp16 checkpoint of LAYERS (32) layers
 *              (about 56 GB; kept when WORK/syn<L>/config.json exists)
 *   one<L>     `gptq branches --device cuda --only main`, CUDA_VISIBLE_DEVICES=0, alone
 *   one<L2>    the same on a LAYERS2 (16) layer checkpoint (made, timed, then both removed): the
 *              slope gives per layer = (T_L − T_L2) / (L − L2), fixed = T_L − L · per layer.
 *              LAYERS2=0 skips it and takes the fixed part from bench/results/e2e70b-h200.json.
 *   eight      `gptq branches --devices all --device cuda` with configs/llama-2-70b-gptq.json into a
 *              fresh folder, calibration valid.txt --split validation, 128 × 4096
 *   report     `gptq report --devices all --device cuda` on that folder (wiki.test.raw at 4096)
 * Each timed command is a process, start to exit; while it runs, every ~0.5 s the RSS of every
 * process of its tree (parent and workers, from /proc: the sum, so shared pages count once per
 * process) is summed, `nvidia-smi -lms 500` samples memory.used per card, and every ~2 s `du -sb`
 * measures the output folder (peak during, and at the end). The page cache is dropped before each
 * run where allowed (weights then come from disk, as 140 GB would).
 *
 * Projection to 80 layers. Branch i's manifest seconds S_i (at L layers, measured under the 8-way
 * run) minus the one-branch run's in-manifest fixed part F = S_main − L · per layer, over L, is its
 * per-layer time; its 80-layer wall is fixed + 80 · that. The eight at 80 layers = the slowest of
 * those + the scheduling overhead (8-branch wall − the slowest branch's own wall, S_i + the
 * process start the one-branch run measured: T_L − S_main). With fewer workers than branches
 * (--small) "the slowest" is the makespan of the branches taken greedily in matrix order. The report: its wall × 80 / L
 * (the fixed part scaled too: an upper bound).
 *
 * --small: the plumbing on a CPU host: llama2-s config, LAYERS=2, LAYERS2=1, --nsamples 2
 * --seqlen 64, --device cpu --devices 2, report --seqlen 64 --max-windows 4; results in WORK.
 * Environment (override either mode): LAYERS, LAYERS2, CONFIG, TOKENIZER_FROM, CALIBRATION, EVAL,
 * NSAMPLES, SEQLEN, DEVICE, DEVICES, EVAL_SEQLEN, MAX_WINDOWS, RESULTS, NODE; DISK_FREE_BYTES is
 * passed to the 8-branch run as GPTQ_FORGE_DISK_FREE_BYTES. Disk: `--devices`' estimate for 32
 * layers (src/gptq/host-limits.ts: ~110 GB of branches + per worker 17 GB of checkpoint room and
 * the layer files once more) is above the ~180 GB a 235 GB disk has left beside the 56 GB model,
 * so it may refuse; with the default --checkpoint-every 10 a ~3 min branch writes no checkpoint,
 * and the measured peak (du) is what this run is for. Use LAYERS=24 or DISK_FREE_BYTES knowingly.
 */
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { root, flag, sharedDir } = require('./args');

const small = process.argv.includes('--small');
const shared = sharedDir();
const work = path.resolve(flag('--work', small ? '/tmp/mgpu70b-small' : '/tmp/mgpu70b'));
const env = (k, d) => (process.env[k] !== undefined && process.env[k] !== '' ? process.env[k] : d);
const node = env('NODE', fs.existsSync(path.join(root, 'bin/node')) ? path.join(root, 'bin/node') : process.execPath);
const L = Number(env('LAYERS', small ? '2' : '32'));
const L2 = Number(env('LAYERS2', small ? '1' : '16'));
const config = env('CONFIG', path.join(shared, small ? 'models/llama2-s/config.json' : 'models/llama-2-70b/config.json'));
const tokFrom = env('TOKENIZER_FROM', path.join(shared, 'models/llama2-m'));
const calib = env('CALIBRATION', path.join(shared, 'datasets/wikitext-2-v1/valid.txt'));
const evalText = env('EVAL', path.join(shared, 'datasets/wikitext-2-raw-v1/wiki.test.raw'));
const nsamples = env('NSAMPLES', small ? '2' : '128');
const seqlen = env('SEQLEN', small ? '64' : '4096');
const device = env('DEVICE', small ? 'cpu' : 'cuda');
const devices = env('DEVICES', small ? '2' : 'all');
const evalSeqlen = env('EVAL_SEQLEN', small ? '64' : '4096');
const maxWindows = env('MAX_WINDOWS', small ? '4' : '');
const results = path.resolve(env('RESULTS', small ? work : path.join(root, 'bench/results')));
const matrix = path.join(root, 'configs/llama-2-70b-gptq.json');
const gptq = path.join(root, 'bin/gptq.js');

if (!(Number.isInteger(L) && L >= 1) || !(Number.isInteger(L2) && L2 >= 0 && L2 < L)) {
  console.error(`multi-gpu-70b: LAYERS ${L} / LAYERS2 ${L2}: need LAYERS ≥ 1 and 0 ≤ LAYERS2 < LAYERS`);
  process.exit(2);
}
for (const f of [config, path.join(tokFrom, 'tokenizer.json'), calib, evalText, matrix])
  if (!fs.existsSync(f)) { console.error(`multi-gpu-70b: ${f} not found`); process.exit(2); }
if (process.argv.includes('--fresh')) fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(path.join(work, 'results'), { recursive: true });
fs.mkdirSync(results, { recursive: true });

const PAGE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;
const hasSmi = (() => { try { execFileSync('nvidia-smi', ['-L'], { stdio: 'ignore' }); return true; } catch { return false; } })();
const card = hasSmi ? execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8' }).split('\n')[0].trim() : 'cpu';
const slug = card.toLowerCase().replace(/^nvidia\s+/, '').replace(/[^a-z0-9]+/g, '-') + (small ? '-small' : '');

/** Sum of RSS (bytes) over `pid` and all its descendants, from /proc. */
function treeRss(pid) {
  const children = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch { /* gone meanwhile */ }
  }
  let sum = 0, count = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop();
    try { sum += Number(fs.readFileSync(`/proc/${p}/statm`, 'utf8').split(' ')[1]) * PAGE; count++; } catch { /* gone */ }
    todo.push(...(children.get(p) ?? []));
  }
  return { sum, count };
}

function duBytes(dir) {
  return new Promise((resolve) => {
    if (!fs.existsSync(dir)) { resolve(0); return; }
    const p = spawn('du', ['-sb', dir], { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    p.stdout.on('data', (b) => { s += b; });
    p.on('close', () => resolve(Number(s.split('\t')[0]) || 0));
  });
}

function dropCaches() {
  try { execFileSync('sync'); fs.writeFileSync('/proc/sys/vm/drop_caches', '3'); return 'dropped'; } catch { return 'kept'; }
}

/** Runs one command as a timed, sampled process; resolves with its measurements. */
function measured(name, args, { cwdEnv = {}, outDir = null, stdoutFile = null } = {}) {
  const pageCache = dropCaches();
  console.log(`  ${name}: ${path.basename(args[0])} ${args.slice(1).join(' ')}`);
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const out = stdoutFile ? fs.openSync(stdoutFile, 'w') : 'inherit';
    const child = spawn(node, args, { stdio: ['ignore', out, 'inherit'], env: { ...process.env, ...cwdEnv }, cwd: root });
    const gpuPeakMiB = {};
    let smi = null;
    if (hasSmi) {
      smi = spawn('nvidia-smi', ['--query-gpu=index,memory.used', '--format=csv,noheader,nounits', '-lms', '500'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let buf = '';
      smi.stdout.on('data', (b) => {
        buf += b;
        const lines = buf.split('\n');
        buf = lines.pop();
        for (const line of lines) {
          const [i, mib] = line.split(',').map((x) => Number(x.trim()));
          if (Number.isInteger(i) && Number.isFinite(mib)) gpuPeakMiB[i] = Math.max(gpuPeakMiB[i] ?? 0, mib);
        }
      });
    }
    let rssPeak = 0, procPeak = 0, duPeak = 0, samples = 0, duBusy = false;
    const rssTimer = setInterval(() => {
      const { sum, count } = treeRss(child.pid);
      rssPeak = Math.max(rssPeak, sum); procPeak = Math.max(procPeak, count); samples++;
    }, 500);
    const duTimer = outDir ? setInterval(async () => {
      if (duBusy) return;
      duBusy = true; duPeak = Math.max(duPeak, await duBytes(outDir)); duBusy = false;
    }, 2000) : null;
    child.on('error', reject);
    child.on('close', async (code, signal) => {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      clearInterval(rssTimer); if (duTimer) clearInterval(duTimer);
      if (smi) smi.kill();
      if (typeof out === 'number') fs.closeSync(out);
      if (code !== 0) { reject(new Error(`${name}: exit ${code ?? signal}`)); return; }
      const duEnd = outDir ? await duBytes(outDir) : null;
      resolve({
        wallSeconds: wall, pageCache, rssSamples: samples, peakTreeRssGb: rssPeak / 1e9, peakProcesses: procPeak,
        peakGpuGib: hasSmi ? Object.fromEntries(Object.entries(gpuPeakMiB).map(([i, m]) => [i, m / 1024])) : null,
        diskPeakGb: outDir ? Math.max(duPeak, duEnd) / 1e9 : null, diskEndGb: outDir ? duEnd / 1e9 : null,
      });
    });
  });
}

/** A step: skipped when WORK/results/<name>.json exists (from an earlier, interrupted command). */
async function step(name, fn) {
  const file = path.join(work, 'results', `${name}.json`);
  if (fs.existsSync(file)) { console.log(`  ${name}: done earlier (${file})`); return JSON.parse(fs.readFileSync(file, 'utf8')); }
  const r = await fn();
  fs.writeFileSync(file, `${JSON.stringify(r, null, 2)}\n`);
  return r;
}

async function synthetic(layers) {
  const dir = path.join(work, `syn${layers}`);
  if (!fs.existsSync(path.join(dir, 'config.json'))) {
    const t0 = Date.now();
    execFileSync(node, [path.join(root, 'bench/make-synthetic-llama.js'), '--config', config, '--layers', String(layers),
      '--tokenizer-from', tokFrom, '--out', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
    console.log(`  syn${layers}: written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  return dir;
}

const calibArgs = ['--dataset', calib, '--split', 'validation', '--nsamples', nsamples, '--seqlen', seqlen];
const manifest = (dir, b) => JSON.parse(fs.readFileSync(path.join(dir, b, 'manifest.json'), 'utf8'));

async function oneBranch(layers, { keepModel }) {
  return step(`one${layers}`, async () => {
    const model = await synthetic(layers);
    const out = path.join(work, `out-one${layers}`);
    fs.rmSync(out, { recursive: true, force: true });
    const r = await measured(`one branch, ${layers} layers`, [gptq, 'branches', '--model', model, '--matrix', matrix, '--only', 'main',
      '--out', out, '--device', device, ...calibArgs, '--quiet'], { cwdEnv: device === 'cuda' ? { CUDA_VISIBLE_DEVICES: '0' } : {}, outDir: out });
    r.layers = layers; r.manifestTimings = manifest(out, 'main').timings;
    fs.rmSync(out, { recursive: true, force: true }); // disk: 8 branches of 32 layers need the room
    if (!keepModel) fs.rmSync(model, { recursive: true, force: true });
    return r;
  });
}

async function main() {
  console.log(`multi-gpu-70b: ${small ? 'SMALL mode, ' : ''}${card}, ${L} layers of ${path.basename(path.dirname(config))}, ` +
    `${nsamples} × ${seqlen} calibration tokens, --device ${device} --devices ${devices}; work ${work}`);
  const modelL = await synthetic(L);
  const oneL = await oneBranch(L, { keepModel: true });
  const oneL2 = L2 > 0 ? await oneBranch(L2, { keepModel: false }) : null;
  const branchesDir = path.join(work, 'branches');
  const eight = await step('eight', async () => {
    fs.rmSync(branchesDir, { recursive: true, force: true });
    const r = await measured('eight branches', [gptq, 'branches', '--model', modelL, '--matrix', matrix, '--out', branchesDir,
      '--devices', devices, '--device', device, ...calibArgs, '--quiet'],
    { outDir: branchesDir, cwdEnv: process.env.DISK_FREE_BYTES ? { GPTQ_FORGE_DISK_FREE_BYTES: process.env.DISK_FREE_BYTES } : {} });
    const names = JSON.parse(fs.readFileSync(matrix, 'utf8')).branches.map((b) => b.name);
    r.branches = Object.fromEntries(names.map((b) => { const m = manifest(branchesDir, b); return [b, { timings: m.timings, builtOn: m.builtOn ?? null }]; }));
    return r;
  });
  const report = await step('report', async () => {
    const json = path.join(work, 'report-stdout.json');
    const r = await measured('report', [gptq, 'report', branchesDir, '--devices', devices, '--device', device,
      '--dataset', evalText, '--seqlen', evalSeqlen, ...(maxWindows ? ['--max-windows', maxWindows] : []), '--remeasure', '--json', '--quiet'],
    { outDir: branchesDir, stdoutFile: json });
    const rep = JSON.parse(fs.readFileSync(json, 'utf8'));
    r.rows = rep.rows.length; r.eval = rep.eval ?? null;
    r.perplexities = Object.fromEntries(rep.rows.map((row) => [row.branch ?? row.name ?? '?', row.perplexity ?? null]));
    return r;
  });

  // ---- projection ----
  let perLayer, fixed, fitFrom;
  if (oneL2) {
    perLayer = (oneL.wallSeconds - oneL2.wallSeconds) / (L - L2); fixed = oneL.wallSeconds - L * perLayer;
    fitFrom = `one-branch runs at ${L2} and ${L} layers`;
  } else {
    const e2e = JSON.parse(fs.readFileSync(path.join(root, 'bench/results/e2e70b-h200.json'), 'utf8'));
    fixed = e2e.fixedSeconds; perLayer = (oneL.wallSeconds - fixed) / L;
    fitFrom = `one-branch run at ${L} layers, fixed part from e2e70b-h200.json`;
  }
  const sMain = oneL.manifestTimings.seconds;
  const inManifestFixed = sMain - L * perLayer;
  const start = oneL.wallSeconds - sMain;
  const per = {};
  for (const [b, { timings }] of Object.entries(eight.branches)) {
    const pl = (timings.seconds - inManifestFixed) / L;
    per[b] = { seconds: timings.seconds, perLayerSeconds: pl, projected80Seconds: fixed + 80 * pl };
  }
  // greedy in matrix order, as the workers take branches: each to the first free worker
  const workers = /^\d+$/.test(devices) ? Number(devices) : Math.max(1, Object.keys(eight.peakGpuGib ?? {}).length);
  const makespan = (times) => {
    const free = new Array(Math.min(workers, times.length)).fill(0);
    for (const t of times) { const k = free.indexOf(Math.min(...free)); free[k] += t; }
    return Math.max(...free);
  };
  const slowestMeasured = makespan(Object.values(per).map((p) => p.seconds)) + start;
  const slowest = Object.entries(per).sort((a, b) => b[1].projected80Seconds - a[1].projected80Seconds)[0];
  const overhead = eight.wallSeconds - slowestMeasured;
  const eight80 = makespan(Object.values(per).map((p) => p.projected80Seconds)) + overhead;
  const report80 = report.wallSeconds * 80 / L;
  const out = {
    card, date: new Date().toISOString().slice(0, 10), small,
    what: `gptq branches --devices ${devices} --device ${device} (configs/llama-2-70b-gptq.json, ${nsamples} × ${seqlen} tokens of valid.txt, ` +
      `split validation) and gptq report --devices ${devices} on a synthetic ${L}-layer ${path.basename(path.dirname(config))}-shaped fp16 checkpoint; ` +
      'one branch alone on one device for the per-layer fit; page cache dropped before each run where allowed',
    layers: L, layers2: L2 || null, gpus: eight.peakGpuGib ? Object.keys(eight.peakGpuGib).length : null,
    oneBranch: { [L]: oneL, ...(oneL2 ? { [L2]: oneL2 } : {}) },
    eightBranches: eight, report,
    fit: { from: fitFrom, perLayerSeconds: perLayer, fixedSeconds: fixed, inManifestFixedSeconds: inManifestFixed, processStartSeconds: start },
    projection80: {
      workers, perBranch: per, slowestBranch: slowest[0], slowestBranchSeconds: slowest[1].projected80Seconds,
      schedulingOverheadSeconds: overhead, eightBranchesSeconds: eight80,
      reportSeconds: report80, totalSeconds: eight80 + report80,
      goals: { eightBranchesMaxSeconds: 600, reportMaxSeconds: 180, eightBranchesMet: eight80 <= 600, reportMet: report80 <= 180 },
    },
  };
  const file = path.join(results, `multi-gpu-70b-${slug}.json`);
  fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);

  const f = (x, d = 1) => (x === null || x === undefined ? '-' : Number(x).toFixed(d));
  const gpuMax = (r) => (r.peakGpuGib ? f(Math.max(...Object.values(r.peakGpuGib))) : '-');
  const rows = [
    [`one branch, ${L} layers, 1 device`, oneL], ...(oneL2 ? [[`one branch, ${L2} layers, 1 device`, oneL2]] : []),
    [`8 branches, --devices ${devices}`, eight], [`report, --devices ${devices}`, report],
  ];
  console.log(`\n${card}: ${L}-layer ${path.basename(path.dirname(config))}-shaped model, ${nsamples} × ${seqlen} calibration tokens`);
  console.log('| run | wall s | peak tree RSS GB | procs | peak GPU GiB (max card) | disk peak / end GB |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const [n, r] of rows)
    console.log(`| ${n} | ${f(r.wallSeconds)} | ${f(r.peakTreeRssGb, 2)} | ${r.peakProcesses} | ${gpuMax(r)} | ${f(r.diskPeakGb, 2)} / ${f(r.diskEndGb, 2)} |`);
  if (eight.peakGpuGib) console.log(`  peak GPU per card, 8 branches (GiB): ${Object.entries(eight.peakGpuGib).map(([i, g]) => `${i}: ${f(g)}`).join(', ')}`);
  console.log(`  fit (${fitFrom}): ${f(perLayer, 2)} s per layer + ${f(fixed)} s fixed`);
  console.log('  per branch in the 8-way run (manifest s → projected 80-layer s): ' +
    Object.entries(per).map(([b, p]) => `${b} ${f(p.seconds)} → ${f(p.projected80Seconds)}`).join('; '));
  console.log(`  scheduling overhead: ${f(overhead)} s (8-branch wall − the branches' own walls scheduled on ${workers} workers, ${f(slowestMeasured)} s)`);
  console.log(`  projection, 80 layers: eight branches ${f(eight80 / 60, 2)} min (slowest ${slowest[0]}) — goal ≤ 10 min: ${eight80 <= 600 ? 'met' : 'NOT met'}`);
  console.log(`                         report ${f(report80 / 60, 2)} min more (${f(report.wallSeconds)} s × 80 / ${L}) — goal ≤ 3 min: ${report80 <= 180 ? 'met' : 'NOT met'}`);
  console.log(`  → ${file}`);
}

main().catch((e) => { console.error(`multi-gpu-70b: ${e.message}`); process.exit(1); });
