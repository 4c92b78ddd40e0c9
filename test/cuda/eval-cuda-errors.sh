#!/usr/bin/env bash
# Bad input to `gptq eval --device cuda` on a GPU host: each case must end with one
# `gptq: error:` line on stderr and a non-zero exit. (The no-CUDA-build case runs in CI:
# test/cli/eval-device.test.ts.) Prints one row per case; exits 1 if any case misbehaves.
#   bash test/cuda/eval-cuda-errors.sh          (env: CONFIG, TOKENIZER_FROM, DATASET, WORK, NODE)
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
node="${NODE:-$( [ -x bin/node ] && echo bin/node || echo node )}"
config="${CONFIG:-../shared/models/llama-2-70b/config.json}"
tok="${TOKENIZER_FROM:-../shared/models/llama2-m}"
data="${DATASET:-../shared/datasets/wikitext-2-raw-v1/wiki.test.raw}"
work="${WORK:-/tmp/gptq-eval-errors}"
rm -rf "$work" && mkdir -p "$work"
bad=0
check() {  # check NAME EXPECTED-REGEX -- command...
  local name=$1 want=$2; shift 3
  "$@" > "$work/out" 2> "$work/err"
  local code=$? lines; lines=$(grep -c . "$work/err")
  local ok=yes
  { [ "$code" -eq 0 ] || [ "$lines" -ne 1 ] || ! grep -qE "^gptq: error: .*($want)" "$work/err"; } && ok=NO && bad=1
  printf '%-28s exit %s, %s line(s), ok: %s\n    %s\n' "$name" "$code" "$lines" "$ok" "$(head -c 400 "$work/err")"
}
eval_cmd() { "$node" bin/gptq.js eval --dataset "$data" --seqlen 4096 --device cuda --quiet "$@"; }

small="$work/small.json"
"$node" -e 'const c = require(process.argv[1]); Object.assign(c, { hidden_size: 512, intermediate_size: 1408, num_attention_heads: 4, num_key_value_heads: 2 }); require("node:fs").writeFileSync(process.argv[2], JSON.stringify(c))' "$(realpath "$config")" "$small"

# 1. No visible GPU.
"$node" bench/make-synthetic-llama.js --config "$small" --layers 1 --tokenizer-from "$tok" --out "$work/fp16" > /dev/null
check "no visible GPU" "no CUDA device is visible" -- env CUDA_VISIBLE_DEVICES= "$node" bin/gptq.js eval --model "$work/fp16" --dataset "$data" --device cuda --quiet

# 2. A branch whose tensor shapes disagree with its config.
"$node" bench/make-synthetic-gptq.js --config "$small" --layers 1 --bits 4 --group-size 128 --act-order true --tokenizer-from "$tok" --out "$work/branch" > /dev/null
"$node" -e 'const f = process.argv[1], c = JSON.parse(require("node:fs").readFileSync(f)); c.intermediate_size = 1536; require("node:fs").writeFileSync(f, JSON.stringify(c))' "$work/branch/config.json"
check "shapes disagree with config" "does not match config.json" -- eval_cmd --model "$work/branch"

# 3. A model too large for the card's free memory (sparse files: no weight is ever read).
"$node" -e 'const c = require(process.argv[1]); c.intermediate_size = 3050496; require("node:fs").writeFileSync(process.argv[2], JSON.stringify(c))' "$(realpath "$config")" "$work/huge.json"
"$node" bench/make-synthetic-llama.js --config "$work/huge.json" --layers 1 --tokenizer-from "$tok" --out "$work/huge" --sparse true > /dev/null
check "too large for the GPU" "does not fit on the GPU" -- eval_cmd --model "$work/huge"
rm -rf "$work/huge"

# 4. A shard truncated while the run reads the layers before it.
"$node" bench/make-synthetic-llama.js --config "$config" --layers 3 --tokenizer-from "$tok" --out "$work/trunc" --max-shard-gb 1 > /dev/null
last=$(ls "$work/trunc"/model-*.safetensors | sort | tail -1)
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
( sleep 2; truncate -s $(( $(stat -c %s "$last") / 2 )) "$last" ) &
check "shard truncated mid-run" "truncated" -- eval_cmd --model "$work/trunc"
wait
rm -rf "$work"
exit $bad
