#!/usr/bin/env node
/**
 * QEP (`--qep [alpha]`, docs/gptq.md "QEP") on the CPU engine against the CUDA engine, end to end:
 *   node test/cuda/qep-cpu-vs-cuda.js [options] [<model dir> <calibration text> <evaluation text>]
 * Defaults: $SHARED/models/llama2-s, $SHARED/datasets/wikitext-2-v1/valid.txt,
 * $SHARED/datasets/wikitext-2-raw-v1/wiki.test.raw (SHARED: default ../shared beside the checkout).
 * Options: --method qep|gptaq (qep; gptaq: the same comparison for GPTAQ, `--gptaq [alpha]`,
 * docs/gptq.md "GPTAQ": its branches, names and bars are QEP's with "gptaq" for "qep"),
 * --alpha <a> (0.5 for qep, 0.25 for gptaq), --nsamples <n> (16), --seqlen <n> (512), --eval-windows <k> (8),
 * --work <dir> (scratch, kept; default a fresh /tmp folder, removed on success),
 * --cpu-only (dry run without a GPU: every step on the CPU engine, bars that compare the two
 * engines become INFO lines; checks the script, the CPU half and the resume logic).
 * Steps (4-bit, g128, act-order, damp 0.01, sym, true-sequential; calibration sampled as
 * `gptq quantize --dataset <file> --seed 0` samples it):
 *  1. one QEP branch per engine through the library (driver.ts + BranchWriter, as
 *     cuda-ppl-check.js does): the per-linear losses exist only there (neither the manifest nor
 *     `gptq quantize --json` records them: --json has their sum);
 *  2. their per-linear losses compared (bars below);
 *  3. their perplexity by `gptq eval --device cpu` (the same evaluation code for both, so only
 *     the build differs) on the first --eval-windows windows at --seqlen: within ±1 %;
 *  4. a plain GPTQ branch on the CUDA engine, evaluated the same way: whether QEP's perplexity is
 *     lower is printed (INFO, no bar: one seed, one small model);
 *  5. `gptq branches --device cuda --checkpoint-every 0` (a checkpoint after every layer) of the
 *     same QEP branch, SIGKILLed once its work folder has committed a layer and before the last
 *     (there is no stop-after-layer knob), then `--resume`: the resumed branch's model.safetensors
 *     must have the sha256 of an uninterrupted build's.
 * Loss bars. The plain check (cuda-pipeline-check.js; bench/results/cuda-parity.md) holds every
 * linear's loss within 2 % (measured ≤ 1.4 % with act-order on llama2-s, H100): the engines differ
 * in summation order, and from the first attention on their inputs differ by fp16 roundings that
 * GPTQ's error feedback carries along each row. QEP adds a term made of a difference: C from
 * (X̃ − X), the fp16 path minus the quantized path, small against either, so the engines' last-bit
 * differences in X (and the GPU's one fp16 rounding of (X̃ − X)/2) are a larger relative
 * perturbation of C than of H, and W* = W + α W C (H + λI)⁻¹ moves with them. So the plain
 * check's 2 % is kept where QEP cannot move it and as the typical (median) figure, with a looser
 * ceiling for the worst linear:
 *  - layer 0's k/v/q: inputs identical on both engines and X̃ = X (both paths start as the
 *    embeddings), so C = 0, W* = W and the solve is plain GPTQ's: each within 2 %, as plain
 *    (GPTAQ: C = 0 gives P = 0, plain GPTQ's solve too);
 *  - all linears: median |GPU/CPU − 1| ≤ 2 % and max ≤ 10 %.
 * Perplexity ±1 %: two valid builds of plain GPTQ land 0.57-0.65 % apart on llama2-s (CPU vs
 * reversed windows, CPU vs GPU: cuda-parity.md), and the build's differences are what is measured
 * here (same evaluation code, same windows).
 * Prints PASS/FAIL/INFO lines; exit 0 when nothing failed, 1 on a failure, 2 on an error.
 */
const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const root = path.resolve(__dirname, '../..');
const cli = path.join(root, 'bin/gptq.js');

