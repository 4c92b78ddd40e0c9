#!/usr/bin/env bash
# Builds the addon with g++ alone (no node-gyp, no Python): for hosts without network or
# npm, e.g. GPU machines. Needs the N-API headers (node_api*.h, js_native_api*.h) in
# $NAPI_INCLUDE (default: include/node of the offline bundle or Node's own) and node-addon-api.
#   native/build-standalone.sh            → build/Release/gptq_forge.node
# With nvcc + cuBLAS + cuSOLVER present, the CUDA backend is built too (native/build-cuda.sh);
# then `bash native/tests/run-cuda-checks.sh` (npm run test:cuda) builds and runs every GPU check.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
napi="${NAPI_INCLUDE:-}"
if [ -z "$napi" ]; then
  for d in "$root/include/node" "$(dirname "$(dirname "$(command -v node 2>/dev/null || echo /usr/bin/node)")")/include/node"; do
    [ -f "$d/node_api.h" ] && napi="$d" && break
  done
fi
[ -f "$napi/node_api.h" ] || { echo "build-standalone: node_api.h not found (set NAPI_INCLUDE)" >&2; exit 1; }
addon_api="$root/node_modules/node-addon-api"
[ -f "$addon_api/napi.h" ] || { echo "build-standalone: node-addon-api headers not found in $addon_api" >&2; exit 1; }
march="${GPTQ_FORGE_MARCH:-native}"
sources=$(grep -o '"native/[^"]*\.cc"' binding.gyp | tr -d '"' | grep -v 'bindings/cuda' | tr '\n' ' ')
mkdir -p build/Release build/standalone
# The CUDA backend when nvcc, cuBLAS and cuSOLVER are there (one line saying why not otherwise).
cuda_flags=() cuda_libs=()
if [ "$(bash native/build-cuda.sh --gyp)" = 1 ]; then
  sources="$sources native/bindings/cuda.cc native/bindings/cuda_weights.cc native/bindings/cuda_eval.cc"
  cuda_flags=(-DGPTQ_FORGE_CUDA)
  for d in $(cat build/cuda/include-dirs.txt); do cuda_flags+=(-I"$d"); done
  read -r -a cuda_libs < build/cuda/link-flags.txt || true  # (no trailing newline: read returns 1)
fi
objs=()
for src in $sources; do
  obj="build/standalone/$(echo "$src" | tr '/' '_' ).o"
  g++ -O3 -march="$march" -std=c++17 -fPIC -pthread -fexceptions -fno-math-errno \
      -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DBUILDING_NODE_EXTENSION \
      -I"$napi" -I"$addon_api" "${cuda_flags[@]}" -c "$src" -o "$obj" &
  objs+=("$obj")
done
wait
g++ -shared -pthread -o build/Release/gptq_forge.node "${objs[@]}" "${cuda_libs[@]}"
echo "built build/Release/gptq_forge.node (-march=$march${cuda_flags:+, with CUDA})"
