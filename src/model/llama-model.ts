/**
 * A Llama checkpoint opened for layer-by-layer work: the config, and tensors read one at
 * a time from (possibly sharded) safetensors and converted to fp32 by the native addon.
 * Nothing but what a caller asks for is in memory.
 */
import { UserError } from '../errors';
import { Checkpoint } from '../io/checkpoint';
import * as path from 'node:path';
import { readJsonFile } from '../io/json-file';
import { parseQuantizeConfig, QUANTIZE_CONFIG_FILE, QuantizeConfig, quantizedTensorNames } from '../gptq/format';
import { bf16ToF32Checked, countNonFinite, dequantizeGptq, f16ToF32Checked, LayerWeightsF32, NativeDims, WeightEntry, WeightPart } from '../native';
import { LlamaConfig, loadLlamaConfig } from './config';
import { LAYER_PLAN } from './layer-plan';
import {
  EMBED, FINAL_NORM, LINEARS, LM_HEAD, LinearName, inputNorm, linearWeight, postAttentionNorm,
} from './weights';

export class LlamaModel {
  private constructor(
    readonly dir: string,
    readonly config: LlamaConfig,
    readonly checkpoint: Checkpoint,
    /** Set for a GPTQ branch: its linears are dequantized on load. */
    readonly quantization: QuantizeConfig | null,
  ) {}

  static async open(dir: string): Promise<LlamaModel> {
    const config = await loadLlamaConfig(dir);
    const quantization = await readQuantization(dir, config);
    const checkpoint = await Checkpoint.open(dir);
    const model = new LlamaModel(dir, config, checkpoint, quantization);
    model.checkShapes();
    return model;
  }

  /** Dimensions for the native kernels. */
  dims(round16: boolean): NativeDims {
    const c = this.config;
    return {
      hidden: c.hiddenSize, ffn: c.intermediateSize, heads: c.numHeads, kvHeads: c.numKvHeads,
      headDim: c.headDim, eps: c.rmsNormEps, ropeTheta: c.ropeTheta, round16,
    };
  }

  /**
   * Reads a tensor as fp32, checking its shape against the config and that every value is
   * finite (a NaN/Inf weight would silently poison every later number).
   */
  async tensorF32(name: string, shape: number[]): Promise<Float32Array> {
    const info = this.checkpoint.info(name);
    this.checkShape(name, shape);
    const buf = await this.checkpoint.read(name);
    const n = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    let nonFinite = 0;
    switch (info.dtype) {
      case 'F16':
        ({ values, nonFinite } = await f16ToF32Checked(new Uint16Array(aligned(buf).buffer, 0, n)));
        break;
      case 'F32':
        values = new Float32Array(aligned(buf).buffer, 0, n);
        nonFinite = await countNonFinite(values, 'F32');
        break;
      case 'BF16':
        ({ values, nonFinite } = await bf16ToF32Checked(new Uint16Array(aligned(buf).buffer, 0, n)));
        break;
      default:
        throw new UserError(`${name}: dtype ${info.dtype} is not a floating-point weight type`);
    }
    if (nonFinite > 0) throw this.nonFiniteError(name, nonFinite);
    return values;
  }

  /**
   * A tensor's bytes as stored, after checking (natively) that a floating-point tensor holds
   * no NaN/Inf: what is copied into a branch unchanged must be as finite as what is computed.
   */
  async tensorBytes(name: string): Promise<Buffer> {
    const buf = await this.checkpoint.read(name);
    const bad = await nonFiniteIn(buf, this.checkpoint.info(name).dtype);
    if (bad > 0) throw this.nonFiniteError(name, bad);
    return buf;
  }

  /** Every floating-point tensor of the checkpoint that holds NaN/Inf, with its count (one read each). */
  async nonFiniteTensors(onTensor?: (done: number, total: number) => void): Promise<{ name: string; nonFinite: number }[]> {
    const out: { name: string; nonFinite: number }[] = [];
    const names = this.checkpoint.names();
    for (let i = 0; i < names.length; i++) {
      const info = this.checkpoint.info(names[i]);
      if (isFloatDtype(info.dtype)) {
        const bad = await nonFiniteIn(await this.checkpoint.read(names[i]), info.dtype);
        if (bad > 0) out.push({ name: names[i], nonFinite: bad });
      }
      onTensor?.(i + 1, names.length);
    }
    return out;
  }

  private nonFiniteError(name: string, count: number): UserError {
    return new UserError(`${this.dir}: weight ${name} has ${count} NaN/Inf value(s)`);
  }

  embedding(): Promise<Float32Array> {
    return this.tensorF32(EMBED, [this.config.vocabSize, this.config.hiddenSize]);
  }

  finalNorm(): Promise<Float32Array> {
    return this.tensorF32(FINAL_NORM, [this.config.hiddenSize]);
  }

