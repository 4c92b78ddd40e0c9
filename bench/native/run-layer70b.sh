#!/usr/bin/env bash
# npm run bench:layer70b: builds the CUDA backend (native/build-cuda.sh; needs nvcc, cuBLAS,
# cuSOLVER and a GPU with ~40 GB free) and runs the Llama-2-70B layer benchmark, writing
# bench/results/layer70b-<card>.json. Extra arguments go to the benchmark (e.g. --windows 16).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
if ! bash native/build-cuda.sh --require; then
  echo "bench:layer70b needs a CUDA toolkit with cuBLAS and cuSOLVER (and an NVIDIA GPU); nothing was run." >&2
  exit 3
fi
mkdir -p bench/results
exec build/cuda/layer70b --out bench/results "$@"
