#!/usr/bin/env bash
# npm run pack:offline → offline/gptq-forge-offline.tar.xz: everything to build the addon and
# run `gptq` on a Linux x86-64 host with a C++ toolchain and no network: a Node binary, the
# built JavaScript, the production dependencies the CLI uses, the native sources, the N-API
# headers and native/build-standalone.sh, and the checks of a GPU host (native/kernels/*/checks,
# native/tests, test/cuda, scripts/checks). On the host:
#   tar xJf gptq-forge-offline.tar.xz && cd gptq-forge && native/build-standalone.sh && bin/node bin/gptq.js --help
#   bash native/tests/run-cuda-checks.sh      (npm run test:cuda: every GPU check, SHARED=../shared)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
npx tsc -p tsconfig.json
stage="$(mktemp -d)/gptq-forge"
mkdir -p "$stage/bin" "$stage/include/node" "$stage/node_modules" offline
cp "$(command -v node)" "$stage/bin/node"
cp bin/gptq.js "$stage/bin/"
cp -r dist native binding.gyp package.json datasets configs "$stage/"
[ -d bench ] && cp -r bench "$stage/"
mkdir -p "$stage/test"
cp -r test/cuda "$stage/test/"
cp -r scripts "$stage/"
nodedir="$(npm config get nodedir 2>/dev/null || true)"
for d in "$nodedir/include/node" "$(dirname "$(dirname "$(command -v node)")")/include/node"; do
  if [ -f "$d/node_api.h" ]; then cp "$d"/node_api*.h "$d"/js_native_api*.h "$stage/include/node/"; break; fi
done
[ -f "$stage/include/node/node_api.h" ] || { echo "pack-offline: N-API headers not found" >&2; exit 1; }
# Production dependencies, without onnxruntime-node's 290 MB of binaries (the ONNX engine is
# not needed to quantize or to evaluate with the native engine).
npm ls --omit=dev --all --parseable 2>/dev/null | grep '/node_modules/' | sed "s|^$root/||" | sort -u |
  grep -v -e '^node_modules/onnxruntime' | while read -r dir; do
    mkdir -p "$stage/$(dirname "$dir")"
    cp -r "$dir" "$stage/$dir"
  done
# OFFLINE_ONNX=1: also the ONNX engine (gptq eval --engine onnx), with onnxruntime-node's Linux
# x86-64 CPU binaries only (44 MB of its 290 MB), for the ONNX cross-check on a GPU host.
if [ "${OFFLINE_ONNX:-0}" = 1 ]; then
  mkdir -p "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux"
  (cd node_modules/onnxruntime-node && cp -r README.md dist lib package.json "$stage/node_modules/onnxruntime-node/")
  cp -r node_modules/onnxruntime-node/bin/napi-v6/linux/x64 "$stage/node_modules/onnxruntime-node/bin/napi-v6/linux/"
  cp -r node_modules/onnxruntime-common "$stage/node_modules/"
fi
tar -C "$(dirname "$stage")" -cf - gptq-forge | xz -T0 -6 > offline/gptq-forge-offline.tar.xz
rm -rf "$(dirname "$stage")"
ls -l offline/gptq-forge-offline.tar.xz
