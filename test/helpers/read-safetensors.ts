/** Minimal safetensors reader for tests (independent of src/io): header + typed views of I32/F32 tensors. */
import * as fs from 'fs';

export interface TensorEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export function readSafetensors(file: string): { header: Record<string, TensorEntry>; get(name: string): Int32Array | Float32Array } {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, TensorEntry>;
  delete (header as Record<string, unknown>).__metadata__;
  const base = 8 + n;
  return {
    header,
    get(name: string) {
      const e = header[name];
      if (!e) throw new Error(`${file}: no tensor ${name}`);
      const bytes = new Uint8Array(buf.subarray(base + e.data_offsets[0], base + e.data_offsets[1])); // aligned copy
      if (e.dtype === 'I32') return new Int32Array(bytes.buffer);
      if (e.dtype === 'F32') return new Float32Array(bytes.buffer);
      throw new Error(`${file}: dtype ${e.dtype} of ${name} not supported by this helper`);
    },
  };
}
