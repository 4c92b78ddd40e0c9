// Measured fp32 FMA peak of this machine: the yardstick for every CPU benchmark.
#pragma once
#include <cstdint>

namespace gf {
// Runs independent FMA chains on every worker thread for about `seconds`; returns FLOP/s.
double measure_fp32_peak(double seconds);
}  // namespace gf
