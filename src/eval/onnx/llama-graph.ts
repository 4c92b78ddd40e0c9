/**
 * The Llama forward pass as an ONNX graph (ai.onnx opset 17, plus com.microsoft MatMulNBits
 * for GPTQ linears), built from our own loader. Everything is computed in fp32; fp16 weights
 * are stored as FLOAT16 initializers exactly as the checkpoint holds them ([N, K]) and Cast +
 * Transpose'd in the graph (ONNX Runtime folds both at session creation).
 *
 * Inputs:  input_ids int64 [batch, seq].
 * Outputs: logits float [batch, seq, vocab]; nll float [batch, seq − 1], the next-token
 *          negative log-likelihood −log softmax(logits[t])[ids[t + 1]] of every position.
 *
 * Per layer, as transformers' LlamaDecoderLayer: RMSNorm (x / sqrt(mean x² + eps) · w), q/k/v
 * projections, rotary embedding (rotate_half form, inv_freq = θ^(−2i/D), positions 0..seq−1),
 * causal grouped-query attention (query head h reads kv head h / (heads / kvHeads)), o_proj,
 * residual, RMSNorm, SwiGLU MLP (down(silu(gate) · up)), residual; then the final norm and
 * lm_head (the embedding when tied).
 */
import { UserError } from '../../errors';
import { f32ToF16Bits } from '../../io/dtypes';
import { IR_VERSION, OnnxModelWriter, OnnxType, onnx } from '../../io/onnx-file';
import { quantizedTensorNames } from '../../gptq/format';
import { LlamaModel } from '../../model/llama-model';
import { EMBED, FINAL_NORM, LM_HEAD, LinearName, inputNorm, linearWeight, postAttentionNorm } from '../../model/weights';
import { dequantizeGptq, unpackGptq } from '../../native';
import { GraphBuilder, MS_DOMAIN, valueInfo } from './graph-builder';
import { packForMatMulNBits } from './matmul-nbits';

export const OPSET = 17;
const INT64_MAX = Number.MAX_SAFE_INTEGER;

export interface LinearExport {
  name: string;
  op: 'MatMul' | 'MatMulNBits';
  /** MatMulNBits: block size, and whether K is permuted (act-order) by a Gather. */
  blockSize?: number;
  permuted?: boolean;
  /** Why a quantized linear was exported dequantized. */
  reason?: string;
}

export interface ExportResult {
  file: string;
  dataFile: string;
  modelBytes: number;
  dataBytes: number;
  linears: LinearExport[];
}

export async function exportLlamaOnnx(
  model: LlamaModel, file: string, onProgress?: (done: number, total: number, label: string) => void,
): Promise<ExportResult> {
  const writer = await OnnxModelWriter.create(file);
  try {
    const g = new LlamaGraph(model, new GraphBuilder(writer));
    const graph = await g.build(onProgress);
    const c = model.config;
    const doc = model.quantization
      ? `GPTQ ${model.quantization.bits}-bit, group ${model.quantization.group_size}, desc_act ${model.quantization.desc_act}`
      : `${c.dtype} weights`;
    const sizes = await writer.finish({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }, { domain: MS_DOMAIN, version: 1 }],
      producerName: 'gptq-forge',
      docString: `Llama (${c.numLayers} layers, hidden ${c.hiddenSize}) from ${model.dir}: ${doc}`,
      graph,
    });
    return { file, dataFile: writer.dataFile, ...sizes, linears: g.linears };
  } catch (e) {
    await writer.abort();
    throw e;
  }
}

class LlamaGraph {
  readonly linears: LinearExport[] = [];
  private readonly gathers = new Map<string, string>();
  private cos = '';
  private sin = '';
  private mask = '';

  constructor(private readonly model: LlamaModel, private readonly b: GraphBuilder) {}

