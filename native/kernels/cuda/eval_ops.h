// The inference path's pieces around the decoder layers: embedding gather, a non-finite
// count, and the per-token negative log-likelihood of a chunk of fp16 logits.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "context.h"

namespace gfc {

// x[t, :] = table[ids[t], :] for t < T (fp16 rows of H, H % 8 == 0). An id outside [0, V)
// adds 1 to *bad and gives a row of zeros.
void embed_rows(Context& ctx, int64_t T, int64_t H, int64_t V, const int32_t* ids, const __half* table,
                __half* x, int* bad);

// *count += the NaN/Inf entries of x[n].
void count_nonfinite(Context& ctx, int64_t n, const __half* x, int* count);

// logits [M, V] fp16 (row stride ldl), targets [M] (an id in [0, V), or −1: no target) →
// nll [M] fp64: log Σ_j exp(l_j − max) + max − l_target, the sum in fp64 (0 where no target;
// NaN where a logit of the row is not finite).
void token_nll(Context& ctx, int64_t M, int64_t V, const __half* logits, int64_t ldl, const int32_t* targets,
               double* nll);
// Reference: one thread per row, plain loops.
void token_nll_ref(Context& ctx, int64_t M, int64_t V, const __half* logits, int64_t ldl, const int32_t* targets,
                   double* nll);

}  // namespace gfc
