// The layer's stacks (linears sharing an input, solved as one: layer_quant.h) and their solves:
// the plan's stacks, one GPTQ solve per stack (with GPTAQ's cross term when given), QEP's
// correction before it, and the per-stage device clock of quantize_layer.
#pragma once
#include <cuda_fp16.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "layer_quant.h"

namespace gfc {

// Device time per stage name: event pairs, summed once at the end.
class Timeline {
 public:
  explicit Timeline(Context& c) : ctx_(c) {}
  ~Timeline() { for (auto& r : recs_) { cudaEventDestroy(r.a); cudaEventDestroy(r.b); } }
  void begin(const char* name) {
    Rec r{name, nullptr, nullptr};
    CUDA_CHECK(cudaEventCreate(&r.a));
    CUDA_CHECK(cudaEventCreate(&r.b));
    CUDA_CHECK(cudaEventRecord(r.a, ctx_.stream));
    recs_.push_back(r);
  }
  void end() { CUDA_CHECK(cudaEventRecord(recs_.back().b, ctx_.stream)); }
  std::map<std::string, double> seconds() {
    ctx_.sync();
    std::map<std::string, double> t;
    for (auto& r : recs_) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, r.a, r.b));
      t[r.name] += ms / 1e3;
    }
    return t;
  }

 private:
  struct Rec { std::string name; cudaEvent_t a, b; };
  Context& ctx_;
  std::vector<Rec> recs_;
};

struct Stack {
  std::vector<std::pair<std::string, int64_t>> parts;  // (name, rows) in stack order
  std::vector<std::string> order;                      // the plan's order of the members
  std::vector<gf::Linear> linears;                     // the parts' linears, in stack order
  int64_t N, K;
  __half* W;
};

// The stack of `stacked` (the plan's row order: gf::check_plan fixed it to LayerDev's) solved at
// `group`'s forward point, its members reported in the group's order; rows(l): l's output rows.
template <class Rows>
Stack plan_stack(const std::vector<gf::Linear>& stacked, const gf::PlanGroup& group, int64_t K, __half* W, Rows rows) {
  Stack s{{}, {}, {}, 0, K, W};
  for (gf::Linear l : stacked) {
    s.parts.emplace_back(gf::linear_name(l), rows(l));
    s.linears.push_back(l);
    s.N += rows(l);
  }
  for (gf::Linear l : group.linears) s.order.emplace_back(gf::linear_name(l));
  return s;
}


// The GPTQ solve of stack s with Hessian H (and with GPTAQ's C [K, K], its group's cross term,
// when C is not null: gptq.h GptaqDevice with o.gptaq_alpha); s.W's rows become the dequantised
// Q (fp16), the members come back in the plan's order.
void solve_stack(Context& ctx, Timeline& tl, const Stack& s, const float* H, const LayerQuantOptions& o,
                 std::vector<LinearOut>& out, LayerTimes& t, const float* C = nullptr);

// Whether stack s needs its group's cross term: GPTAQ's every stack; QEP's where α > 0 and a
// member is corrected.
bool needs_cross(const Stack& s, const LayerQuantOptions& o);

// QEP before a stack's solve (qep.h): the corrected members' rows become W* in s.W.
void correct_stack(Context& ctx, const Stack& s, const float* H, const float* C, const LayerQuantOptions& o,
                   LayerTimes& t);

}  // namespace gfc
