// AutoGPTQ "gptq" (v1) packing of one linear layer: integer codes and zero points into int32
// words, and back (see GPTQ-SPEC.md, "AutoGPTQ gptq (v1) packing").
//
// Bit layout: a packed vector is a little-endian bit stream of `bits`-bit values: value i sits
// at bits [bits·i, bits·i + bits) of the stream, word w holds stream bits [32w, 32w + 32). 32
// values fill exactly `bits` words; for bits = 3 a value may straddle two words.
//   qweight [K·bits/32, N]: column n is the stream of the K codes of output row n.
//   qzeros  [G, N·bits/32]: row g is the stream of the N values (zero − 1) mod 2^bits.
//
// Zero points: v1 stores zero − 1. What readers do with the +1 (checked in the sources):
// - AutoGPTQ, auto_gptq/nn_modules/qlinear/qlinear_cuda.py and qlinear_cuda_old.py, `forward`:
//   zeros = (qzeros >> shift) & (2^bits − 1); zeros = zeros + 1. No wrap: a stored 2^bits − 1
//   reads as 2^bits. We follow this (unpack_qzeros, dequantize_gptq).
// - AutoGPTQ's packer (same files, `pack`): zeros -= 1; .astype(np.uint32); qzeros |= z << shift,
//   unmasked, so zero = 0 (0xFFFFFFFF) also sets every higher field of its word. We mask to the
//   field instead: only that value is affected. AutoGPTQ main's save_quantized refuses sym=False
//   to v1 without use_unsafe_math for this reason ("~13% underflow").
// - exllamav2's q_gemm_kernel_gptq.cuh reads (zeros + 1) & 0x0F (4-bit): it wraps, so a stored
//   15 reads as 0 there; the torch paths above read 16.
// - GPTQModel keeps "gptq_v2" internally (zeros without −1) and converts v1 <-> v2 by adding or
//   subtracting 0x11111111-style constants (gptqmodel/utils/model.py), carrying across fields.
// So zero = 0 (asymmetric grids, a row group with no negative weight) cannot round-trip through
// v1; the pack functions count those values so callers can warn. zero = 2^bits round-trips.
#pragma once
#include <cstdint>

namespace gf {

// Sizes in int32 words.
inline int64_t qweight_words(int64_t K, int64_t N, int bits) { return K * bits / 32 * N; }
inline int64_t qzeros_words(int64_t G, int64_t N, int bits) { return G * (N * bits / 32); }

// codes: [N, K] row-major (codes[n·K + k] = code of W[n, k], each ≤ 2^bits − 1);
// qweight: [K·bits/32, N], fully overwritten. K % 32 == 0, bits ∈ {2, 3, 4, 8}.
// Throws std::invalid_argument on a code above 2^bits − 1.
// Reference version: bit by bit, single-threaded.
void pack_qweight_ref(const uint8_t* codes, int64_t N, int64_t K, int bits, int32_t* qweight);
// Optimised: 32 codes at a time into `bits` words, tiles of columns over the worker threads.
void pack_qweight(const uint8_t* codes, int64_t N, int64_t K, int bits, int32_t* qweight);

// zeros: [G, N] integer zero points, each in [0, 2^bits]; qzeros: [G, N·bits/32], overwritten
// with the streams of (zero − 1) mod 2^bits. N % 32 == 0. Returns how many zeros were 0 (they
// read back as 2^bits). Throws std::invalid_argument on a zero outside [0, 2^bits].
int64_t pack_qzeros_ref(const int32_t* zeros, int64_t G, int64_t N, int bits, int32_t* qzeros);
int64_t pack_qzeros(const int32_t* zeros, int64_t G, int64_t N, int bits, int32_t* qzeros);

// qweight: [K·bits/32, N] → codes: [N, K] row-major. Multi-threaded.
void unpack_qweight(const int32_t* qweight, int64_t K, int64_t N, int bits, uint8_t* codes);

// qzeros: [G, N·bits/32] → zeros: [G, N], each = stored field + 1 ∈ [1, 2^bits] (as read).
void unpack_qzeros(const int32_t* qzeros, int64_t G, int64_t N, int bits, int32_t* zeros);

// w[n·K + k] = scale[g, n] · (code[k, n] − (stored_zero[g, n] + 1)), g = g_idx[k]:
// qweight [K·bits/32, N], qzeros [G, N·bits/32], scales [G, N] fp16 bits, g_idx [K] (each in
// [0, G)), w [N, K] row-major (a Linear weight). The product is exact in fp32; with round16 it is
// rounded to fp16 as AutoGPTQ's torch path (fp16 scales × int) produces it.
// Throws std::invalid_argument on a g_idx entry outside [0, G). Multi-threaded.
void dequantize_gptq(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales,
                     const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits,
                     bool round16, float* w);
// Reference version of dequantize_gptq: element by element, bit by bit, single-threaded.
void dequantize_gptq_ref(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales,
                         const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits,
                         bool round16, float* w);

}  // namespace gf