  /** The output projection; with tied embeddings it is the embedding matrix. */
  lmHead(): Promise<Float32Array> {
    return this.tensorF32(this.lmHeadName(), [this.config.vocabSize, this.config.hiddenSize]);
  }

  /** The tensor lm_head reads: lm_head.weight, or the embedding with tied embeddings. */
  lmHeadName(): string {
    return this.config.tieWordEmbeddings && !this.checkpoint.has(LM_HEAD) ? EMBED : LM_HEAD;
  }

  /** All weights of decoder layer `i` in fp32 (one layer in memory at a time). */
  async layer(i: number): Promise<LayerWeightsF32> {
    const s = this.shapes(i);
    const read = (name: string) => {
      const linear = LINEARS.find((l) => linearWeight(i, l) === name);
      return linear && this.quantization ? this.dequantized(i, linear, s[name]) : this.tensorF32(name, s[name]);
    };
    return {
      inputNorm: await read(inputNorm(i)),
      q: await read(linearWeight(i, 'self_attn.q_proj')),
      k: await read(linearWeight(i, 'self_attn.k_proj')),
      v: await read(linearWeight(i, 'self_attn.v_proj')),
      o: await read(linearWeight(i, 'self_attn.o_proj')),
      postNorm: await read(postAttentionNorm(i)),
      gate: await read(linearWeight(i, 'mlp.gate_proj')),
      up: await read(linearWeight(i, 'mlp.up_proj')),
      down: await read(linearWeight(i, 'mlp.down_proj')),
    };
  }

  /**
   * Where decoder layer `i`'s weights are, for the CUDA engine's pinned slots (read there on
   * native threads, no fp32 copy here): each tensor's shard, byte offset and dtype, in slot
   * order (the stacks of LAYER_PLAN: [q; k; v], o, [gate; up], down, the norms). A GPTQ branch's linears are
   * dequantized here and given as data.
   */
  async layerWeightEntries(i: number): Promise<WeightEntry[]> {
    const s = this.shapes(i);
    const lw = (l: LinearName) => linearWeight(i, l);
    const stack = (part: WeightPart, linears: readonly LinearName[]) => linears.map((l): [string, WeightPart] => [lw(l), part]);
    const order: [string, WeightPart][] = [
      ...stack('qkv', LAYER_PLAN.stacks.qkv), [lw('self_attn.o_proj'), 'o'], ...stack('gateUp', LAYER_PLAN.stacks.gateUp),
      [lw('mlp.down_proj'), 'down'], [inputNorm(i), 'inputNorm'], [postAttentionNorm(i), 'postNorm'],
    ];
    const at: Partial<Record<WeightPart, number>> = {};
    const out: WeightEntry[] = [];
    for (const [name, part] of order) {
      const count = s[name].reduce((a, b) => a * b, 1);
      const base = { name, part, at: at[part] ?? 0, count };
      const linear = LINEARS.find((l) => linearWeight(i, l) === name);
      if (linear && this.quantization) {
        out.push({ ...base, dtype: 'F32', data: await this.dequantized(i, linear, s[name]) });
      } else {
        const info = this.checkpoint.info(name);
        if (info.dtype !== 'F16' && info.dtype !== 'BF16' && info.dtype !== 'F32') {
          throw new UserError(`${name}: dtype ${info.dtype} is not a floating-point weight type`);
        }
        out.push({ ...base, dtype: info.dtype, file: info.file, offset: info.offset });
      }
      at[part] = base.at + count;
    }
    return out;
  }

  /** A GPTQ linear's weight [N×K] from qweight, qzeros, scales and g_idx. */
  private async dequantized(layer: number, linear: LinearName, [n, k]: number[]): Promise<Float32Array> {
    const names = quantizedTensorNames(linearWeight(layer, linear).replace(/\.weight$/, ''));
    const bytes = async (t: string) => aligned(await this.checkpoint.read(t)).buffer;
    const q = this.quantization!;
    const scales = new Uint16Array(await bytes(names.scales));
    const badScales = await countNonFinite(scales, 'F16');
    if (badScales > 0) throw this.nonFiniteError(names.scales, badScales);
    const w = await dequantizeGptq(
      new Int32Array(await bytes(names.qweight)), new Int32Array(await bytes(names.qzeros)),
      scales, new Int32Array(await bytes(names.g_idx)), q.bits, k, n,
      // scale · (code − zero) in fp16, as AutoGPTQ's torch kernels and transformers compute it
      { round16: true },
    );
    const bad = await countNonFinite(w, 'F32');
    if (bad > 0) {
      throw new UserError(`${this.dir}: decoder layer ${layer} ${linear}: ${bad} dequantized weight(s) are NaN/Inf (scales too large for fp16)`);
    }
    return w;
  }

