#!/usr/bin/env bash
# Builds the CPU kernel checks (native/kernels/cpu/checks/*_check.cc) with the addon's flags
# (binding.gyp: -std=c++17 -O3 -fexceptions -fno-math-errno -march=${GPTQ_FORGE_MARCH:-native}):
#   native/tests/build-cpu-checks.sh        → build/cpu-checks/<name>_check, one per file
# Each links every native/kernels/cpu/*.cc (compiled once; rebuilt when a source or header is
# newer). Run them directly, or through test/native/cpu-kernels.test.ts (jest, CI).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
out=build/cpu-checks
mkdir -p "$out/obj"
flags=(-std=c++17 -O3 -fexceptions -fno-math-errno -march="${GPTQ_FORGE_MARCH:-native}" -pthread)
newest_header=$(ls -t native/kernels/cpu/*.h native/kernels/cpu/checks/*.h | head -1)
stale() { [ ! -f "$1" ] || [ "$2" -nt "$1" ] || [ "$newest_header" -nt "$1" ]; }
objs=()
for src in native/kernels/cpu/*.cc; do
  obj="$out/obj/$(basename "$src" .cc).o"
  objs+=("$obj")
  if stale "$obj" "$src"; then g++ "${flags[@]}" -c "$src" -o "$obj" & fi
done
for job in $(jobs -p); do wait "$job"; done
for src in native/kernels/cpu/checks/*_check.cc; do
  bin="$out/$(basename "$src" .cc)"
  if stale "$bin" "$src" || [ -n "$(find "${objs[@]}" -newer "$bin" 2>/dev/null)" ]; then
    g++ "${flags[@]}" "$src" "${objs[@]}" -o "$bin"
  fi
  echo "$bin"
done
