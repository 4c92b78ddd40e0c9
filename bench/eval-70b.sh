#!/usr/bin/env bash
# npm run bench:eval70b: perplexity of a Llama-2-70B-shaped GPTQ branch on one GPU, disk to
# perplexity, on the whole of wiki.test.raw at seqlen 4096 (81 windows, 331,776 tokens).
#  1. Writes a synthetic 4-bit g128 act-order branch with all 80 layers straight in the AutoGPTQ
#     layout (bench/make-synthetic-gptq.js: random codes, scales that keep the activations
#     finite: the perplexity is meaningless, the time is not), about 36 GB.
#  2. Drops the page cache where allowed (weights then come from disk) and times the real
#     `gptq eval --device cuda --json` as a process, start to exit, while nvidia-smi samples the
#     GPU's memory; prints the time per stage, tokens/s, TFLOP/s against the GEMM ceiling
#     measured by build/cuda/gemm_ceiling (bench/native/gemm_ceiling.cu), the disk read rate, peak GPU memory and host RSS.
#  3. Projects the fp16 base (138 GB, more than the disk holds) from synthetic fp16 checkpoints of
#     2 and 4 layers (bench/make-synthetic-llama.js): per layer = (t4 − t2) / 2.
# Token ids come from the tokenizer cache: the first of the runs (a 1-window warm-up) tokenizes
# the text unless its ids are cached already, as any first run does; its time is printed apart.
# The fp16 projection is the larger of the 2/4-layer fit and the time to read 80 layers at the
# measured disk rate (a base of 138 GB is read-bound where the disk gives less than ~1.8 GB/s).
# Environment: CONFIG (70B config.json), TOKENIZER_FROM (a folder with the Llama-2 tokenizer),
# DATASET (wiki.test.raw), WORK (scratch folder, default /tmp/gptq-eval70b), LAYERS (80),
# RESULTS (where the JSON summary goes, default bench/results), NODE.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
node="${NODE:-$( [ -x bin/node ] && echo bin/node || echo node )}"
config="${CONFIG:-../shared/models/llama-2-70b/config.json}"
tok="${TOKENIZER_FROM:-../shared/models/llama2-m}"
data="${DATASET:-../shared/datasets/wikitext-2-raw-v1/wiki.test.raw}"
work="${WORK:-/tmp/gptq-eval70b}"
layers="${LAYERS:-80}"
results="${RESULTS:-bench/results}"
for f in "$config" "$data" "$tok/tokenizer.json"; do [ -e "$f" ] || { echo "bench:eval70b: $f not found" >&2; exit 2; }; done
mkdir -p "$work" "$results"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo kept; }
# Runs `gptq eval` as a timed process with nvidia-smi sampling: run_eval NAME MODEL [args...]
run_eval() {
  local name=$1 model=$2; shift 2
  local cache; cache=$(drop_caches)
  local smi=""
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$work/$name.smi" 2>/dev/null &
    smi=$!
  fi
  local t0 wall; t0=$(now)
  "$node" bin/gptq.js eval --model "$model" --dataset "$data" --seqlen 4096 --device cuda --json --quiet "$@" > "$work/$name.json"
  wall=$(since "$t0")
  [ -n "$smi" ] && kill "$smi" 2>/dev/null && wait "$smi" 2>/dev/null || true
  local peak=0
  [ -s "$work/$name.smi" ] && peak=$(sort -n "$work/$name.smi" | tail -1)
  echo "{\"wall\": $wall, \"smiPeakMiB\": $peak, \"pageCache\": \"$cache\"}" > "$work/$name.wall.json"
  echo "  $name: $wall s wall (page cache $cache)"
}

ceiling=""
if [ -x build/cuda/gemm_ceiling ]; then
  echo "GEMM ceiling (build/cuda/gemm_ceiling):"
  ceiling=$(build/cuda/gemm_ceiling | tee "$work/gemm_ceiling.log" | sed -n 's/^GEMM ceiling (best measured): \([0-9.]*\).*/\1/p')
  echo "  $ceiling TFLOP/s"
fi

echo "fp16 projection: synthetic fp16 checkpoints of 2 and 4 layers"
for n in 2 4; do
  "$node" bench/make-synthetic-llama.js --config "$config" --layers $n --tokenizer-from "$tok" --out "$work/fp16-$n" > /dev/null
done
t0=$(now)
"$node" bin/gptq.js eval --model "$work/fp16-2" --dataset "$data" --seqlen 4096 --device cuda --max-windows 1 --json --quiet > "$work/warmup.json"
tokenize=$(since "$t0")
echo "  warm-up, 1 window (tokenizes the text unless its ids are cached): $tokenize s"
run_eval fp16-2 "$work/fp16-2"
run_eval fp16-4 "$work/fp16-4"
rm -rf "$work/fp16-2" "$work/fp16-4"

echo "GPTQ branch: $layers layers, 4-bit, group 128, act-order"
t0=$(now)
"$node" bench/make-synthetic-gptq.js --config "$config" --layers "$layers" --bits 4 --group-size 128 --act-order true \
  --tokenizer-from "$tok" --out "$work/gptq" | tail -1
