#include "pack.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "half.h"
#include "parallel.h"

namespace gf {
namespace {

constexpr int64_t TILE = 32;  // output columns per parallel task (N is a multiple of 32)

void check_layout(int bits, int64_t K, int64_t N) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
    throw std::invalid_argument("bits: expected 2, 3, 4 or 8, got " + std::to_string(bits));
  if (K <= 0 || K % 32 != 0)
    throw std::invalid_argument("K: expected a positive multiple of 32, got " + std::to_string(K));
  if (N <= 0 || N % 32 != 0)
    throw std::invalid_argument("N: expected a positive multiple of 32, got " + std::to_string(N));
}

// Packs 32 values (each < 2^B) into B words: value i at stream bits [B·i, B·i + B).
template <int B, class T>
inline void pack32(const T* v, uint32_t* out) {
  uint64_t acc = 0;
  int nb = 0, w = 0;
  for (int i = 0; i < 32; ++i) {
    acc |= (uint64_t)(uint32_t)v[i] << nb;
    nb += B;
    if (nb >= 32) {
      out[w++] = (uint32_t)acc;
      acc >>= 32;
      nb -= 32;
    }
  }
}

// The inverse of pack32: B words → 32 values.
template <int B, class T>
inline void unpack32(const uint32_t* in, T* out) {
  uint64_t acc = 0;
  int nb = 0, w = 0;
  for (int i = 0; i < 32; ++i) {
    if (nb < B) {
      acc |= (uint64_t)in[w++] << nb;
      nb += 32;
    }
    out[i] = (T)(acc & ((1u << B) - 1));
    acc >>= B;
    nb -= B;
  }
}

// The `bits`-bit field i of a stream whose word w is p[w·stride], read bit by bit.
inline uint32_t field_bitwise(const int32_t* p, int64_t stride, int64_t i, int bits) {
  uint32_t v = 0;
  for (int b = 0; b < bits; ++b) {
    int64_t pos = i * bits + b;
    v |= (((uint32_t)p[(pos >> 5) * stride] >> (pos & 31)) & 1u) << b;
  }
  return v;
}

[[noreturn]] void bad_code(const uint8_t* codes, int64_t n, int64_t K, int64_t k0, int bits) {
  int64_t k = k0;
  while (codes[n * K + k] < (1 << bits)) ++k;
  throw std::invalid_argument("codes[" + std::to_string(n) + ", " + std::to_string(k) + "] = " +
                              std::to_string(codes[n * K + k]) + " exceeds 2^bits - 1 = " +
                              std::to_string((1 << bits) - 1));
}

[[noreturn]] void bad_zero(int64_t g, int64_t n, int32_t z, int bits) {
  throw std::invalid_argument("zeros[" + std::to_string(g) + ", " + std::to_string(n) + "] = " +
                              std::to_string(z) + " is outside [0, 2^bits = " +
                              std::to_string(1 << bits) + "]");
}

template <int B>
void pack_qweight_impl(const uint8_t* codes, int64_t N, int64_t K, uint32_t* q) {
  const int64_t chunks = K / 32;
  parallel_for(N / TILE, [&](int64_t t) {
    uint32_t words[B];
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t n = t * TILE; n < (t + 1) * TILE; ++n) {
        const uint8_t* src = codes + n * K + c * 32;
        uint8_t any = 0;
        for (int i = 0; i < 32; ++i) any |= src[i];
        if (B < 8 && (any >> B) != 0) bad_code(codes, n, K, c * 32, B);
        pack32<B>(src, words);
        for (int j = 0; j < B; ++j) q[(c * B + j) * N + n] = words[j];
      }
  });
}

template <int B>
int64_t pack_qzeros_impl(const int32_t* zeros, int64_t G, int64_t N, uint32_t* q) {
  const int64_t row_words = N * B / 32;
  std::vector<int64_t> wrapped(G, 0);
  parallel_for(G, [&](int64_t g) {
    uint32_t vals[32], words[B];
    for (int64_t c = 0; c < N / 32; ++c) {
      for (int i = 0; i < 32; ++i) {
        const int64_t n = c * 32 + i;
        const int32_t z = zeros[g * N + n];
        if (z < 0 || z > (1 << B)) bad_zero(g, n, z, B);
        wrapped[g] += z == 0;
        vals[i] = (uint32_t)(z - 1) & ((1u << B) - 1);  // zero − 1, masked to its field
      }
      pack32<B>(vals, words);
      for (int j = 0; j < B; ++j) q[g * row_words + c * B + j] = words[j];
    }
  });
  int64_t total = 0;
  for (int64_t w : wrapped) total += w;
  return total;
}

