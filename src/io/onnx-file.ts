/**
 * Writing ONNX models: the protobuf is encoded by `onnx-proto` (protobufjs classes generated
 * from the official onnx.proto, ONNX 1.10.2); large initializers go to an external data file
 * beside the model (TensorProto.data_location = EXTERNAL with location / offset / length), as
 * ONNX's `save_model(..., save_as_external_data=True)` does. Both files are written to
 * temporary names and renamed only when complete.
 */
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { commitTemp, removeQuietly, tempPathFor, writeFully } from './atomic';
import { fsUserError } from './fs-errors';

export const OnnxType = onnx.TensorProto.DataType;
export type OnnxDataType = onnx.TensorProto.DataType;

/** IR version 8 (ONNX 1.12), which goes with ai.onnx opset 17. */
export const IR_VERSION = 8;

/** Initializers at least this large go to the external data file. */
export const EXTERNAL_MIN_BYTES = 1024;
/** Offsets in the data file are multiples of this (ORT may memory-map page-aligned data). */
const ALIGN = 4096;

export interface OnnxInitializer {
  name: string;
  dataType: OnnxDataType;
  dims: number[];
  bytes: Uint8Array;
}

/**
 * Streams initializers into `<model>.data` as they are produced, so that only the tensors of
 * one layer need to be in memory; `finish` writes the model and renames both files.
 */
export class OnnxModelWriter {
  private handle: FileHandle | undefined;
  private offset = 0;
  readonly initializers: onnx.ITensorProto[] = [];
  private readonly dataTmp: string;
  readonly dataFile: string;

  private constructor(readonly target: string, handle: FileHandle, dataTmp: string) {
    this.handle = handle;
    this.dataTmp = dataTmp;
    this.dataFile = `${target}.data`;
  }

  static async create(target: string): Promise<OnnxModelWriter> {
    const dataTmp = tempPathFor(`${target}.data`);
    try {
      return new OnnxModelWriter(target, await fs.open(dataTmp, 'wx'), dataTmp);
    } catch (err) {
      throw fsUserError(err, `cannot write ${target}.data`);
    }
  }

  /** Adds an initializer: inline when small, else appended to the data file. */
  async add(init: OnnxInitializer): Promise<void> {
    const expected = init.dims.reduce((a, b) => a * b, 1) * bytesPerElement(init.dataType);
    if (init.bytes.byteLength !== expected) {
      throw new RangeError(
        `${init.name}: expected ${expected} bytes for dims [${init.dims.join(', ')}], got ${init.bytes.byteLength}`,
      );
    }
    const proto: onnx.ITensorProto = { name: init.name, dataType: init.dataType, dims: init.dims };
    if (init.bytes.byteLength < EXTERNAL_MIN_BYTES) {
      proto.rawData = init.bytes;
    } else {
      if (!this.handle) throw new Error('OnnxModelWriter: add after finish');
      const at = Math.ceil(this.offset / ALIGN) * ALIGN;
      await writeFully(this.handle, init.bytes, at);
      this.offset = at + init.bytes.byteLength;
      proto.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      proto.externalData = [
        { key: 'location', value: path.basename(this.dataFile) },
        { key: 'offset', value: String(at) },
        { key: 'length', value: String(init.bytes.byteLength) },
      ];
    }
    this.initializers.push(proto);
  }

  /** Encodes `model` (whose graph gets the initializers added so far) and commits both files. */
  async finish(model: onnx.IModelProto): Promise<{ modelBytes: number; dataBytes: number }> {
    const graph = { ...model.graph, initializer: this.initializers };
    const bytes = onnx.ModelProto.encode({ ...model, graph }).finish();
    const modelTmp = tempPathFor(this.target);
    try {
      const h = this.handle!;
      this.handle = undefined;
      await h.sync();
      await h.close();
      await fs.writeFile(modelTmp, bytes, { flag: 'wx' });
    } catch (err) {
      await this.abort();
      await removeQuietly(modelTmp);
      throw fsUserError(err, `cannot write ${this.target}`);
    }
    await commitTemp(this.dataTmp, this.dataFile);
    await commitTemp(modelTmp, this.target);
    return { modelBytes: bytes.byteLength, dataBytes: this.offset };
  }

  /** Removes the temporary data file (after an error). */
  async abort(): Promise<void> {
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await removeQuietly(this.dataTmp);
  }
}

export function bytesPerElement(t: OnnxDataType): number {
  switch (t) {
    case OnnxType.FLOAT: case OnnxType.INT32: return 4;
    case OnnxType.FLOAT16: return 2;
    case OnnxType.INT64: case OnnxType.DOUBLE: return 8;
    case OnnxType.UINT8: case OnnxType.INT8: case OnnxType.BOOL: return 1;
    default: throw new RangeError(`unsupported ONNX data type ${t}`);
  }
}

/** Decodes a model file (tests and `export-onnx` checks). */
export async function readOnnxModel(file: string): Promise<onnx.ModelProto> {
  return onnx.ModelProto.decode(await fs.readFile(file));
}

export { onnx };
