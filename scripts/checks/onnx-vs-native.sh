#!/bin/bash
# ONNX vs native perplexity on the full protocol: llama2-m fp16 and GPTQ branches, wiki.test.raw,
# seqlen 4096, GPTQ_FORGE_THREADS threads (default 2). For each model: export-onnx, eval --engine
# onnx on the export, eval with the native engine; JSON and /usr/bin/time lines into OUT.
# Then `node scripts/checks/collect-onnx-vs-native.js OUT` writes bench/results/onnx-vs-native-cpu.json.
#
#   bash scripts/checks/onnx-vs-native.sh OUT BRANCHES_DIR [names...]
# (default names: main gptq-4bit-128g-actorder_True gptq-3bit-128g-actorder_False; each a
# folder of BRANCHES_DIR made by `gptq quantize` from llama2-m; "fp16" is llama2-m itself)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$1; BR=$2; shift 2
NAMES=${*:-main gptq-4bit-128g-actorder_True gptq-3bit-128g-actorder_False}
export GPTQ_FORGE_THREADS=${GPTQ_FORGE_THREADS:-2}
DS=../shared/datasets/wikitext-2-raw-v1/wiki.test.raw
mkdir -p "$OUT"
for name in fp16 $NAMES; do
  if [ "$name" = fp16 ]; then M=../shared/models/llama2-m; else M=$BR/$name; fi
  O=$OUT/$name.onnx
  /usr/bin/time -f "%e s wall, %M KB maxrss" nice -n 10 node bin/gptq.js export-onnx "$M" --out "$O" --force --json --quiet > "$OUT/$name-export.json" 2> "$OUT/$name-export.time"
  /usr/bin/time -f "%e s wall, %M KB maxrss" nice -n 10 node bin/gptq.js eval --model "$M" --dataset $DS --seqlen 4096 --engine onnx --onnx "$O" --json --quiet > "$OUT/$name-onnx.json" 2> "$OUT/$name-onnx.time"
  /usr/bin/time -f "%e s wall, %M KB maxrss" nice -n 10 node bin/gptq.js eval --model "$M" --dataset $DS --seqlen 4096 --json --quiet > "$OUT/$name-native.json" 2> "$OUT/$name-native.time"
  echo "$name done $(date -u +%H:%M:%S)"
done