template <int B>
void unpack_qweight_impl(const uint32_t* q, int64_t K, int64_t N, uint8_t* codes) {
  parallel_for(N / TILE, [&](int64_t t) {
    uint32_t words[B];
    for (int64_t c = 0; c < K / 32; ++c)
      for (int64_t n = t * TILE; n < (t + 1) * TILE; ++n) {
        for (int j = 0; j < B; ++j) words[j] = q[(c * B + j) * N + n];
        unpack32<B>(words, codes + n * K + c * 32);
      }
  });
}

template <int B>
void unpack_qzeros_impl(const uint32_t* q, int64_t G, int64_t N, int32_t* zeros) {
  const int64_t row_words = N * B / 32;
  parallel_for(G, [&](int64_t g) {
    for (int64_t c = 0; c < N / 32; ++c) {
      int32_t* dst = zeros + g * N + c * 32;
      unpack32<B>(q + g * row_words + c * B, dst);
      for (int i = 0; i < 32; ++i) dst[i] += 1;  // v1: no wrap, a stored 2^B − 1 reads 2^B
    }
  });
}

template <int B>
void dequantize_impl(const uint32_t* qw, const uint32_t* qz, const uint16_t* scales,
                     const int32_t* g_idx, int64_t K, int64_t N, int64_t G, bool round16,
                     float* w) {
  const int64_t row_words = N * B / 32;
  parallel_for(N / TILE, [&](int64_t t) {
    const int64_t n0 = t * TILE;
    // This tile's scales and zeros, [TILE, G], so that act-order's scattered g_idx stays local.
    std::vector<float> sf(TILE * G), zf(TILE * G);
    int32_t zrow[32];
    for (int64_t g = 0; g < G; ++g) {
      unpack32<B>(qz + g * row_words + n0 / 32 * B, zrow);
      for (int64_t i = 0; i < TILE; ++i) {
        sf[i * G + g] = half_to_float(scales[g * N + n0 + i]);
        zf[i * G + g] = (float)(zrow[i] + 1);
      }
    }
    uint32_t words[B];
    uint8_t codes[32];
    for (int64_t c = 0; c < K / 32; ++c)
      for (int64_t i = 0; i < TILE; ++i) {
        for (int j = 0; j < B; ++j) words[j] = qw[(c * B + j) * N + n0 + i];
        unpack32<B>(words, codes);
        const float* s = sf.data() + i * G;
        const float* z = zf.data() + i * G;
        float* dst = w + (n0 + i) * K + c * 32;
        for (int l = 0; l < 32; ++l) {
          const int32_t g = g_idx[c * 32 + l];
          const float v = s[g] * ((float)codes[l] - z[g]);  // exact: 11 × ≤ 9 significant bits
          dst[l] = round16 ? round_half(v) : v;
        }
      }
  });
}

void check_g_idx(const int32_t* g_idx, int64_t K, int64_t G) {
  for (int64_t k = 0; k < K; ++k)
    if (g_idx[k] < 0 || g_idx[k] >= G)
      throw std::invalid_argument("g_idx[" + std::to_string(k) + "] = " +
                                  std::to_string(g_idx[k]) + " is outside [0, " +
                                  std::to_string(G) + ")");
}

// Calls f(std::integral_constant<int, bits>) for bits ∈ {2, 3, 4, 8} (checked before).
template <class F>
auto with_bits(int bits, F f) {
  switch (bits) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

}  // namespace

