#!/usr/bin/env bash
# npm run bench:layer70b: builds the CUDA backend (native/build-cuda.sh; needs nvcc, cuBLAS,
# cuSOLVER and a GPU with ~40 GB free) and runs the Llama-2-70B layer benchmark, writing
# bench/results/layer70b-<card>.json. Extra arguments go to the benchmark (e.g. --windows 16,
# --mse, --qep 0.5). `--recipe NAME` is replaced by the recipe's flags (src/gptq/recipes.ts,
# through bench/native/layer70b-recipe.js on dist/; npx tsc -p tsconfig.json first). After the
# run, the layer time is printed relative to the default run of the same card and size.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--recipe" ]; then
    [ $# -ge 2 ] || { echo "bench:layer70b: --recipe needs a name" >&2; exit 2; }
    flags="$(node bench/native/layer70b-recipe.js flags "$2")" || exit 2
    while IFS= read -r f; do [ -n "$f" ] && args+=("$f"); done <<< "$flags"
    shift 2
  else
    args+=("$1")
    shift
  fi
done
if ! bash native/build-cuda.sh --require; then
  echo "bench:layer70b needs a CUDA toolkit with cuBLAS and cuSOLVER (and an NVIDIA GPU); nothing was run." >&2
  exit 3
fi
mkdir -p bench/results
marker="$(mktemp)"
trap 'rm -f "$marker"' EXIT
build/cuda/layer70b --out bench/results ${args[@]+"${args[@]}"}
node bench/native/layer70b-recipe.js relative "$marker"
