/**
 * Fixtures for the NaN/Inf and verify tests: a copy of a model or branch folder whose
 * safetensors tensors are edited in place (same dtype and size, so the header is unchanged),
 * and a hash of a folder tree to show that nothing outside the output changed.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const F16_NAN = 0x7e00;
export const F16_INF = 0x7c00;

/** fp32 → fp16 bits (round to nearest; enough for test values). */
export function f16(v: number): number {
  const f = new Float32Array([v]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  const mant = x & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00;
  if (exp <= 0) return sign;
  return sign | (exp << 10) | Math.round(mant / 8192);
}

/** Copies a folder (files only, writable). */
export function copyFolder(src: string, dst: string): string {
  fs.mkdirSync(dst, { recursive: true });
  for (const f of fs.readdirSync(src)) {
    fs.copyFileSync(path.join(src, f), path.join(dst, f));
    fs.chmodSync(path.join(dst, f), 0o644);
  }
  return dst;
}

/** Edits one tensor of `dir/model.safetensors` in place: `edit` gets its bytes (a view into the file). */
export function patchTensor(dir: string, name: string, edit: (bytes: Buffer, dtype: string, shape: number[]) => void): void {
  const file = path.join(dir, 'model.safetensors');
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const e = header[name];
  if (!e) throw new Error(`${file}: no tensor ${name}`);
  edit(buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]), e.dtype, e.shape);
  fs.writeFileSync(file, buf);
}

/** Sets fp16 element `index` of a tensor to the given fp16 bits. */
export function setF16(dir: string, name: string, index: number, bits: number): void {
  patchTensor(dir, name, (b, dtype) => {
    if (dtype !== 'F16') throw new Error(`${name} is ${dtype}, not F16`);
    b.writeUInt16LE(bits, index * 2);
  });
}

/** Multiplies every fp16 element of a tensor by `factor` (rounded back to fp16). */
export function scaleF16(dir: string, name: string, factor: number): void {
  patchTensor(dir, name, (b) => {
    for (let i = 0; i < b.length; i += 2) b.writeUInt16LE(f16(halfToFloat(b.readUInt16LE(i)) * factor), i);
  });
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** sha256 of every file under `dir` (relative path → hash), to compare before and after a run. */
export function hashTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}