  async build(onProgress?: (done: number, total: number, label: string) => void): Promise<onnx.IGraphProto> {
    const b = this.b, c = this.model.config;
    await this.positions('input_ids');
    const embed = await this.weight(EMBED, [c.vocabSize, c.hiddenSize]);
    let x = b.node('Gather', [embed, 'input_ids'], { axis: { int: 0 } }, { prefix: 'embed' });
    for (let i = 0; i < c.numLayers; i++) {
      x = await this.layer(i, x);
      onProgress?.(i + 1, c.numLayers + 1, `layer ${i + 1}/${c.numLayers}`);
    }
    const xn = await this.rmsNorm(x, FINAL_NORM);
    const headName = c.tieWordEmbeddings && !this.model.checkpoint.has(LM_HEAD) ? EMBED : LM_HEAD;
    const head = headName === EMBED ? embed : await this.weight(LM_HEAD, [c.vocabSize, c.hiddenSize]);
    b.nodeTo('logits', 'MatMul', [xn, b.node('Transpose', [head], { perm: { ints: [1, 0] } })]);
    await this.nll('input_ids', 'logits');
    onProgress?.(c.numLayers + 1, c.numLayers + 1, 'lm_head');
    return {
      name: 'llama',
      node: b.nodes,
      input: [valueInfo('input_ids', OnnxType.INT64, ['batch', 'seq'])],
      output: [
        valueInfo('logits', OnnxType.FLOAT, ['batch', 'seq', c.vocabSize]),
        valueInfo('nll', OnnxType.FLOAT, ['batch', 'seq_minus_1']),
      ],
    };
  }

  /** cos/sin [seq, 1, D] of the rotary embedding and the causal mask [seq, seq]. */
  private async positions(ids: string): Promise<void> {
    const b = this.b, c = this.model.config, D = c.headDim;
    const seq1 = b.node('Slice', [b.node('Shape', [ids]), await b.int64([1]), await b.int64([2])]);
    const seq = b.node('Squeeze', [seq1, await b.int64([0])]);
    const pos = b.node('Range', [await b.int64([0], []), seq, await b.int64([1], [])]);
    const posF = b.node('Unsqueeze', [b.node('Cast', [pos], { to: { int: OnnxType.FLOAT } }), await b.int64([1])]);
    // inv_freq in fp32 as transformers computes it: 1 / θ^(2i / D), repeated for both halves.
    const inv = new Float32Array(D);
    for (let i = 0; i < D / 2; i++) {
      inv[i] = inv[i + D / 2] = Math.fround(1 / Math.fround(Math.pow(c.ropeTheta, Math.fround((2 * i) / D))));
    }
    const ang = b.node('Mul', [posF, await b.float32(inv, [D], 'rope.inv_freq')]);
    const axis1 = await b.int64([1]);
    this.cos = b.node('Unsqueeze', [b.node('Cos', [ang]), axis1]);
    this.sin = b.node('Unsqueeze', [b.node('Sin', [ang]), axis1]);
    const negInf = { dataType: OnnxType.FLOAT, dims: [1], bytes: new Uint8Array(new Float32Array([-Infinity]).buffer) };
    const full = b.node('ConstantOfShape', [b.node('Concat', [seq1, seq1], { axis: { int: 0 } })], { value: { tensor: negInf } });
    this.mask = b.node('Trilu', [full, await b.int64([1], [])], { upper: { int: 1 } }, { prefix: 'causal_mask' });
  }

  private async layer(i: number, x: string): Promise<string> {
    const b = this.b, c = this.model.config;
    const H = c.hiddenSize, F = c.intermediateSize, D = c.headDim;
    const qd = c.numHeads * D, kvd = c.numKvHeads * D, rep = c.numHeads / c.numKvHeads;
    const xn = await this.rmsNorm(x, inputNorm(i));
    const q4 = b.node('Reshape', [await this.linear(xn, i, 'self_attn.q_proj', H, qd), await b.int64([0, 0, c.numHeads, D])]);
    const k4 = b.node('Reshape', [await this.linear(xn, i, 'self_attn.k_proj', H, kvd), await b.int64([0, 0, c.numKvHeads, D])]);
    const v4 = b.node('Reshape', [await this.linear(xn, i, 'self_attn.v_proj', H, kvd), await b.int64([0, 0, c.numKvHeads, D])]);
    const q = await this.rope(q4), k = await this.rope(k4);
    // [B, kv, rep, S, D] · [B, kv, 1, D, S]: the rep query heads of a kv head share its K and V.
    const qg = b.node('Transpose', [b.node('Reshape', [q, await b.int64([0, 0, c.numKvHeads, rep, D])])], { perm: { ints: [0, 2, 3, 1, 4] } });
    const kt = b.node('Unsqueeze', [b.node('Transpose', [k], { perm: { ints: [0, 2, 3, 1] } }), await b.int64([2])]);
    const vt = b.node('Unsqueeze', [b.node('Transpose', [v4], { perm: { ints: [0, 2, 1, 3] } }), await b.int64([2])]);
    const scale = await b.float32([1 / Math.sqrt(D)], []);
    const scores = b.node('Add', [b.node('Mul', [b.node('MatMul', [qg, kt]), scale]), this.mask]);
    const probs = b.node('Softmax', [scores], { axis: { int: -1 } });
    const o = b.node('Transpose', [b.node('MatMul', [probs, vt])], { perm: { ints: [0, 3, 1, 2, 4] } });
    const o3 = b.node('Reshape', [o, await b.int64([0, 0, qd])]);
    const h = b.node('Add', [x, await this.linear(o3, i, 'self_attn.o_proj', qd, H)]);
    const hn = await this.rmsNorm(h, postAttentionNorm(i));
    const gate = await this.linear(hn, i, 'mlp.gate_proj', H, F);
    const up = await this.linear(hn, i, 'mlp.up_proj', H, F);
    const act = b.node('Mul', [b.node('Mul', [gate, b.node('Sigmoid', [gate])]), up]);
    return b.node('Add', [h, await this.linear(act, i, 'mlp.down_proj', F, H)], {}, { prefix: `layer${i}_out` });
  }

