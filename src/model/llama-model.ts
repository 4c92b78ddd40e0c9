/**
 * A Llama checkpoint opened for layer-by-layer work: the config, and tensors read one at
 * a time from (possibly sharded) safetensors and converted to fp32 by the native addon.
 * Nothing but what a caller asks for is in memory.
 */
import { UserError } from '../errors';
import { Checkpoint } from '../io/checkpoint';
import { f16ToF32, LayerWeightsF32, NativeDims } from '../native';
import { LlamaConfig, loadLlamaConfig } from './config';
import {
  EMBED, FINAL_NORM, LM_HEAD, inputNorm, linearWeight, postAttentionNorm,
} from './weights';

export class LlamaModel {
  private constructor(
    readonly dir: string,
    readonly config: LlamaConfig,
    readonly checkpoint: Checkpoint,
  ) {}

  static async open(dir: string): Promise<LlamaModel> {
    const config = await loadLlamaConfig(dir);
    const checkpoint = await Checkpoint.open(dir);
    const model = new LlamaModel(dir, config, checkpoint);
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

  /** Reads a tensor as fp32, checking its shape against the config. */
  async tensorF32(name: string, shape: number[]): Promise<Float32Array> {
    const info = this.checkpoint.info(name);
    this.checkShape(name, shape);
    const buf = await this.checkpoint.read(name);
    const n = shape.reduce((a, b) => a * b, 1);
    switch (info.dtype) {
      case 'F16':
        return f16ToF32(new Uint16Array(copyAligned(buf).buffer, 0, n));
      case 'F32':
        return new Float32Array(copyAligned(buf).buffer, 0, n);
      case 'BF16': {
        const src = new Uint16Array(copyAligned(buf).buffer, 0, n);
        const bits = new Uint32Array(n);
        for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
        return new Float32Array(bits.buffer);
      }
      default:
        throw new UserError(`${name}: dtype ${info.dtype} is not a floating-point weight type`);
    }
  }

  embedding(): Promise<Float32Array> {
    return this.tensorF32(EMBED, [this.config.vocabSize, this.config.hiddenSize]);
  }

  finalNorm(): Promise<Float32Array> {
    return this.tensorF32(FINAL_NORM, [this.config.hiddenSize]);
  }

  /** The output projection; with tied embeddings it is the embedding matrix. */
  lmHead(): Promise<Float32Array> {
    const name = this.config.tieWordEmbeddings && !this.checkpoint.has(LM_HEAD) ? EMBED : LM_HEAD;
    return this.tensorF32(name, [this.config.vocabSize, this.config.hiddenSize]);
  }

  /** All weights of decoder layer `i` in fp32 (one layer in memory at a time). */
  async layer(i: number): Promise<LayerWeightsF32> {
    const s = this.shapes(i);
    const read = (name: string) => this.tensorF32(name, s[name]);
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
      for (const [name, shape] of Object.entries(this.shapes(i))) this.checkShape(name, shape);
    }
  }
}

/** A Buffer's bytes in a fresh, aligned ArrayBuffer (Buffers may sit at odd pool offsets). */
function copyAligned(buf: Buffer): Uint8Array {
  const out = new Uint8Array(buf.length);
  out.set(buf);
  return out;
}
