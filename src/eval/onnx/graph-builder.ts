/**
 * A small ONNX graph builder: nodes with unique output names, typed attributes, constants,
 * and initializers streamed to an OnnxModelWriter (so only the current layer's weights are in
 * memory while a model is exported).
 */
import { OnnxDataType, OnnxInitializer, OnnxModelWriter, OnnxType, onnx } from '../../io/onnx-file';

export type Attr =
  | { int: number }
  | { float: number }
  | { ints: number[] }
  | { tensor: { dataType: OnnxDataType; dims: number[]; bytes: Uint8Array } };

export const MS_DOMAIN = 'com.microsoft';

export class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  private counter = 0;
  private readonly constants = new Map<string, string>();

  constructor(private readonly writer: OnnxModelWriter) {}

  /** A fresh value name with a readable prefix. */
  fresh(prefix: string): string {
    return `${prefix}_${this.counter++}`;
  }

  /** Adds a node; returns its output names (`outputs` of them, named after `prefix`). */
  nodeN(
    opType: string, inputs: string[], outputs: number, attrs: Record<string, Attr> = {},
    opts: { domain?: string; prefix?: string } = {},
  ): string[] {
    const prefix = opts.prefix ?? opType.toLowerCase();
    const outs = Array.from({ length: outputs }, () => this.fresh(prefix));
    this.nodes.push({
      opType, input: inputs, output: outs, name: this.fresh(`n_${opType}`),
      domain: opts.domain ?? '',
      attribute: Object.entries(attrs).map(([name, a]) => attribute(name, a)),
    });
    return outs;
  }

  node(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, opts: { domain?: string; prefix?: string } = {}): string {
    return this.nodeN(opType, inputs, 1, attrs, opts)[0];
  }

  /** Adds a node whose single output has a given (graph output) name. */
  nodeTo(output: string, opType: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    this.nodes.push({
      opType, input: inputs, output: [output], name: this.fresh(`n_${opType}`), domain: '',
      attribute: Object.entries(attrs).map(([name, a]) => attribute(name, a)),
    });
    return output;
  }

  /** An initializer (written to the model's data file when large). */
  async initializer(init: OnnxInitializer): Promise<string> {
    await this.writer.add(init);
    return init.name;
  }

  /** A small int64 constant, shared by value. */
  async int64(values: number[], dims: number[] = [values.length]): Promise<string> {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    const known = this.constants.get(key);
    if (known) return known;
    const name = this.fresh('const_i64');
    const bytes = new Uint8Array(new BigInt64Array(values.map((v) => BigInt(v))).buffer);
    await this.writer.add({ name, dataType: OnnxType.INT64, dims, bytes });
    this.constants.set(key, name);
    return name;
  }

  /** A float32 constant, shared by value when small. */
  async float32(values: Float32Array | number[], dims: number[], name?: string): Promise<string> {
    const data = values instanceof Float32Array ? values : new Float32Array(values);
    const key = data.length <= 16 ? `f32:${dims.join('x')}:${Array.from(data).join(',')}` : undefined;
    const known = key ? this.constants.get(key) : undefined;
    if (known) return known;
    const n = name ?? this.fresh('const_f32');
    await this.writer.add({ name: n, dataType: OnnxType.FLOAT, dims, bytes: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
    if (key) this.constants.set(key, n);
    return n;
  }
}

function attribute(name: string, a: Attr): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('int' in a) return { name, type: T.INT, i: a.int };
  if ('float' in a) return { name, type: T.FLOAT, f: a.float };
  if ('ints' in a) return { name, type: T.INTS, ints: a.ints };
  const t = a.tensor;
  return { name, type: T.TENSOR, t: { dataType: t.dataType, dims: t.dims, rawData: t.bytes } };
}

/** A tensor value's declaration for graph inputs and outputs; `dims` entries may be symbolic. */
export function valueInfo(name: string, elemType: OnnxDataType, dims: (number | string)[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}
