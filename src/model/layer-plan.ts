/**
 * The one definition of how a Llama decoder layer is quantized (GPTQ-SPEC.md, "True-sequential
 * order"): the true-sequential groups in the reference's order, each with the forward point that
 * yields its members' input, and the row order of the stacked weights the engines solve as one.
 * Both engines get this plan as data (names) and report linears in its order
 * (native/kernels/cpu/layer_plan.h checks it); layerWeightEntries lays the CUDA slots out by it.
 */
import type { LayerWeightsF32, NativeLayerPlan } from '../native';
import { LinearName } from './weights';

/** Where in the layer's forward a linear's input is produced. */
export type ForwardPoint =
  /** input_layernorm(x): the input of q, k, v. */
  | 'input_layernorm'
  /** The attention output before o_proj (with q, k, v quantized). */
  | 'attention'
  /** post_attention_layernorm(x + o_proj(att)): the input of gate, up. */
  | 'post_attention_layernorm'
  /** silu(gate_proj(·)) · up_proj(·) with gate, up quantized: the input of down. */
  | 'mlp_act';

export interface PlanGroup {
  /** The forward point whose output is the members' input (their shared Hessian). */
  input: ForwardPoint;
  /** Solved, and reported, in this order. */
  linears: readonly LinearName[];
}

export interface LayerPlan extends NativeLayerPlan {
  /** In forward order; each group's Hessian is gathered with the earlier groups quantized. */
  groups: readonly PlanGroup[];
  /** Rows of the stacked weights, top to bottom: qkv = [q; k; v], gateUp = [gate; up]. */
  stacks: { qkv: readonly LinearName[]; gateUp: readonly LinearName[] };
}

const group = (input: ForwardPoint, linears: LinearName[]): PlanGroup => Object.freeze({ input, linears: Object.freeze(linears) });

/** The reference's plan: [k, v, q] → [o] → [up, gate] → [down]; stacks [q; k; v] and [gate; up]. */
export const LAYER_PLAN: LayerPlan = Object.freeze({
  groups: Object.freeze([
    group('input_layernorm', ['self_attn.k_proj', 'self_attn.v_proj', 'self_attn.q_proj']),
    group('attention', ['self_attn.o_proj']),
    group('post_attention_layernorm', ['mlp.up_proj', 'mlp.gate_proj']),
    group('mlp_act', ['mlp.down_proj']),
  ]),
  stacks: Object.freeze({
    qkv: Object.freeze<LinearName[]>(['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj']),
    gateUp: Object.freeze<LinearName[]>(['mlp.gate_proj', 'mlp.up_proj']),
  }),
});

/** The linears of a layer in the order a plan solves and reports them. */
export function planOrder(plan: LayerPlan = LAYER_PLAN): LinearName[] {
  return plan.groups.flatMap((g) => g.linears);
}

/** Which field of a layer's fp32 weights (LlamaModel.layer) holds each linear. */
export const WEIGHT_KEY: Record<LinearName, keyof LayerWeightsF32> = {
  'self_attn.q_proj': 'q', 'self_attn.k_proj': 'k', 'self_attn.v_proj': 'v', 'self_attn.o_proj': 'o',
  'mlp.gate_proj': 'gate', 'mlp.up_proj': 'up', 'mlp.down_proj': 'down',
};
