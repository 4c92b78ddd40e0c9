/**
 * `gptq eval --engine onnx --onnx FILE`: is FILE an export of `--model`? An export of another
 * model (another size, another fine-tune of the same shape, the fp16 base of a branch, another
 * branch of the same base) must not give a perplexity under this model's name.
 *
 * What identifies the model that an export was made from:
 * - a fingerprint in the model's metadata_props (`gptq_forge.model_fingerprint`, the
 *   fingerprint of src/model/fingerprint.ts), when the export records one: it must be --model's;
 * - always, the graph's initializers against the checkpoint: the number of layers; every
 *   tensor the export stores under its checkpoint name (embeddings, norms, lm_head, fp16 linears)
 *   with the checkpoint's shape and, for fp16 tensors, the same bytes at the start, middle and end;
 *   a GPTQ branch's linears as MatMulNBits (with its bits and exactly its set of scales) or as the
 *   dequantized fp16 weight (the same bytes, sampled), an fp16 model's as its fp16 weights.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../../errors';
import { quantizedTensorNames } from '../../gptq/format';
import { f16ToF32, f32ToF16Bits } from '../../io/dtypes';
import { onnx, OnnxType, readOnnxModel } from '../../io/onnx-file';
import { modelFingerprint } from '../../model/fingerprint';
import { LlamaModel } from '../../model/llama-model';
import { EMBED, FINAL_NORM, inputNorm, LINEARS, LM_HEAD, linearWeight, postAttentionNorm } from '../../model/weights';
import { dequantizeGptq } from '../../native';
import { linearShape } from '../../gptq/settings';

/** The metadata_props key of the fingerprint of the exported model (for export-onnx to write). */
export const ONNX_FINGERPRINT_KEY = 'gptq_forge.model_fingerprint';

const SAMPLE = 4096;

type Tensor = onnx.ITensorProto;

