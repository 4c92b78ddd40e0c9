/** Hugging Face Llama weight names. */

export const EMBED = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';

/** The seven linear layers of a decoder layer, in the order the checkpoint names them. */
export const LINEARS = [
  'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj',
  'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj',
] as const;
export type LinearName = (typeof LINEARS)[number];

export function layerPrefix(layer: number): string {
  return `model.layers.${layer}.`;
}

export function linearWeight(layer: number, linear: LinearName): string {
  return `${layerPrefix(layer)}${linear}.weight`;
}

export function inputNorm(layer: number): string {
  return `${layerPrefix(layer)}input_layernorm.weight`;
}

export function postAttentionNorm(layer: number): string {
  return `${layerPrefix(layer)}post_attention_layernorm.weight`;
}
