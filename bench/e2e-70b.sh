#!/usr/bin/env bash
# End-to-end Llama-2-70B-shaped branch builds on a GPU host, for the projection of a real run:
#   bash bench/e2e-70b.sh SHARED_DIR [WORK_DIR=/tmp/e2e70b]
# SHARED_DIR holds models/llama-2-70b/config.json, models/llama2-m (its tokenizer) and
# datasets/wikitext-2-v1/valid.txt. Writes synthetic sharded fp16 checkpoints of the 70B shape with
# 2 and 4 decoder layers (bench/make-synthetic-llama.js, 4.5 + 7.9 GB), drops the page cache when
# allowed (weights then come from disk, as 140 GB would), and times the real command
#   gptq branches --device cuda --only main (4-bit, act-order; 128 × 4096 tokens of valid.txt)
# on each, polling the GPU's memory. Per layer = (T4 − T2) / 2, fixed = T2 − 2 · per layer; the
# projection for 80 layers and eight branches follows, and a third run with --checkpoint-every 0
# prices one activation checkpoint (8.6 GB). Prints a table; writes bench/results/e2e70b-<card>.json.
set -euo pipefail
shared="$(cd "$1" && pwd)"
work="${2:-/tmp/e2e70b}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
node="$(command -v node || echo bin/node)"
[ -x bin/node ] && node=bin/node
card="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
mkdir -p "$work" bench/results
for L in 2 4; do
  [ -f "$work/syn$L/config.json" ] || "$node" bench/make-synthetic-llama.js --config "$shared/models/llama-2-70b/config.json" \
    --layers $L --tokenizer-from "$shared/models/llama2-m" --out "$work/syn$L" | tail -1
done
run() {  # name layers [extra args]: prints "wall_s rss_kb gpu_peak_mib"
  local name=$1 layers=$2; shift 2
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  rm -rf "$work/out-$name"
  (nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$work/gpu-$name.log" 2>/dev/null) & local smi=$!
  /usr/bin/time -f "%e %M" -o "$work/time-$name.txt" "$node" bin/gptq.js branches --model "$work/syn$layers" \
    --matrix configs/llama-2-70b-gptq.json --only main --out "$work/out-$name" --device cuda \
    --dataset "$shared/datasets/wikitext-2-v1/valid.txt" --quiet "$@" >&2
  kill $smi
  echo "$(cat "$work/time-$name.txt") $(sort -n "$work/gpu-$name.log" | tail -1)"
}
read -r t2 rss2 gpu2 < <(run L2 2)
read -r t4 rss4 gpu4 < <(run L4 4)
read -r tc rssc gpuc < <(run L4ckpt 4 --checkpoint-every 0)
"$node" - "$card" "$work" "$t2" "$t4" "$tc" "$rss2" "$rss4" "$rssc" "$gpu2" "$gpu4" "$gpuc" <<'JS'
const fs = require('node:fs');
const [card, work, t2, t4, tc, rss2, rss4, rssc, gpu2, gpu4, gpuc] = process.argv.slice(2);
const perLayer = (t4 - t2) / 2, fixed = t2 - 2 * perLayer, checkpoint = (tc - t4) / 3;
const timings = (n) => JSON.parse(fs.readFileSync(`${work}/out-${n}/main/manifest.json`, 'utf8')).timings;
const branch80 = fixed + 80 * perLayer;
const out = {
  card, date: new Date().toISOString().slice(0, 10),
  what: 'gptq branches --device cuda --only main on synthetic Llama-2-70B-shaped fp16 checkpoints (2 and 4 layers), 128 × 4096 calibration tokens, page cache dropped',
  wallSeconds: { L2: +t2, L4: +t4, L4checkpointEvery0: +tc },
  perLayerSeconds: perLayer, fixedSeconds: fixed, checkpointSeconds: checkpoint,
  maxRssGb: { L2: rss2 / 1e6, L4: rss4 / 1e6, L4checkpointEvery0: rssc / 1e6 },
  peakGpuGib: { L2: gpu2 / 1024, L4: gpu4 / 1024, L4checkpointEvery0: gpuc / 1024 },
  manifestTimings: { L2: timings('L2'), L4: timings('L4') },
  projection: { branchMinutes: branch80 / 60, eightBranchesHours: 8 * branch80 / 3600 },
};
const file = `bench/results/e2e70b-${card.toLowerCase().replace(/^nvidia\s+/, '').replace(/[^a-z0-9]+/g, '-')}.json`;
fs.writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
const f = (x) => x.toFixed(1);
console.log(`${card}: end-to-end, 70B-shaped layers, 128 × 4096 calibration tokens`);
console.log(`  wall: 2 layers ${f(+t2)} s, 4 layers ${f(+t4)} s → ${f(perLayer)} s per layer + ${f(fixed)} s fixed`);
console.log(`  one activation checkpoint (8.6 GB, --checkpoint-every 0): ${f(checkpoint)} s`);
console.log(`  peak GPU memory ${f(gpu4 / 1024)} GiB, max host RSS ${f(rss4 / 1e6)} GB (${f(rssc / 1e6)} GB with checkpoints)`);
console.log(`  projection, 80 layers: ${f(branch80 / 60)} min per branch, ${(8 * branch80 / 3600).toFixed(2)} h for eight (no checkpoint; +${f(checkpoint)} s each)`);
console.log(`  → ${file}`);
JS