export async function checkOnnxExportOf(file: string, model: LlamaModel, modelSpec: string): Promise<void> {
  const foreign = (why: string): never => {
    throw new UserError(`--onnx ${file} is not an export of ${modelSpec}: ${why}; export it with gptq export-onnx ${modelSpec} --out FILE.onnx`);
  };
  let proto: onnx.ModelProto;
  try {
    proto = await readOnnxModel(file);
  } catch (e) {
    throw new UserError(`--onnx ${file}: not a readable ONNX model (${(e as Error).message.split('\n')[0]})`);
  }
  const recorded = (proto.metadataProps ?? []).find((p) => p.key === ONNX_FINGERPRINT_KEY)?.value;
  if (recorded) {
    const fp = await modelFingerprint(model.dir, model.checkpoint);
    if (recorded !== fp) foreign(`it records model fingerprint ${recorded.slice(0, 12)}…, ${modelSpec} has ${fp.slice(0, 12)}…`);
  }

  const inits = new Map<string, Tensor>();
  for (const t of proto.graph?.initializer ?? []) if (t.name) inits.set(t.name, t);
  const c = model.config, ck = model.checkpoint, q = model.quantization;
  const dims = (t: Tensor) => (t.dims ?? []).map((d) => Number(d));
  const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

  let layers = 0;
  for (const name of inits.keys()) {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  if (layers !== c.numLayers) foreign(`it has ${layers} decoder layers, the model ${c.numLayers}`);

  const reader = new InitializerReader(file);
  try {
    /** A tensor the export stores under its checkpoint name: same shape, and the same fp16 bytes (sampled). */
    const sameAsCheckpoint = async (name: string): Promise<void> => {
      const t = inits.get(name);
      if (!t) return foreign(`it has no initializer ${name}`);
      const info = ck.info(name);
      if (!sameShape(dims(t), info.shape)) foreign(`${name} is [${dims(t).join(', ')}] there, [${info.shape.join(', ')}] in the model`);
      if (t.dataType !== OnnxType.FLOAT16 || info.dtype !== 'F16') return; // converted to fp32: shape only
      for (const at of samplePoints(info.byteLength)) {
        const len = Math.min(SAMPLE, info.byteLength - at);
        const [mine, theirs] = await Promise.all([ck.readSlice(name, at, len), reader.read(t, at, len)]);
        if (!Buffer.from(mine).equals(Buffer.from(theirs))) foreign(`${name} holds other values (bytes ${at}..${at + len})`);
      }
    };

    await sameAsCheckpoint(EMBED);
    await sameAsCheckpoint(FINAL_NORM);
    if (ck.has(LM_HEAD)) await sameAsCheckpoint(LM_HEAD);
    for (let i = 0; i < c.numLayers; i++) {
      await sameAsCheckpoint(inputNorm(i));
      await sameAsCheckpoint(postAttentionNorm(i));
      for (const linear of LINEARS) {
        const name = linearWeight(i, linear);
        const base = name.replace(/\.weight$/, '');
        if (!q) {
          if (!inits.has(name)) foreign(`${name} is not stored as an fp16 weight (an export of a GPTQ branch?)`);
          await sameAsCheckpoint(name);
          continue;
        }
        if (inits.has(name)) foreign(`${name} is stored as an fp16 weight (an export of the fp16 model, not of this GPTQ branch)`);
        const deep = i === 0 || i === c.numLayers - 1; // values of the first and last layers' linears
        const { n, k } = linearShape(c, linear);
        if (inits.has(`${base}.B`)) {
          const node = (proto.graph?.node ?? []).find((nd) => nd.opType === 'MatMulNBits' && nd.input?.[1] === `${base}.B`);
          const bits = node?.attribute?.find((a) => a.name === 'bits')?.i;
          if (bits === undefined || Number(bits) !== q.bits) foreign(`${name} is a ${bits === undefined ? '?' : String(bits)}-bit MatMulNBits, the branch has ${q.bits} bits`);
          if (deep) await sameScales(name, base, n);
        } else if (inits.has(`${name}.dequantized`)) {
          const t = inits.get(`${name}.dequantized`)!;
          if (!sameShape(dims(t), [n, k])) foreign(`${name}.dequantized is [${dims(t).join(', ')}], expected [${n}, ${k}]`);
          if (deep) await sameDequantized(name, t, n, k);
        } else {
          foreign(`it has no quantized weight of ${name}`);
        }
      }
    }

    /** MatMulNBits' scales are the branch's fp16 scales, in blocks: the same set of values. */
    async function sameScales(name: string, base: string, n: number): Promise<void> {
      const t = inits.get(`${base}.scales_f32`);
      if (!t || t.dataType !== OnnxType.FLOAT) return foreign(`it has no fp32 scales of ${name}`);
      const count = dims(t).reduce((a, b) => a * b, 1);
      const raw = await reader.read(t, 0, count * 4);
      const theirs = new Set<number>();
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      for (let j = 0; j < count; j++) theirs.add(view.getFloat32(4 * j, true));
      const names = quantizedTensorNames(base);
      const s = await ck.read(names.scales);
      const mine = new Set<number>();
      for (let j = 0; j + 1 < s.length; j += 2) mine.add(Math.fround(f16ToF32(s.readUInt16LE(j))));
      if (count % n !== 0 || mine.size !== theirs.size || [...mine].some((v) => !theirs.has(v))) {
        foreign(`the scales of ${name} are not the branch's`);
      }
    }

    /** A dequantized fp16 weight: scale · (code − zero) of the branch, rounded to fp16 (sampled). */
    async function sameDequantized(name: string, t: Tensor, n: number, k: number): Promise<void> {
      const names = quantizedTensorNames(name.replace(/\.weight$/, ''));
      const buf = async (x: string) => {
        const b = await ck.read(x);
        const out = new ArrayBuffer(b.length);
        new Uint8Array(out).set(b);
        return out;
      };
      const w = await dequantizeGptq(
        new Int32Array(await buf(names.qweight)), new Int32Array(await buf(names.qzeros)),
        new Uint16Array(await buf(names.scales)), new Int32Array(await buf(names.g_idx)), q!.bits, k, n, { round16: true },
      );
      const bytes = n * k * 2;
      for (const at of samplePoints(bytes)) {
        const len = Math.min(SAMPLE, bytes - at);
        const theirs = await reader.read(t, at, len);
        for (let j = 0; j < len; j += 2) {
          if (theirs.readUInt16LE(j) !== f32ToF16Bits(w[(at + j) / 2])) foreign(`${name}.dequantized holds other values than the branch's weights`);
        }
      }
    }
  } finally {
    await reader.close();
  }
}

/** Offsets of the first, middle and last SAMPLE bytes (even, so fp16 values are whole). */
function samplePoints(bytes: number): number[] {
  if (bytes <= SAMPLE) return [0];
  const mid = Math.floor(bytes / 2 / 2) * 2;
  return [...new Set([0, Math.min(mid, bytes - SAMPLE), bytes - SAMPLE])];
}

/** Bytes of initializers, inline or in the external data file (whose name must stay beside the model). */
class InitializerReader {
  private readonly handles = new Map<string, fsp.FileHandle>();

  constructor(private readonly file: string) {}

  async read(t: Tensor, at: number, len: number): Promise<Buffer> {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) {
      const raw = t.rawData ?? new Uint8Array(0);
      if (at + len > raw.length) throw new UserError(`--onnx ${this.file}: initializer ${t.name} holds ${raw.length} bytes, fewer than its dims need`);
      return Buffer.from(raw.buffer, raw.byteOffset + at, len);
    }
    const ext = new Map((t.externalData ?? []).map((e) => [e.key, e.value ?? '']));
    const location = ext.get('location') ?? '';
    if (location === '' || location !== path.basename(location) || location === '..' || location === '.') {
      throw new UserError(`--onnx ${this.file}: initializer ${t.name} names external data ${JSON.stringify(location)} outside the model's folder`);
    }
    const offset = Number(ext.get('offset') ?? '0'), length = Number(ext.get('length') ?? 'NaN');
    if (!Number.isSafeInteger(offset) || offset < 0 || !(Number.isSafeInteger(length) && at + len <= length)) {
      throw new UserError(`--onnx ${this.file}: initializer ${t.name} has an invalid external data range`);
    }
    const data = path.join(path.dirname(this.file), location);
    let h = this.handles.get(data);
    if (!h) {
      try {
        h = await fsp.open(data, 'r');
      } catch (e) {
        throw new UserError(`--onnx ${this.file}: cannot read its weights ${data} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      this.handles.set(data, h);
    }
    const out = Buffer.alloc(len);
    const { bytesRead } = await h.read(out, 0, len, offset + at);
    if (bytesRead !== len) throw new UserError(`--onnx ${this.file}: ${data} is truncated (initializer ${t.name})`);
    return out;
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await h.close().catch(() => undefined);
  }
}
