#!/usr/bin/env bash
# Builds the CUDA backend when a CUDA toolkit with cuBLAS and cuSOLVER is present; otherwise
# prints one line saying why it was skipped and exits 0 (exit 3 with --require or --checks).
#   native/build-cuda.sh [--require | --gyp | --checks]
# --gyp (binding.gyp): prints only 1 (built) or 0 (skipped) on stdout, messages on stderr, and
# leaves build/cuda/include-dirs.txt and build/cuda/link-flags.txt for the addon's link.
# Outputs (build/cuda/): libgptq_forge_cuda.a (the kernels of native/kernels/cuda) and the
# benchmarks layer70b (bench/native/layer70b.cu, one Llama-2-70B layer) and gemm_ceiling
# (bench/native/gemm_ceiling.cu, the fp16 GEMM rates).
# --checks: also the device checks, build/cuda/checks/<kernel>_check from
# native/kernels/cuda/checks/<kernel>_check.cu (each kernel vs its CPU reference; run them all
# with native/tests/run-cuda-checks.sh); the library is rebuilt only when a source is newer.
# Environment: NVCC (default: nvcc on PATH or $CUDA_HOME/bin/nvcc), CUDA_ARCH (default sm_90).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
require=0 gyp=0 checks=0
[ "${1:-}" = "--require" ] && require=1
[ "${1:-}" = "--gyp" ] && gyp=1
[ "${1:-}" = "--checks" ] && require=1 && checks=1
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
cpu_srcs=(native/kernels/cpu/linalg.cc native/kernels/cpu/gptq.cc native/kernels/cpu/gptaq.cc native/kernels/cpu/pack.cc native/kernels/cpu/qep.cc native/kernels/cpu/gemm.cc)
cpu_objs=()
for src in "${cpu_srcs[@]}"; do cpu_objs+=("$out/obj/cpu_$(basename "$src" .cc).o"); done
# --checks after a build (e.g. by build-standalone.sh): keep the library when nothing is newer.
lib_fresh() {
  [ -f "$out/libgptq_forge_cuda.a" ] && [ -f "$out/layer70b" ] && [ -f "$out/gemm_ceiling" ] || return 1
  for o in "${cpu_objs[@]}"; do [ -f "$o" ] || return 1; done
  [ -z "$(find native/kernels/cuda native/kernels/cpu bench/native -maxdepth 1 -newer "$out/libgptq_forge_cuda.a" \
          \( -name '*.cu' -o -name '*.cuh' -o -name '*.h' -o -name '*.cc' \) 2>/dev/null)" ]
}
build_checks() {
  mkdir -p "$out/checks"
  local bins=()
  for src in native/kernels/cuda/checks/*_check.cu; do
    local name; name="$(basename "$src" .cu)"
    { "$nvcc" "${flags[@]}" -c "$src" -o "$out/checks/$name.o" &&
      "$nvcc" -arch="$arch" -o "$out/checks/$name" "$out/checks/$name.o" "$out/libgptq_forge_cuda.a" "${cpu_objs[@]}" \
        -lcublas -lcusolver -Xcompiler -pthread; } &
    bins+=("$out/checks/$name")
  done
  local ok=1
  for job in $(jobs -p); do wait "$job" || ok=0; done
  [ $ok = 1 ] || { echo "gptq-forge: building the CUDA checks failed (messages above)"; exit 1; }
  echo "gptq-forge: CUDA checks built: ${bins[*]}"
}
if [ $checks = 1 ] && lib_fresh; then
  echo "gptq-forge: CUDA backend up to date ($out/libgptq_forge_cuda.a)"
  build_checks
  exit 0
fi
rm -f "$out/libgptq_forge_cuda.a"
for src in native/kernels/cuda/*.cu; do
  obj="$out/obj/$(basename "$src" .cu).o"
  "$nvcc" "${flags[@]}" -c "$src" -o "$obj" &
  objs+=("$obj")
done
# The CPU engine pieces the CUDA code uses as references (fp64 Cholesky) and the checks compare against
# (not in the archive: the addon compiles them itself).
for src in "${cpu_srcs[@]}"; do
  g++ -std=c++17 -O3 -fPIC -pthread -fno-math-errno -march="${GPTQ_FORGE_MARCH:-native}" -c "$src" -o "$out/obj/cpu_$(basename "$src" .cc).o" &
done
"$nvcc" "${flags[@]}" -c bench/native/layer70b.cu -o "$out/obj/layer70b.o" &
"$nvcc" "${flags[@]}" -c bench/native/gemm_ceiling.cu -o "$out/obj/gemm_ceiling.o" &
for job in $(jobs -p); do wait "$job"; done
ar rcs "$out/libgptq_forge_cuda.a" "${objs[@]}"
"$nvcc" -arch="$arch" -o "$out/layer70b" "$out/obj/layer70b.o" "$out/libgptq_forge_cuda.a" "${cpu_objs[@]}" -lcublas -lcusolver -Xcompiler -pthread
"$nvcc" -arch="$arch" -o "$out/gemm_ceiling" "$out/obj/gemm_ceiling.o" "$out/libgptq_forge_cuda.a" -lcublas -lcusolver
echo "gptq-forge: CUDA backend built ($arch): $out/libgptq_forge_cuda.a, $out/layer70b, $out/gemm_ceiling"
[ $checks = 1 ] && build_checks
[ $gyp = 1 ] && echo 1 >&3
exit 0
