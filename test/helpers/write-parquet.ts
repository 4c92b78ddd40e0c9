/**
 * Writes a tiny parquet file of string columns for tests: one row group, one PLAIN,
 * uncompressed data page (v1) per column, Thrift compact metadata. Columns are `required`,
 * or `optional` (with definition levels, all values present, like Hugging Face's files).
 */
import * as fs from 'fs';

const T = { I32: 5, I64: 6, BINARY: 8, LIST: 9, STRUCT: 12 } as const;

class Compact {
  private bytes: number[] = [];
  private last: number[] = [0];

  varint(v: number): void {
    let n = BigInt(v);
    do {
      let b = Number(n & 0x7fn);
      n >>= 7n;
      if (n > 0n) b |= 0x80;
      this.bytes.push(b);
    } while (n > 0n);
  }
  private zigzag(v: number): void {
    this.varint(v >= 0 ? v * 2 : -v * 2 - 1);
  }
  private header(id: number, type: number): void {
    const delta = id - this.last[this.last.length - 1];
    if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | type);
    else {
      this.bytes.push(type);
      this.zigzag(id);
    }
    this.last[this.last.length - 1] = id;
  }
  i32(id: number, v: number): this {
    this.header(id, T.I32);
    this.zigzag(v);
    return this;
  }
  i64(id: number, v: number): this {
    this.header(id, T.I64);
    this.zigzag(v);
    return this;
  }
  binary(id: number, v: string | Uint8Array): this {
    this.header(id, T.BINARY);
    this.rawBinary(v);
    return this;
  }
  private rawBinary(v: string | Uint8Array): void {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    this.varint(b.length);
    for (const x of b) this.bytes.push(x);
  }
  struct(id: number, body: (w: Compact) => void): this {
    this.header(id, T.STRUCT);
    this.structBody(body);
    return this;
  }
  private structBody(body: (w: Compact) => void): void {
    this.last.push(0);
    body(this);
    this.bytes.push(0); // stop
    this.last.pop();
  }
  private listHeader(id: number, size: number, elem: number): void {
    this.header(id, T.LIST);
    if (size < 15) this.bytes.push((size << 4) | elem);
    else {
      this.bytes.push(0xf0 | elem);
      this.varint(size);
    }
  }
  listI32(id: number, vs: number[]): this {
    this.listHeader(id, vs.length, T.I32);
    for (const v of vs) this.zigzag(v);
    return this;
  }
  listString(id: number, vs: string[]): this {
    this.listHeader(id, vs.length, T.BINARY);
    for (const v of vs) this.rawBinary(v);
    return this;
  }
  listStruct<E>(id: number, vs: E[], body: (w: Compact, e: E) => void): this {
    this.listHeader(id, vs.length, T.STRUCT);
    for (const v of vs) this.structBody((w) => body(w, v));
    return this;
  }
  /** The bytes written; `endStruct` closes the top-level struct with its stop byte. */
  buffer(endStruct = false): Buffer {
    return Buffer.from(endStruct ? [...this.bytes, 0] : this.bytes);
  }
}

export interface StringColumn {
  name: string;
  values: string[];
  optional?: boolean;
}

export function writeStringParquet(file: string, columns: StringColumn[]): void {
  const numRows = columns[0]?.values.length ?? 0;
  const chunks: Buffer[] = [Buffer.from('PAR1')];
  let offset = 4;
  const metas: { col: StringColumn; offset: number; size: number }[] = [];
  for (const col of columns) {
    if (col.values.length !== numRows) throw new Error('columns differ in length');
    const parts: Buffer[] = [];
    if (col.optional) {
      // Definition levels (bit width 1): 4-byte length, then one RLE run of `numRows` ones.
      const run = new Compact();
      run.varint(numRows << 1);
      const levels = Buffer.concat([run.buffer(), Buffer.from([1])]);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(levels.length);
      parts.push(len, levels);
    }
    for (const v of col.values) {
      const b = Buffer.from(v, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      parts.push(len, b);
    }
    const data = Buffer.concat(parts);
    const header = new Compact()
      .i32(1, 0) // DATA_PAGE
      .i32(2, data.length)
      .i32(3, data.length)
      .struct(5, (w) => w.i32(1, numRows).i32(2, 0).i32(3, 3).i32(4, 3)) // PLAIN, RLE, RLE
      .buffer(true);
    const page = Buffer.concat([header, data]);
    chunks.push(page);
    metas.push({ col, offset, size: page.length });
    offset += page.length;
  }
  const total = metas.reduce((s, m) => s + m.size, 0);
  const footer = new Compact()
    .i32(1, 1)
    .listStruct(2, [null, ...columns], (w, c) => {
      if (c === null) w.binary(4, 'schema').i32(5, columns.length);
      else w.i32(1, 6).i32(3, c.optional ? 1 : 0).binary(4, c.name).i32(6, 0); // BYTE_ARRAY, UTF8
    })
    .i64(3, numRows)
    .listStruct(4, [0], (w) => {
      w.listStruct(1, metas, (cw, m) => {
        cw.i64(2, m.offset).struct(3, (mw) =>
          mw
            .i32(1, 6)
            .listI32(2, [0, 3])
            .listString(3, [m.col.name])
            .i32(4, 0) // UNCOMPRESSED
            .i64(5, numRows)
            .i64(6, m.size)
            .i64(7, m.size)
            .i64(9, m.offset),
        );
      })
        .i64(2, total)
        .i64(3, numRows);
    })
    .binary(6, 'gptq-forge test writer')
    .buffer(true);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(footer.length);
  chunks.push(footer, len, Buffer.from('PAR1'));
  fs.writeFileSync(file, Buffer.concat(chunks));
}