function parseArgs(argv) {
  const o = { method: 'qep', alpha: null, nsamples: 16, seqlen: 512, evalWindows: 8, work: null, cpuOnly: false, files: [] };
  const num = (flag, v, ok) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || !ok(n)) throw new Error(`${flag}: bad value ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--cpu-only') o.cpuOnly = true;
    else if (a === '--method') { o.method = argv[++i]; if (o.method !== 'qep' && o.method !== 'gptaq') throw new Error(`--method: expected qep or gptaq, got ${JSON.stringify(o.method)}`); }
    else if (a === '--alpha') o.alpha = num(a, argv[++i], (n) => n > 0 && n <= 1);
    else if (a === '--nsamples') o.nsamples = num(a, argv[++i], (n) => Number.isInteger(n) && n > 0);
    else if (a === '--seqlen') o.seqlen = num(a, argv[++i], (n) => Number.isInteger(n) && n > 0);
    else if (a === '--eval-windows') o.evalWindows = num(a, argv[++i], (n) => Number.isInteger(n) && n > 0);
    else if (a === '--work') { o.work = argv[++i]; if (!o.work) throw new Error('--work: missing folder'); }
    else if (a === '-h' || a === '--help') o.help = true;
    else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else o.files.push(a);
  }
  o.alpha ??= o.method === 'gptaq' ? 0.25 : 0.5;
  if (o.files.length !== 0 && o.files.length !== 3) throw new Error('expected <model dir> <calibration text> <evaluation text>, or none');
  const shared = process.env.SHARED ?? path.join(root, '../shared');
  [o.model, o.calibText, o.evalText] = o.files.length ? o.files.map((f) => path.resolve(f)) : [
    path.join(shared, 'models/llama2-s'), path.join(shared, 'datasets/wikitext-2-v1/valid.txt'),
    path.join(shared, 'datasets/wikitext-2-raw-v1/wiki.test.raw')];
  return o;
}

const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const median = (v) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const pct = (x, d = 3) => `${(100 * x).toFixed(d)} %`;

/** Runs the CLI to completion; throws with its stderr's tail unless it exits 0. */
function gptq(args) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`gptq ${args.join(' ')} exited ${r.status ?? r.signal}: ${(r.stderr || '').slice(-800)}`);
  return r.stdout;
}

const perplexity = (dir, o) => JSON.parse(gptq(['eval', '--model', dir, '--dataset', o.evalText, '--seqlen', String(o.seqlen),
  '--max-windows', String(o.evalWindows), '--device', 'cpu', '--json', '--quiet']).trim().split('\n').pop()).perplexity;

(async () => {
  const o = parseArgs(process.argv.slice(2));
  if (o.help) {
    console.log('usage: qep-cpu-vs-cuda.js [--cpu-only] [--method qep|gptaq] [--alpha a] [--nsamples n] [--seqlen n] [--eval-windows k] [--work dir] [<model> <calib text> <eval text>]');
    return 0;
  }
  for (const f of [path.join(o.model, 'model.safetensors'), o.calibText, o.evalText]) {
    if (!fs.existsSync(f)) throw new Error(`input missing: ${f} (set SHARED=… or pass the paths)`);
  }
  const { cudaAvailable } = require(path.join(root, 'dist/native'));
  const { LlamaModel } = require(path.join(root, 'dist/model/llama-model'));
  const { BranchWriter, packLinear } = require(path.join(root, 'dist/gptq/branch-writer'));
  const { quantizeLayers } = require(path.join(root, 'dist/gptq/driver'));
  const { loadCalibration } = require(path.join(root, 'dist/gptq/calibration-set'));
  const { validateSettings } = require(path.join(root, 'dist/gptq/settings'));
  const gpu = o.cpuOnly ? 'cpu' : 'cuda';
  const tag = o.cpuOnly ? 'cpu2' : 'cuda'; // the second build's name (with --cpu-only, a second CPU build)
  if (!o.cpuOnly && !cudaAvailable()) throw new Error('the addon has no usable CUDA device (run with --cpu-only for a dry run)');
  const m = o.method, M = m.toUpperCase(); // the branch names' prefix, and the method's name in messages
  const work = path.resolve(o.work ?? fs.mkdtempSync(path.join(os.tmpdir(), 'qep-cpu-vs-cuda-')));
  fs.mkdirSync(work, { recursive: true });
  console.log(`qep-cpu-vs-cuda: ${M}, ${o.model}, α ${o.alpha}, ${o.nsamples} × ${o.seqlen} of ${o.calibText}, ` +
    `eval ${o.evalWindows} × ${o.seqlen} of ${o.evalText}; second engine ${gpu}${o.cpuOnly ? ' (--cpu-only dry run)' : ''}; work ${work}`);
  let failures = 0;
  const verdict = (ok, what) => {
    if (o.cpuOnly) { console.log(`INFO (${ok ? 'would pass' : 'would fail'}, --cpu-only) ${what}`); return; }
    if (!ok) failures++;
    console.log(`${ok ? 'PASS' : 'FAIL'} ${what}`);
  };
  const must = (ok, what) => { if (!ok) failures++; console.log(`${ok ? 'PASS' : 'FAIL'} ${what}`); };

  // 1. The library builds.
  const model = await LlamaModel.open(o.model);
  const calib = await loadCalibration(o.model, o.calibText, { split: 'train', nsamples: o.nsamples, seqlen: o.seqlen, seed: 0 });
  const base = { bits: 4, groupSize: 128, actOrder: true, staticGroups: false, sym: true, mse: false, dampPercent: 0.01, trueSequential: true };
  const method = { ...base, [m]: o.alpha };
  validateSettings(method, model.config);
  const build = async (name, device, s) => {
    const out = path.join(work, name);
    fs.rmSync(out, { recursive: true, force: true });
    const writer = await BranchWriter.create(out, `${out}.tmp`, model, s, { modelNameOrPath: path.basename(o.model) });
    const t0 = Date.now();
    let r;
    try {
      r = await quantizeLayers(model, calib.tokens, calib.seqlen, s, async (l, n, solve, shape) =>
        writer.writeTensors(await packLinear(l, n, solve, shape, s.bits, s.groupSize)), {}, undefined, device);
      await writer.finish();
    } catch (e) {
      await writer.abort();
      throw e;
    }
    const loss = r.linears.reduce((a, l) => a + l.loss, 0);
    console.log(`${name}: built on ${device} in ${((Date.now() - t0) / 1e3).toFixed(1)} s, ${r.linears.length} linears, Σ loss ${loss.toPrecision(6)}, stages ${JSON.stringify(r.times)}`);
    return { out, linears: new Map(r.linears.map((l) => [`${l.layer} ${l.name}`, l.loss])) };
  };
  const cpu = await build(`${m}-cpu`, 'cpu', method);
  const cuda = await build(`${m}-${tag}`, gpu, method);
  const plain = await build(`plain-${tag}`, gpu, base);
  await model.close();

  // 2. Per-linear losses.
  console.log('     linear                         CPU loss   GPU loss    rel %');
  const rels = [];
  for (const [key, lc] of cpu.linears) {
    const lg = cuda.linears.get(key);
    if (lg === undefined) { must(false, `${key}: no loss from the ${gpu} build`); continue; }
    const rel = lg / lc - 1;
    rels.push(Math.abs(rel));
    const first = /^0 self_attn\.[kvq]_proj$/.test(key); // C = 0 here: plain GPTQ's bar
    const line = `${key.padEnd(24)} ${lc.toPrecision(6).padStart(12)} ${lg.toPrecision(6).padStart(10)} ${(100 * rel).toFixed(3).padStart(8)}`;
    if (first) verdict(Math.abs(rel) <= 0.02, `${line}  (layer 0 k/v/q: C = 0, within 2 %)`);
    else console.log(`     ${line}`);
  }
  must(cuda.linears.size === cpu.linears.size && rels.length === cpu.linears.size, `both builds report ${cpu.linears.size} linears (${gpu}: ${cuda.linears.size})`);
  const med = median(rels), max = Math.max(...rels);
  verdict(med <= 0.02, `per-linear loss, ${gpu} vs CPU: median |ratio − 1| ${pct(med)} (bar ≤ 2 %)`);
  verdict(max <= 0.10, `per-linear loss, ${gpu} vs CPU: max |ratio − 1| ${pct(max)} (bar ≤ 10 %); ${rels.filter((r) => r <= 0.02).length}/${rels.length} within 2 %`);

  // 3-4. Perplexity, both QEP (GPTAQ) builds and plain GPTQ, by the same CPU evaluation.
  const ppl = {};
  for (const [name, dir] of [['fp16', o.model], [`${m}-cpu`, cpu.out], [`${m}-${tag}`, cuda.out], [`plain-${tag}`, plain.out]]) {
    const t0 = Date.now();
    ppl[name] = perplexity(dir, o);
    console.log(`${name.padEnd(12)} perplexity ${ppl[name].toFixed(4)} (${o.evalWindows} × ${o.seqlen}, ${((Date.now() - t0) / 1e3).toFixed(1)} s)`);
  }
  const prel = ppl[`${m}-${tag}`] / ppl[`${m}-cpu`] - 1;
  verdict(Math.abs(prel) <= 0.01, `${M} perplexity, ${gpu}-built vs CPU-built: ${(100 * prel).toFixed(3)} % (bar ±1 %)`);
  const gain = ppl[`${m}-${tag}`] / ppl[`plain-${tag}`] - 1;
  console.log(`INFO ${M} α ${o.alpha} vs plain GPTQ (${gpu}, one seed, no bar): perplexity ${ppl[`${m}-${tag}`].toFixed(4)} vs ${ppl[`plain-${tag}`].toFixed(4)}, ` +
    `${(100 * gain).toFixed(3)} %: ${M} is ${gain < 0 ? 'lower' : 'not lower'}`);

  // 5. --resume from a QEP (GPTAQ) checkpoint of the CLI's resumable build.
  const matrix = path.join(work, 'matrix.json');
  fs.writeFileSync(matrix, `${JSON.stringify({
    description: 'qep-cpu-vs-cuda.js: resume check', dataset: o.calibText, split: 'train', seqlen: o.seqlen, nsamples: o.nsamples, seed: 0,
    branches: [{ name: m, bits: 4, groupSize: 128, actOrder: true, damp: 0.01, [m]: o.alpha }],
  }, null, 2)}\n`);
  const numLayers = JSON.parse(fs.readFileSync(path.join(o.model, 'config.json'), 'utf8')).num_hidden_layers;
  const branchArgs = (out) => ['branches', '--matrix', matrix, '--model', o.model, '--out', out, '--device', gpu, '--checkpoint-every', '0', '--quiet'];
  // One attempt: the build is SIGKILLed as soon as its state.json records 1 ≤ layersDone < numLayers
  // (each checkpoint is committed by that file's atomic rename). A build that finishes first is
  // the uninterrupted reference, and the kill is tried again (up to 5 times).
  const attempt = (out) => new Promise((resolve, reject) => {
    fs.rmSync(out, { recursive: true, force: true });
    const state = path.join(out, `${m}.partial`, 'state.json');
    const child = spawn(process.execPath, [cli, ...branchArgs(out)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '', killedAt = null;
    child.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
    const poll = setInterval(() => {
      let done;
      try { done = JSON.parse(fs.readFileSync(state, 'utf8')).layersDone; } catch { return; }
      if (killedAt === null && done >= 1 && done < numLayers) { killedAt = done; child.kill('SIGKILL'); }
    }, 2);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearInterval(poll);
      if (killedAt !== null && signal === 'SIGKILL') resolve({ killedAt });
      else if (code === 0) resolve({ finished: true });
      else reject(new Error(`gptq ${branchArgs(out).join(' ')} exited ${code ?? signal}: ${stderr.slice(-800)}`));
    });
  });
  const resumeOut = path.join(work, 'resume'), refOut = path.join(work, 'uninterrupted');
  let killed = null, reference = null;
  for (let i = 0; i < 5 && !killed; i++) {
    const r = await attempt(resumeOut);
    if (r.killedAt !== undefined) killed = r;
    else if (!reference) { fs.rmSync(refOut, { recursive: true, force: true }); fs.renameSync(resumeOut, refOut); reference = refOut; }
  }
  if (!killed) {
    must(false, `resume: could not SIGKILL the ${gpu} ${M} build between two checkpoints in 5 attempts (it finished first)`);
  } else {
    const st = JSON.parse(fs.readFileSync(path.join(resumeOut, `${m}.partial`, 'state.json'), 'utf8'));
    const x = fs.readdirSync(path.join(resumeOut, `${m}.partial`)).filter((f) => /^x-\d+\.safetensors$/.test(f));
    console.log(`resume: killed after layer ${killed.killedAt - 1} was committed (layersDone ${st.layersDone}/${numLayers}, activations ${x.join(', ') || 'none'})`);
    gptq([...branchArgs(resumeOut), '--resume']);
    if (!reference) { gptq(branchArgs(refOut)); reference = refOut; }
    const mr = JSON.parse(fs.readFileSync(path.join(resumeOut, m, 'manifest.json'), 'utf8'));
    must(mr.resumes >= 1, `resume: the resumed ${gpu} ${M} branch's manifest records ${mr.resumes} resume(s)`);
    const hr = sha256(path.join(resumeOut, m, 'model.safetensors')), hu = sha256(path.join(reference, m, 'model.safetensors'));
    must(hr === hu, `resume: ${gpu} ${M} model.safetensors resumed ${hr.slice(0, 16)}… ${hr === hu ? '=' : '≠'} uninterrupted ${hu.slice(0, 16)}…`);
    const hl = sha256(path.join(cuda.out, 'model.safetensors'));
    console.log(`INFO the library-built ${gpu} ${M} branch's model.safetensors ${hl === hu ? 'equals' : 'differs from'} the CLI's (${hl.slice(0, 16)}…; not checked)`);
  }

  console.log(`${failures ? 'FAILED' : 'ALL PASSED'}: ${failures} failure(s)${o.cpuOnly ? ' (--cpu-only: the engine comparisons were not checked)' : ''}`);
  if (!failures && !o.work) fs.rmSync(work, { recursive: true, force: true });
  return failures ? 1 : 0;
})().then((code) => process.exit(code), (e) => { console.error(`qep-cpu-vs-cuda: error: ${e.stack}`); process.exit(2); });
