#include "eval_ops.h"

#include <algorithm>
#include <cmath>

namespace gfc {

namespace {

__global__ void embed_kernel(int64_t T, int64_t H, int64_t V, const int32_t* ids, const __half* table, __half* x,
                             int* bad) {
  const int64_t t = blockIdx.x;
  const int64_t id = ids[t];
  const bool ok = id >= 0 && id < V;
  if (!ok && threadIdx.x == 0) atomicAdd(bad, 1);
  const uint4* src = reinterpret_cast<const uint4*>(table + (ok ? id : 0) * H);
  uint4* dst = reinterpret_cast<uint4*>(x + t * H);
  for (int64_t i = threadIdx.x; i < H / 8; i += blockDim.x) dst[i] = ok ? src[i] : make_uint4(0, 0, 0, 0);
}

__global__ void nonfinite_kernel(int64_t n, const __half* x, int* count) {
  int c = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const unsigned short b = __half_as_ushort(x[i]);
    c += (b & 0x7c00) == 0x7c00;
  }
  for (int off = 16; off; off >>= 1) c += __shfl_xor_sync(0xffffffffu, c, off);
  if (threadIdx.x % 32 == 0 && c) atomicAdd(count, c);
}

// One block of 256 threads per row.
__global__ void nll_kernel(int64_t V, const __half* logits, int64_t ldl, const int32_t* targets, double* nll) {
  __shared__ float redf[8];
  __shared__ double redd[8];
  __shared__ int nonfin[8];
  const int64_t r = blockIdx.x;
  const int tgt = targets[r];
  const __half* row = logits + r * ldl;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  float mx = -INFINITY;
  int bad = 0;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float l = __half2float(row[j]);
    bad |= !isfinite(l);
    mx = fmaxf(mx, l);
  }
  for (int off = 16; off; off >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    bad |= __shfl_xor_sync(0xffffffffu, bad, off);
  }
  if (lane == 0) { redf[w] = mx; nonfin[w] = bad; }
  __syncthreads();
  mx = redf[0];
  bad = nonfin[0];
  for (int i = 1; i < 8; ++i) { mx = fmaxf(mx, redf[i]); bad |= nonfin[i]; }
  double s = 0;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += (double)expf(__half2float(row[j]) - mx);
  for (int off = 16; off; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (lane == 0) redd[w] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double sum = 0;
    for (int i = 0; i < 8; ++i) sum += redd[i];
    if (tgt < 0) nll[r] = 0;
    else if (bad || tgt >= V) nll[r] = NAN;
    else nll[r] = log(sum) + (double)mx - (double)__half2float(row[tgt]);
  }
}

__global__ void nll_ref_kernel(int64_t M, int64_t V, const __half* logits, int64_t ldl, const int32_t* targets,
                               double* nll) {
  const int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= M) return;
  const __half* row = logits + r * ldl;
  float mx = -INFINITY;
  for (int64_t j = 0; j < V; ++j) mx = fmaxf(mx, __half2float(row[j]));
  double s = 0;
  for (int64_t j = 0; j < V; ++j) s += exp((double)__half2float(row[j]) - (double)mx);
  const int tgt = targets[r];
  nll[r] = tgt < 0 ? 0.0 : log(s) + (double)mx - (double)__half2float(row[tgt]);
}

}  // namespace

void embed_rows(Context& ctx, int64_t T, int64_t H, int64_t V, const int32_t* ids, const __half* table, __half* x,
                int* bad) {
  if (T <= 0) return;
  embed_kernel<<<(unsigned)T, 128, 0, ctx.stream>>>(T, H, V, ids, table, x, bad);
  CUDA_LAUNCH_CHECK();
}

void count_nonfinite(Context& ctx, int64_t n, const __half* x, int* count) {
  if (n <= 0) return;
  nonfinite_kernel<<<(unsigned)std::min<int64_t>(4096, (n + 255) / 256), 256, 0, ctx.stream>>>(n, x, count);
  CUDA_LAUNCH_CHECK();
}

void token_nll(Context& ctx, int64_t M, int64_t V, const __half* logits, int64_t ldl, const int32_t* targets,
               double* nll) {
  if (M <= 0) return;
  nll_kernel<<<(unsigned)M, 256, 0, ctx.stream>>>(V, logits, ldl, targets, nll);
  CUDA_LAUNCH_CHECK();
}

void token_nll_ref(Context& ctx, int64_t M, int64_t V, const __half* logits, int64_t ldl, const int32_t* targets,
                   double* nll) {
  if (M <= 0) return;
  nll_ref_kernel<<<blocks_for(M, 64), 64, 0, ctx.stream>>>(M, V, logits, ldl, targets, nll);
  CUDA_LAUNCH_CHECK();
}

}  // namespace gfc