  async close(): Promise<void> {
    await this.checkpoint.close();
  }

  /** Expected shape of every weight of layer `i`. */
  private shapes(i: number): Record<string, number[]> {
    const c = this.config;
    const H = c.hiddenSize, F = c.intermediateSize;
    const qd = c.numHeads * c.headDim, kvd = c.numKvHeads * c.headDim;
    return {
      [inputNorm(i)]: [H],
      [linearWeight(i, 'self_attn.q_proj')]: [qd, H],
      [linearWeight(i, 'self_attn.k_proj')]: [kvd, H],
      [linearWeight(i, 'self_attn.v_proj')]: [kvd, H],
      [linearWeight(i, 'self_attn.o_proj')]: [H, qd],
      [postAttentionNorm(i)]: [H],
      [linearWeight(i, 'mlp.gate_proj')]: [F, H],
      [linearWeight(i, 'mlp.up_proj')]: [F, H],
      [linearWeight(i, 'mlp.down_proj')]: [H, F],
    };
  }

  private checkShape(name: string, shape: number[]): void {
    if (!this.checkpoint.has(name)) {
      throw new UserError(`${this.dir}: weight ${name} is missing from the checkpoint`);
    }
    const got = this.checkpoint.info(name).shape;
    if (got.length !== shape.length || got.some((v, k) => v !== shape[k])) {
      throw new UserError(
        `${name}: shape [${got.join(', ')}] does not match config.json (expected [${shape.join(', ')}])`,
      );
    }
  }

  /** Fails at open time, not an hour into a run, if any weight is missing or misshapen. */
  private checkShapes(): void {
    const c = this.config;
    this.checkShape(EMBED, [c.vocabSize, c.hiddenSize]);
    this.checkShape(FINAL_NORM, [c.hiddenSize]);
    if (!c.tieWordEmbeddings || this.checkpoint.has(LM_HEAD)) {
      this.checkShape(LM_HEAD, [c.vocabSize, c.hiddenSize]);
    }
    for (let i = 0; i < c.numLayers; i++) {
      for (const [name, shape] of Object.entries(this.shapes(i))) {
        const linear = LINEARS.find((l) => linearWeight(i, l) === name);
        if (linear && this.quantization) this.checkQuantizedShapes(i, linear, shape);
        else this.checkShape(name, shape);
      }
    }
  }

  private checkQuantizedShapes(layer: number, linear: LinearName, [n, k]: number[]): void {
    const q = this.quantization!;
    const groups = q.group_size === -1 ? 1 : k / q.group_size;
    const names = quantizedTensorNames(linearWeight(layer, linear).replace(/\.weight$/, ''));
    const expected: [string, string, number[]][] = [
      [names.qweight, 'I32', [(k * q.bits) / 32, n]],
      [names.qzeros, 'I32', [groups, (n * q.bits) / 32]],
      [names.scales, 'F16', [groups, n]],
      [names.g_idx, 'I32', [k]],
    ];
    for (const [name, dtype, shape] of expected) {
      this.checkShape(name, shape);
      const got = this.checkpoint.info(name).dtype;
      if (got !== dtype) throw new UserError(`${name}: dtype ${got}, expected ${dtype} (AutoGPTQ format)`);
    }
  }
}

/** quantize_config.json, or config.json's quantization_config: null for an fp16 model. */
async function readQuantization(dir: string, config: LlamaConfig): Promise<QuantizeConfig | null> {
  const file = path.join(dir, QUANTIZE_CONFIG_FILE);
  const json = await readJsonFile(file);
  if (json !== undefined) return parseQuantizeConfig(json, file);
  return config.quantization ? parseQuantizeConfig(config.quantization, path.join(dir, 'config.json')) : null;
}

function isFloatDtype(dtype: string): dtype is 'F16' | 'BF16' | 'F32' {
  return dtype === 'F16' || dtype === 'BF16' || dtype === 'F32';
}

/** NaN/Inf values in a stored tensor (0 for integer dtypes), counted natively. */
async function nonFiniteIn(buf: Buffer, dtype: string): Promise<number> {
  if (!isFloatDtype(dtype)) return 0;
  const a = aligned(buf);
  if (dtype === 'F32') return countNonFinite(new Float32Array(a.buffer, 0, a.length >> 2), 'F32');
  return countNonFinite(new Uint16Array(a.buffer, 0, a.length >> 1), dtype);
}

/** The bytes at offset 0 of their own ArrayBuffer (Buffers may sit inside a shared pool). */
function aligned(buf: Buffer): Uint8Array {
  if (buf.byteOffset === 0 && buf.buffer.byteLength === buf.length) return new Uint8Array(buf.buffer);
  const out = new Uint8Array(buf.length);
  out.set(buf);
  return out;
}