  /** x · cos + rotate_half(x) · sin, rotate_half(x) = [−x₂, x₁] along the head dimension. */
  private async rope(x: string): Promise<string> {
    const b = this.b, D = this.model.config.headDim;
    const axis = await b.int64([3]);
    const x1 = b.node('Slice', [x, await b.int64([0]), await b.int64([D / 2]), axis]);
    const x2 = b.node('Slice', [x, await b.int64([D / 2]), await b.int64([D]), axis]);
    const rot = b.node('Concat', [b.node('Neg', [x2]), x1], { axis: { int: 3 } });
    return b.node('Add', [b.node('Mul', [x, this.cos]), b.node('Mul', [rot, this.sin])]);
  }

  private async rmsNorm(x: string, weightName: string): Promise<string> {
    const b = this.b, c = this.model.config;
    const w = await this.weight(weightName, [c.hiddenSize]);
    const ms = b.node('ReduceMean', [b.node('Mul', [x, x])], { axes: { ints: [-1] }, keepdims: { int: 1 } });
    const rms = b.node('Sqrt', [b.node('Add', [ms, await b.float32([c.rmsNormEps], [])])]);
    return b.node('Mul', [b.node('Div', [x, rms]), w], {}, { prefix: 'rmsnorm' });
  }

  /** nll[b, t] = logsumexp(logits[b, t]) − logits[b, t, ids[b, t + 1]], t < seq − 1. */
  private async nll(ids: string, logits: string): Promise<void> {
    const b = this.b;
    const lse = b.node('ReduceLogSumExp', [logits], { axes: { ints: [-1] }, keepdims: { int: 1 } });
    const axis1 = await b.int64([1]);
    const next = b.node('Concat', [
      b.node('Slice', [ids, await b.int64([1]), await b.int64([INT64_MAX]), axis1]),
      b.node('Slice', [ids, await b.int64([0]), await b.int64([1]), axis1]),
    ], { axis: { int: 1 } }); // ids shifted left; the last column is sliced off below
    const target = b.node('GatherElements', [logits, b.node('Unsqueeze', [next, await b.int64([-1])])], { axis: { int: -1 } });
    const perToken = b.node('Squeeze', [b.node('Sub', [lse, target]), await b.int64([-1])]);
    b.nodeTo('nll', 'Slice', [perToken, await b.int64([0]), await b.int64([-1]), axis1]);
  }