echo "  written in $(since "$t0") s"
run_eval gptq "$work/gptq"
du -sb "$work/gptq" | cut -f1 > "$work/gptq.bytes"

"$node" - "$work" "$results" "$layers" "${ceiling:-0}" "$tokenize" <<'JS'
const fs = require('node:fs');
const [work, results, layers, ceiling, tokenize] = process.argv.slice(2);
const read = (f) => JSON.parse(fs.readFileSync(`${work}/${f}`, 'utf8'));
const runs = Object.fromEntries(['fp16-2', 'fp16-4', 'gptq'].map((n) => [n, { ...read(`${n}.json`), ...read(`${n}.wall.json`) }]));
const g = runs.gptq, c = g.cuda, L = Number(layers);
const perLayer16 = (runs['fp16-4'].wall - runs['fp16-2'].wall) / 2;
const fixed16 = runs['fp16-2'].wall - 2 * perLayer16;
const summary = {
  card: g.device, date: new Date().toISOString().slice(0, 10),
  what: `gptq eval --device cuda on a synthetic Llama-2-70B-shaped 4-bit g128 act-order branch with ${L} layers, ` +
    'the whole wiki.test.raw at seqlen 4096, page cache dropped before each run; token ids cached',
  branchBytes: Number(fs.readFileSync(`${work}/gptq.bytes`, 'utf8')),
  endToEndSeconds: g.wall, evalSeconds: g.seconds, windows: g.windows, evaluatedTokens: g.evaluatedTokens,
  tokensPerSecond: g.evaluatedTokens / g.wall, perplexity: g.perplexity,
  stages: c.stages, flops: c.flops, tflopsOverEval: g.tflops, tflopsEndToEnd: c.flops.total / g.wall / 1e12,
  gemmTflops: c.flops.gemm / c.stages.gemm / 1e12, attentionTflops: c.flops.attention / c.stages.attention / 1e12,
  gemmCeilingTflops: Number(ceiling) || null, readGBps: c.readGBps, bytesRead: c.bytesRead,
  peakGpuGb: c.peakGpuGb, nvidiaSmiPeakGiB: g.smiPeakMiB / 1024, maxRssGb: g.maxRssGb, pageCache: g.pageCache,
  warmupSeconds: Number(tokenize),
  fp16Projection: {
    wall2: runs['fp16-2'].wall, wall4: runs['fp16-4'].wall, perLayer: perLayer16, fixed: fixed16,
    fit80: fixed16 + 80 * perLayer16, readGBps4: runs['fp16-4'].cuda.readGBps, maxRssGb4: runs['fp16-4'].maxRssGb,
    bytes80: runs['fp16-2'].cuda.bytesRead + 78 * (runs['fp16-4'].cuda.bytesRead - runs['fp16-2'].cuda.bytesRead) / 2,
  },
};
const p = summary.fp16Projection;
p.readBound80 = p.bytes80 / (p.readGBps4 * 1e9);
p.projected80 = Math.max(p.fit80, p.readBound80);
const card = String(g.device).toLowerCase().replace(/^nvidia\s+/, '').replace(/[^a-z0-9]+/g, '-');
fs.writeFileSync(`${results}/eval70b-${card}.json`, JSON.stringify(summary, null, 2) + '\n');
const f = (x, d = 1) => Number(x).toFixed(d);
const s = c.stages;
console.log(`\n${g.device}: ${L}-layer 70B-shaped 4-bit branch (${f(summary.branchBytes / 1e9)} GB), ${g.windows} windows × 4096`);
console.log(`  end to end (process start to exit): ${f(g.wall)} s; eval ${f(g.seconds)} s; ${f(summary.tokensPerSecond, 0)} tokens/s`);
console.log(`  stages (s): read ${f(s.read)} (GPU waited ${f(s.readWait)}), embed ${f(s.embed, 2)}, dequant ${f(s.dequant, 2)}, ` +
  `GEMMs ${f(s.gemm)}, attention ${f(s.attention)}, other ${f(s.other)}, head ${f(s.head, 2)}`);
console.log(`  ${f(c.flops.total / 1e15, 2)} PFLOP: ${f(g.tflops, 0)} TFLOP/s over the eval, GEMMs ${f(summary.gemmTflops, 0)} / ` +
  `ceiling ${ceiling || '?'} TFLOP/s, attention ${f(summary.attentionTflops, 0)} TFLOP/s`);
console.log(`  disk read ${f(c.readGBps, 2)} GB/s of ${f(c.bytesRead / 1e9)} GB; peak GPU ${f(c.peakGpuGb)} GB (nvidia-smi ${f(summary.nvidiaSmiPeakGiB)} GiB); host RSS ${f(g.maxRssGb)} GB`);
console.log(`  fp16 base projected: ${f(p.projected80)} s: the fit ${f(fixed16)} s + 80 × ${f(perLayer16, 2)} s = ${f(p.fit80)} s, ` +
  `reading ${f(p.bytes80 / 1e9)} GB at ${f(p.readGBps4, 2)} GB/s = ${f(p.readBound80)} s`);
console.log(`  wrote ${results}/eval70b-${card}.json`);
JS
