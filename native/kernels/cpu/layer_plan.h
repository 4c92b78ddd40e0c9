// The true-sequential plan of one Llama decoder layer as data: which linears are solved at which
// forward point of the layer, in which order, and how the linears sharing an input are stacked.
// The plan itself is defined once, in src/model/layer-plan.ts, and reaches the engines as names
// (bindings/layer.cc: plan_arg); this header only names the pieces and checks a plan against
// what the layer's kernels can run. Header-only: the CUDA layer (kernels/cuda/layer_quant.cu)
// uses it too.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

namespace gf {

// The seven linears of a decoder layer.
enum class Linear { q = 0, k, v, o, gate, up, down };
constexpr int kLinears = 7;

// The points of the layer's forward that yield a linear's input, in forward order.
enum class ForwardPoint {
  input_layernorm = 0,       // input_layernorm(x): the input of q, k, v
  attention,                 // the attention output before o_proj: the input of o
  post_attention_layernorm,  // post_attention_layernorm(x + o(att)): the input of gate, up
  mlp_act,                   // silu(gate(·)) · up(·): the input of down
};
constexpr int kForwardPoints = 4;

inline const char* linear_name(Linear l) {
  static const char* const names[kLinears] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                              "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                              "mlp.down_proj"};
  return names[(int)l];
}

inline const char* point_name(ForwardPoint p) {
  static const char* const names[kForwardPoints] = {"input_layernorm", "attention", "post_attention_layernorm",
                                                    "mlp_act"};
  return names[(int)p];
}

// The forward point whose output a linear reads (fixed by the Llama architecture).
inline ForwardPoint input_of(Linear l) {
  switch (l) {
    case Linear::q: case Linear::k: case Linear::v: return ForwardPoint::input_layernorm;
    case Linear::o: return ForwardPoint::attention;
    case Linear::gate: case Linear::up: return ForwardPoint::post_attention_layernorm;
    default: return ForwardPoint::mlp_act;
  }
}

inline Linear linear_by_name(const std::string& name, const std::string& where) {
  for (int i = 0; i < kLinears; ++i)
    if (name == linear_name((Linear)i)) return (Linear)i;
  throw std::invalid_argument(where + ": unknown linear '" + name + "'");
}

inline ForwardPoint point_by_name(const std::string& name, const std::string& where) {
  for (int i = 0; i < kForwardPoints; ++i)
    if (name == point_name((ForwardPoint)i)) return (ForwardPoint)i;
  throw std::invalid_argument(where + ": unknown forward point '" + name +
                              "' (input_layernorm, attention, post_attention_layernorm or mlp_act)");
}

struct PlanGroup {
  ForwardPoint input;           // where the group's Hessian is gathered
  std::vector<Linear> linears;  // solved (and reported) in this order
};

struct LayerPlan {
  std::vector<PlanGroup> groups;     // in forward order
  std::vector<Linear> qkv, gate_up;  // the rows of the stacked weights, top to bottom
};

// Throws std::invalid_argument, naming the problem, unless the layer can run `p`: every linear
// in exactly one group; a group's linears all read its forward point; one group per point, in
// forward order; and the stacks as the layer kernels and weight slots lay them out,
// qkv = [q; k; v] and gate_up = [gate; up].
inline void check_plan(const LayerPlan& p) {
  auto list = [](const std::vector<Linear>& v) {
    std::string s;
    for (Linear l : v) s += (s.empty() ? "" : ", ") + std::string(linear_name(l));
    return "[" + s + "]";
  };
  if ((int)p.groups.size() != kForwardPoints)
    throw std::invalid_argument("plan: expected " + std::to_string(kForwardPoints) +
                                " groups (one per forward point), got " + std::to_string(p.groups.size()));
  bool seen[kLinears] = {};
  for (size_t g = 0; g < p.groups.size(); ++g) {
    const PlanGroup& grp = p.groups[g];
    const std::string where = "plan: group " + std::to_string(g) + " (" + point_name(grp.input) + ")";
    if ((int)grp.input != (int)g)
      throw std::invalid_argument(where + ": expected forward point " + point_name((ForwardPoint)g) +
                                  " (one group per point, in forward order)");
    if (grp.linears.empty()) throw std::invalid_argument(where + ": no linears");
    for (Linear l : grp.linears) {
      if (input_of(l) != grp.input)
        throw std::invalid_argument(where + ": " + linear_name(l) + " reads " + point_name(input_of(l)));
      if (seen[(int)l]) throw std::invalid_argument(where + ": " + linear_name(l) + " appears twice");
      seen[(int)l] = true;
    }
  }
  for (int i = 0; i < kLinears; ++i)
    if (!seen[i]) throw std::invalid_argument(std::string("plan: ") + linear_name((Linear)i) + " is in no group");
  const std::vector<Linear> qkv{Linear::q, Linear::k, Linear::v}, gate_up{Linear::gate, Linear::up};
  if (p.qkv != qkv)
    throw std::invalid_argument("plan: stacks.qkv must be " + list(qkv) + " (the layout of the weight slots and " +
                                "of the attention kernels), got " + list(p.qkv));
  if (p.gate_up != gate_up)
    throw std::invalid_argument("plan: stacks.gateUp must be " + list(gate_up) + " (the layout of the weight " +
                                "slots and of swiglu), got " + list(p.gate_up));
}

}  // namespace gf