  /** A float weight as stored (F16 kept as FLOAT16 + Cast, others converted to FLOAT). */
  private async weight(name: string, shape: number[]): Promise<string> {
    const info = this.model.checkpoint.info(name);
    if (info.dtype === 'F16') {
      const raw = await this.model.checkpoint.read(name);
      await this.b.initializer({ name, dataType: OnnxType.FLOAT16, dims: shape, bytes: new Uint8Array(raw) });
      return this.b.node('Cast', [name], { to: { int: OnnxType.FLOAT } });
    }
    const f = await this.model.tensorF32(name, shape);
    return this.b.initializer({ name, dataType: OnnxType.FLOAT, dims: shape, bytes: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) });
  }

  /** y = x · Wᵀ for the linear `linear` of layer `i` (K inputs, N outputs). */
  private async linear(x: string, i: number, linear: LinearName, k: number, n: number): Promise<string> {
    const b = this.b, name = linearWeight(i, linear);
    const q = this.model.quantization;
    if (!q) {
      this.linears.push({ name, op: 'MatMul' });
      return b.node('MatMul', [x, b.node('Transpose', [await this.weight(name, [n, k])], { perm: { ints: [1, 0] } })]);
    }
    const t = quantizedTensorNames(name.replace(/\.weight$/, ''));
    const ck = this.model.checkpoint;
    const read = async <T>(n: string, ctor: new (b: ArrayBuffer) => T): Promise<T> => new ctor(copy(await ck.read(n)));
    const qweight = await read(t.qweight, Int32Array), qzeros = await read(t.qzeros, Int32Array);
    const scales = await read(t.scales, Uint16Array), gIdx = await read(t.g_idx, Int32Array);
    const G = scales.length / n;
    for (let j = 0; j < k; j++) {
      if (!(gIdx[j] >= 0 && gIdx[j] < G)) throw new UserError(`${t.g_idx}[${j}] = ${gIdx[j]} is not a group in [0, ${G})`);
    }
    const { codes, zeros } = await unpackGptq(qweight, qzeros, q.bits, k, n, G);
    const plan = packForMatMulNBits({ bits: q.bits, k, n, codes, zeros, scales, gIdx });
    if (!plan.ok) {
      // scale · (code − zero) rounded to fp16, as AutoGPTQ's torch kernels (and our engine) do.
      const w = await dequantizeGptq(qweight, qzeros, scales, gIdx, q.bits, k, n, { round16: true });
      const h = new Uint16Array(w.length);
      for (let j = 0; j < w.length; j++) h[j] = f32ToF16Bits(w[j]);
      const wName = `${name}.dequantized`;
      await b.initializer({ name: wName, dataType: OnnxType.FLOAT16, dims: [n, k], bytes: new Uint8Array(h.buffer) });
      this.linears.push({ name, op: 'MatMul', reason: plan.reason });
      const wf = b.node('Cast', [wName], { to: { int: OnnxType.FLOAT } });
      return b.node('MatMul', [x, b.node('Transpose', [wf], { perm: { ints: [1, 0] } })]);
    }
    const p = plan.packed;
    let input = x;
    if (p.perm) {
      const key = `${x}:${p.perm.join(',')}`;
      input = this.gathers.get(key) ?? '';
      if (!input) {
        const order = await b.initializer({
          name: `${name}.k_order`, dataType: OnnxType.INT64, dims: [k],
          bytes: new Uint8Array(BigInt64Array.from(p.perm, (v) => BigInt(v)).buffer),
        });
        input = b.node('Gather', [x, order], { axis: { int: -1 } }, { prefix: 'act_order' });
        this.gathers.set(key, input);
      }
    }
    const base = name.replace(/\.weight$/, '');
    const blob = (p.blockSize * q.bits) / 8;
    await b.initializer({ name: `${base}.B`, dataType: OnnxType.UINT8, dims: [n, p.nBlocks, blob], bytes: p.b });
    await b.initializer({ name: `${base}.scales_f32`, dataType: OnnxType.FLOAT, dims: [n * p.nBlocks], bytes: new Uint8Array(p.scales.buffer) });
    await b.initializer({ name: `${base}.zero_points`, dataType: OnnxType.UINT8, dims: [p.zeroPoints.length], bytes: p.zeroPoints });
    this.linears.push({ name, op: 'MatMulNBits', blockSize: p.blockSize, permuted: p.perm !== null });
    return b.node('MatMulNBits', [input, `${base}.B`, `${base}.scales_f32`, `${base}.zero_points`], {
      K: { int: k }, N: { int: n }, bits: { int: q.bits }, block_size: { int: p.blockSize },
      accuracy_level: { int: 0 },
    }, { domain: MS_DOMAIN, prefix: 'matmul_nbits' });
  }
}

/** A Buffer's bytes in an ArrayBuffer of their own (typed-array views need alignment). */
function copy(buf: Buffer): ArrayBuffer {
  const out = new ArrayBuffer(buf.length);
  new Uint8Array(out).set(buf);
  return out;
}
