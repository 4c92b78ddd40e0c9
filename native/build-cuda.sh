#!/usr/bin/env bash
# Builds the CUDA backend when a CUDA toolkit with cuBLAS and cuSOLVER is present; otherwise
# prints one line saying why it was skipped and exits 0 (exit 3 with --require).
#   native/build-cuda.sh [--require | --gyp]
# --gyp (binding.gyp): prints only 1 (built) or 0 (skipped) on stdout, messages on stderr, and
# leaves build/cuda/include-dirs.txt and build/cuda/link-flags.txt for the addon's link.
# Outputs (build/cuda/): libgptq_forge_cuda.a (the kernels of native/kernels/cuda), cuda_selftest
# (device checks: kernels vs references, GPU solve vs the CPU engine, the GPTQ golden),
# eval_check (the inference path's kernels vs references, with timings) and layer70b (the
# Llama-2-70B layer benchmark, bench/native/layer70b.cu).
# Environment: NVCC (default: nvcc on PATH or $CUDA_HOME/bin/nvcc), CUDA_ARCH (default sm_90).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
require=0 gyp=0
[ "${1:-}" = "--require" ] && require=1
[ "${1:-}" = "--gyp" ] && gyp=1
if [ $gyp = 1 ]; then exec 3>&1 1>&2; fi  # keep stdout for the answer
skip() {
  echo "gptq-forge: CUDA backend skipped: $1"
  [ $gyp = 1 ] && echo 0 >&3
  exit $((require ? 3 : 0))
}
nvcc="${NVCC:-$(command -v nvcc || true)}"
[ -z "$nvcc" ] && [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ] && nvcc="$CUDA_HOME/bin/nvcc"
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
[ -n "$nvcc" ] || skip "nvcc not found (set NVCC or CUDA_HOME)"
arch="${CUDA_ARCH:-sm_90}"
out=build/cuda
mkdir -p "$out/obj"
probe="$out/probe.cu"
cat > "$probe" <<'CU'
#include <cublas_v2.h>
#include <cusolverDn.h>
int main() { cublasHandle_t b; cusolverDnHandle_t s; (void)cublasCreate(&b); (void)cusolverDnCreate(&s); return 0; }
CU
if ! "$nvcc" -o "$out/probe" "$probe" -lcublas -lcusolver >"$out/probe.log" 2>&1; then
  skip "cuBLAS/cuSOLVER headers or libraries not found by $nvcc (see $out/probe.log)"
fi
flags=(-std=c++17 -O3 -arch="$arch" -Xcompiler -fPIC -Xcompiler -fexceptions --expt-relaxed-constexpr)
objs=()
# What the addon's g++ compile and link need: the directories of the headers nvcc used, and
# the library directories nvcc links from (without the driver stubs).
{ "$nvcc" -M "$probe" 2>/dev/null || true; } | tr ' \\' '\n\n' | grep -E '/(cuda_runtime|cublas_v2|cusolverDn)\.h$' |
  xargs -r -n1 dirname | sort -u > "$out/include-dirs.txt" || true
[ -s "$out/include-dirs.txt" ] || echo "$(dirname "$nvcc")/../include" > "$out/include-dirs.txt"
# nvcc -dryrun prints e.g.  #$ LIBRARIES=  "-L/usr/local/cuda/bin/../targets/x86_64-linux/lib"
libdirs=$({ "$nvcc" -dryrun -o "$out/probe" "$probe" -lcublas -lcusolver 2>&1 || true; } |
  grep -oE -- '-L"?[^" ]+' | sed -E 's/^-L"?//' | grep -v stubs | sort -u || true)
[ -n "$libdirs" ] || libdirs="$(dirname "$nvcc")/../lib64"
{
  echo "$root/$out/libgptq_forge_cuda.a"
  for d in $libdirs; do echo "-L$d"; echo "-Wl,-rpath,$d"; done
  echo "-lcublas -lcusolver -lcudart"
} | tr '\n' ' ' > "$out/link-flags.txt"
rm -f "$out/libgptq_forge_cuda.a"
for src in native/kernels/cuda/*.cu; do
  obj="$out/obj/$(basename "$src" .cu).o"
  "$nvcc" "${flags[@]}" -c "$src" -o "$obj" &
  objs+=("$obj")
done
# The CPU engine pieces the CUDA code uses as references (fp64 Cholesky) and the self-test compares against.
# (not in the archive: the addon compiles them itself).
cpu_objs=()
for src in native/kernels/cpu/linalg.cc native/kernels/cpu/gptq.cc native/kernels/cpu/pack.cc; do
  obj="$out/obj/cpu_$(basename "$src" .cc).o"
  g++ -std=c++17 -O3 -fPIC -pthread -fno-math-errno -march="${GPTQ_FORGE_MARCH:-native}" -c "$src" -o "$obj" &
  cpu_objs+=("$obj")
done
"$nvcc" "${flags[@]}" -c native/tests/cuda_selftest.cu -o "$out/obj/selftest.o" &
"$nvcc" "${flags[@]}" -c bench/native/layer70b.cu -o "$out/obj/layer70b.o" &
"$nvcc" "${flags[@]}" -c native/tests/eval_check.cu -o "$out/obj/eval_check.o" &
for job in $(jobs -p); do wait "$job"; done
ar rcs "$out/libgptq_forge_cuda.a" "${objs[@]}"
"$nvcc" -arch="$arch" -o "$out/cuda_selftest" "$out/obj/selftest.o" "$out/libgptq_forge_cuda.a" "${cpu_objs[@]}" -lcublas -lcusolver -Xcompiler -pthread
"$nvcc" -arch="$arch" -o "$out/layer70b" "$out/obj/layer70b.o" "$out/libgptq_forge_cuda.a" "${cpu_objs[@]}" -lcublas -lcusolver -Xcompiler -pthread
"$nvcc" -arch="$arch" -o "$out/eval_check" "$out/obj/eval_check.o" "$out/libgptq_forge_cuda.a" "${cpu_objs[@]}" -lcublas -lcusolver -Xcompiler -pthread
echo "gptq-forge: CUDA backend built ($arch): $out/libgptq_forge_cuda.a, $out/cuda_selftest, $out/layer70b, $out/eval_check"
[ $gyp = 1 ] && echo 1 >&3
exit 0