void pack_qweight_ref(const uint8_t* codes, int64_t N, int64_t K, int bits, int32_t* qweight) {
  check_layout(bits, K, N);
  uint32_t* q = reinterpret_cast<uint32_t*>(qweight);
  std::fill(q, q + qweight_words(K, N, bits), 0u);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const uint32_t code = codes[n * K + k];
      if (code >= (1u << bits)) bad_code(codes, n, K, k, bits);
      for (int b = 0; b < bits; ++b) {
        const int64_t pos = (int64_t)bits * k + b;  // bit of column n's stream
        q[(pos / 32) * N + n] |= ((code >> b) & 1u) << (pos % 32);
      }
    }
}

void pack_qweight(const uint8_t* codes, int64_t N, int64_t K, int bits, int32_t* qweight) {
  check_layout(bits, K, N);
  uint32_t* q = reinterpret_cast<uint32_t*>(qweight);
  return with_bits(bits, [&](auto b) {
    return pack_qweight_impl<decltype(b)::value>(codes, N, K, q);
  });
}

int64_t pack_qzeros_ref(const int32_t* zeros, int64_t G, int64_t N, int bits, int32_t* qzeros) {
  check_layout(bits, 32, N);
  const int64_t row_words = N * bits / 32;
  uint32_t* q = reinterpret_cast<uint32_t*>(qzeros);
  std::fill(q, q + qzeros_words(G, N, bits), 0u);
  int64_t wrapped = 0;
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) {
      const int32_t z = zeros[g * N + n];
      if (z < 0 || z > (1 << bits)) bad_zero(g, n, z, bits);
      wrapped += z == 0;
      const uint32_t v = (uint32_t)(z - 1);  // uint32 as AutoGPTQ: 0 − 1 = 0xFFFFFFFF, of which
      for (int b = 0; b < bits; ++b) {       // only this field's bits are kept
        const int64_t pos = (int64_t)bits * n + b;
        q[g * row_words + pos / 32] |= ((v >> b) & 1u) << (pos % 32);
      }
    }
  return wrapped;
}

int64_t pack_qzeros(const int32_t* zeros, int64_t G, int64_t N, int bits, int32_t* qzeros) {
  check_layout(bits, 32, N);
  uint32_t* q = reinterpret_cast<uint32_t*>(qzeros);
  return with_bits(bits, [&](auto b) {
    return pack_qzeros_impl<decltype(b)::value>(zeros, G, N, q);
  });
}

void unpack_qweight(const int32_t* qweight, int64_t K, int64_t N, int bits, uint8_t* codes) {
  check_layout(bits, K, N);
  const uint32_t* q = reinterpret_cast<const uint32_t*>(qweight);
  return with_bits(bits, [&](auto b) {
    return unpack_qweight_impl<decltype(b)::value>(q, K, N, codes);
  });
}

void unpack_qzeros(const int32_t* qzeros, int64_t G, int64_t N, int bits, int32_t* zeros) {
  check_layout(bits, 32, N);
  const uint32_t* q = reinterpret_cast<const uint32_t*>(qzeros);
  return with_bits(bits, [&](auto b) {
    return unpack_qzeros_impl<decltype(b)::value>(q, G, N, zeros);
  });
}

void dequantize_gptq(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales,
                     const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits,
                     bool round16, float* w) {
  check_layout(bits, K, N);
  check_g_idx(g_idx, K, G);
  const uint32_t* qw = reinterpret_cast<const uint32_t*>(qweight);
  const uint32_t* qz = reinterpret_cast<const uint32_t*>(qzeros);
  return with_bits(bits, [&](auto b) {
    return dequantize_impl<decltype(b)::value>(qw, qz, scales, g_idx, K, N, G, round16, w);
  });
}

void dequantize_gptq_ref(const int32_t* qweight, const int32_t* qzeros, const uint16_t* scales,
                         const int32_t* g_idx, int64_t K, int64_t N, int64_t G, int bits,
                         bool round16, float* w) {
  check_layout(bits, K, N);
  check_g_idx(g_idx, K, G);
  const int64_t row_words = N * bits / 32;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t g = g_idx[k];
      const int64_t code = field_bitwise(qweight + n, N, k, bits);
      const int64_t zero = (int64_t)field_bitwise(qzeros + g * row_words, 1, n, bits) + 1;
      const double v = (double)half_to_float(scales[g * N + n]) * (double)(code - zero);
      w[n * K + k] = round16 ? round_half((float)v) : (float)v;
    }
}

}  // namespace gf
