// Checks of native/kernels/cuda/pack.h: pack_qweight (+ pack_qweight_ref), pack_qzeros and
// scales_to_f16 against CPU references written here (bit streams set bit by bit) and the CPU
// engine's gf::pack_qweight_ref / gf::pack_qzeros_ref, bits 2/3/4/8, row strides larger than
// the matrix (rows of a stacked solve), codes above 2^bits − 1 (masked), zero points 0 and
// 2^bits (the v1 wrap), scales beyond the fp16 range; timings of both qweight packers.
//   build/cuda/checks/pack_check          exit 0 only when every case passes
#include <cuda_fp16.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../../cpu/pack.h"
#include "../pack.h"
#include "check_util.cuh"

using namespace gfc;
using namespace gfc::check;

namespace {

// Little-endian stream of `bits`-bit values (value i at bits [bits·i, bits·i + bits)).
std::vector<int32_t> stream(const std::vector<uint32_t>& vals, int bits) {
  std::vector<uint32_t> w(vals.size() * bits / 32, 0);
  for (size_t i = 0; i < vals.size(); ++i)
    for (int b = 0; b < bits; ++b) {
      const size_t pos = i * bits + b;
      w[pos / 32] |= ((vals[i] >> b) & 1u) << (pos % 32);
    }
  return std::vector<int32_t>(w.begin(), w.end());
}

// qweight [K·bits/32, N]: column n is the stream of row n's K codes (masked to `bits`).
std::vector<int32_t> qweight_ref(const std::vector<uint8_t>& codes, int64_t ldc, int64_t N, int64_t K, int bits) {
  const int64_t rows = K * bits / 32;
  std::vector<int32_t> q(rows * N);
  for (int64_t n = 0; n < N; ++n) {
    std::vector<uint32_t> v(K);
    for (int64_t k = 0; k < K; ++k) v[k] = codes[n * ldc + k] & ((1u << bits) - 1);
    const auto s = stream(v, bits);
    for (int64_t r = 0; r < rows; ++r) q[r * N + n] = s[r];
  }
  return q;
}

void check_qweight(Context& ctx, std::mt19937& rng, int64_t N, int64_t K, int64_t pad, int bits, bool high) {
  const int64_t ldc = K + pad;
  std::vector<uint8_t> c(N * ldc);
  for (auto& x : c) x = (uint8_t)(rng() % (high ? 256u : (1u << bits)));
  const auto ref = qweight_ref(c, ldc, N, K, bits);
  auto dc = upload(ctx, c);
  DevBuf<int32_t> q(ref.size());
  const std::string shape = strf("bits=%d N=%lld K=%lld ldc=K+%lld%s", bits, (long long)N, (long long)K, (long long)pad,
                                 high ? ", codes with bits above 2^bits − 1 (masked)" : "");
  for (int variant = 0; variant < 2; ++variant) {
    poison(ctx, q.get(), ref.size());
    (variant ? pack_qweight_ref : pack_qweight)(ctx, dc.get(), ldc, N, K, bits, q.get());
    validate_exact(strf("%s %s", variant ? "pack_qweight_ref" : "pack_qweight", shape.c_str()), download(ctx, q.get(), ref.size()), ref);
  }
  // The CPU engine's packer takes whole tiles of 32 rows (kernels/cpu/pack.cc).
  if (high || pad || N % 32 != 0) return;
  std::vector<int32_t> cpu(ref.size());
  gf::pack_qweight_ref(c.data(), N, K, bits, cpu.data());
  validate_exact("CPU engine gf::pack_qweight_ref vs this reference, " + shape, cpu, ref);
}

void check_qzeros(Context& ctx, std::mt19937& rng, int64_t G, int64_t N, int64_t pad, int bits) {
  const int64_t ldz = N + pad, words = N * bits / 32;
  std::vector<int32_t> z(G * ldz);
  for (auto& x : z) x = (int32_t)(rng() % ((1u << bits) + 1));  // [0, 2^bits]
  z[0] = 0;
  z[1] = 1 << bits;
  std::vector<int32_t> ref(G * words), cpu(G * words);
  for (int64_t g = 0; g < G; ++g) {
    std::vector<uint32_t> v(N);
    for (int64_t n = 0; n < N; ++n) v[n] = (uint32_t)(z[g * ldz + n] - 1) & ((1u << bits) - 1);  // (zero − 1) mod 2^bits
    const auto s = stream(v, bits);
    std::copy(s.begin(), s.end(), ref.begin() + g * words);
  }
  auto dz = upload(ctx, z);
  DevBuf<int32_t> q(G * words);
  poison(ctx, q.get(), G * words);
  pack_qzeros(ctx, dz.get(), ldz, G, N, bits, q.get());
  const std::string shape = strf("bits=%d G=%lld N=%lld ldz=N+%lld (zeros 0 and 2^bits included)", bits, (long long)G, (long long)N, (long long)pad);
  validate_exact("pack_qzeros " + shape, download(ctx, q.get(), G * words), ref);
  if (pad) return;
  gf::pack_qzeros_ref(z.data(), G, N, bits, cpu.data());
  validate_exact("CPU engine gf::pack_qzeros_ref vs this reference, " + shape, cpu, ref);
}

void check_scales(Context& ctx, std::mt19937& rng, int64_t G, int64_t N, int64_t pad) {
  const int64_t lds = N + pad;
  auto s = random_floats(rng, G * lds, 0.01f);
  const float edge[] = {65504.0f, 65519.0f, 65520.0f, 1e6f, -1e6f, 6e-8f, 2.9e-8f, 3e-5f, 0.0f, -0.0f};
  for (int i = 0; i < 10 && i < N; ++i) s[i] = edge[i];
  // Round to nearest even, like the host conversion: bit-exact (65520 and up → inf).
  std::vector<uint16_t> ref(G * N);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < N; ++n) ref[g * N + n] = hbits(f2h(s[g * lds + n]));
  auto ds = upload(ctx, s);
  DevBuf<__half> out(G * N);
  poison(ctx, out.get(), G * N);
  scales_to_f16(ctx, ds.get(), lds, G, N, out.get());
  validate_exact(strf("scales_to_f16 G=%lld N=%lld lds=N+%lld (65504, 65519, 65520, ±1e6, subnormals, ±0)", (long long)G, (long long)N, (long long)pad),
                 bits_of(download(ctx, out.get(), G * N)), ref);
}

