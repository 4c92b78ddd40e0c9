/**
 * Where each tensor of a model goes in the CUDA inference path's slots: the byte layout of one
 * slot for the embedding, for each decoder layer (fp16 linears, or a GPTQ branch's qweight /
 * qzeros / scales / g_idx as stored, dequantized on the GPU) and for the head (final norm and
 * lm_head). Every tensor is read from its safetensors shard by native threads; nothing passes
 * through JavaScript.
 */
import { UserError } from '../errors';
import { numGroups, quantizedTensorNames } from '../gptq/format';
import { LlamaModel } from '../model/llama-model';
import { EMBED, FINAL_NORM, LINEARS, inputNorm, linearWeight, postAttentionNorm } from '../model/weights';
import { EvalEntry, EvalLayerLayout, EvalLinearPlace } from '../native';

export interface SlotPlan {
  entries: EvalEntry[];
  /** Bytes of the slot this plan fills (a multiple of 256). */
  bytes: number;
}

const ALIGN = 256;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** Places tensors one after another at aligned offsets. */
class SlotBuilder {
  readonly entries: EvalEntry[] = [];
  private end = 0;

  constructor(private model: LlamaModel) {}

  /** Adds a checkpoint tensor; floating types are kept as fp16, `int32` ones as they are. */
  add(name: string, kind: 'float' | 'int32'): number {
    const info = this.model.checkpoint.info(name);
    const floats = ['F16', 'BF16', 'F32'];
    if (kind === 'float' && !floats.includes(info.dtype)) {
      throw new UserError(`${name}: dtype ${info.dtype} is not a floating-point weight type`);
    }
    if (kind === 'int32' && info.dtype !== 'I32') throw new UserError(`${name}: dtype ${info.dtype}, expected I32 (AutoGPTQ format)`);
    const count = info.shape.reduce((a, b) => a * b, 1);
    const at = this.end;
    this.entries.push({ name, at, count, dtype: info.dtype as EvalEntry['dtype'], file: info.file, offset: info.offset });
    this.end = align(at + count * (kind === 'int32' ? 4 : 2));
    return at;
  }

  plan(): SlotPlan {
    return { entries: this.entries, bytes: align(Math.max(this.end, ALIGN)) };
  }
}

export function embeddingPlan(model: LlamaModel): SlotPlan & { tableAt: number } {
  const b = new SlotBuilder(model);
  const tableAt = b.add(EMBED, 'float');
  return { ...b.plan(), tableAt };
}

export function headPlan(model: LlamaModel): SlotPlan & { normAt: number; headAt: number } {
  const b = new SlotBuilder(model);
  const normAt = b.add(FINAL_NORM, 'float');
  const headAt = b.add(model.lmHeadName(), 'float');
  return { ...b.plan(), normAt, headAt };
}

/** Decoder layer `i`: its linears in the order q, k, v, o, gate, up, down, then the two norms. */
export function layerPlan(model: LlamaModel, i: number): SlotPlan & { layout: EvalLayerLayout } {
  const b = new SlotBuilder(model);
  const q = model.quantization;
  const linears: EvalLinearPlace[] = LINEARS.map((l) => {
    const weight = linearWeight(i, l);
    if (!q) return { at: b.add(weight, 'float') };
    const names = quantizedTensorNames(weight.replace(/\.weight$/, ''));
    const k = model.checkpoint.info(names.g_idx).shape[0];
    return {
      qweight: b.add(names.qweight, 'int32'), qzeros: b.add(names.qzeros, 'int32'), scales: b.add(names.scales, 'float'),
      gIdx: b.add(names.g_idx, 'int32'), groups: numGroups(k, q.group_size),
    };
  });
  const layout: EvalLayerLayout = {
    ...(q ? { bits: q.bits } : {}), linears, inputNorm: b.add(inputNorm(i), 'float'), postNorm: b.add(postAttentionNorm(i), 'float'),
  };
  return { ...b.plan(), layout };
}