void timings(Context& ctx, std::mt19937& rng) {
  const int64_t N = 8192, K = 28672;  // Llama-2-70B down_proj
  std::vector<uint8_t> c(N * K);
  for (auto& x : c) x = (uint8_t)(rng() & 15);
  auto dc = upload(ctx, c);
  DevBuf<int32_t> q(K * 4 / 32 * N);
  for (int variant = 0; variant < 2; ++variant) {
    const double ms = time_ms(ctx, variant ? 3 : 10, [&] { (variant ? pack_qweight_ref : pack_qweight)(ctx, dc.get(), K, N, K, 4, q.get()); });
    timing_line(strf("%s 4-bit N=%lld K=%lld (%s)", variant ? "pack_qweight_ref" : "pack_qweight", (long long)N, (long long)K,
                     variant ? "thread per word, bit by bit" : "thread per word, value by value"),
                ms, strf("%.0f GB/s (codes in)", (double)N * K / ms / 1e6));
  }
}

}  // namespace

int main() {
  return run_check("pack_check", [](Context& ctx) {
    std::mt19937 rng(1305);
    for (int bits : {2, 3, 4, 8}) {
      check_qweight(ctx, rng, 96, 256, 0, bits, false);
      check_qzeros(ctx, rng, 4, 96, 0, bits);
    }
    check_qweight(ctx, rng, 1, 32, 0, 3, false);     // one row, one stream of 32 values
    check_qweight(ctx, rng, 130, 96, 160, 3, false); // N not a multiple of the block, stacked rows
    check_qweight(ctx, rng, 64, 128, 0, 4, true);    // high bits masked
    check_qzeros(ctx, rng, 1, 32, 0, 3);
    check_qzeros(ctx, rng, 7, 4096, 32, 4);          // stacked zeros (ldz > N)
    check_scales(ctx, rng, 1, 32, 0);
    check_scales(ctx, rng, 7, 300, 12);
    if (timing_enabled()) timings(ctx, rng);
  });
}
