/**
 * CPython's `random.Random`, bit for bit: MT19937 seeded the way `random.seed(int)` seeds it
 * (Modules/_randommodule.c), plus the few methods the GPTQ reference code relies on.
 *
 * Numbers are used wherever a value fits in 53 bits; BigInt only for wider values.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const TWO32 = 4294967296;

export class PythonRandom {
  private readonly mt = new Uint32Array(N);
  private mti = N + 1;

  constructor(seed: number | bigint = 0) {
    this.seed(seed);
  }

  /** `random.seed(n)` for an integer n: init_by_array over |n|'s 32-bit words, least significant first. */
  seed(seed: number | bigint): void {
    if (typeof seed === 'number' && !Number.isSafeInteger(seed)) {
      throw new RangeError(`PythonRandom.seed: ${seed} is not a safe integer (pass a bigint)`);
    }
    let n = BigInt(seed);
    if (n < 0n) n = -n;
    const key: number[] = [];
    while (n > 0n) {
      key.push(Number(n & 0xffffffffn));
      n >>= 32n;
    }
    if (key.length === 0) key.push(0);
    this.initByArray(key);
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.mti = N;
  }

  private initByArray(key: number[]): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
    }
    mt[0] = 0x80000000;
    this.mti = N;
  }

  /** genrand_uint32: the next raw 32-bit output. */
  nextUint32(): number {
    const mt = this.mt;
    if (this.mti >= N) {
      let kk = 0;
      let y: number;
      for (; kk < N - M; kk++) {
        y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
        mt[kk] = mt[kk + M] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      for (; kk < N - 1; kk++) {
        y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
        mt[kk] = mt[kk + (M - N)] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      y = (mt[N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
      mt[N - 1] = mt[M - 1] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      this.mti = 0;
    }
    let y = mt[this.mti++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `random.random()`: a float in [0, 1) with 53 random bits. */
  random(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) * (1 / 9007199254740992);
  }

  /**
   * `random.getrandbits(k)` for 0 <= k <= 53, as a number. CPython fills 32-bit words from
   * the least significant up; the last (most significant) word keeps the top bits of its output.
   */
  getrandbits(k: number): number {
    checkBits(k);
    if (k > 53) throw new RangeError(`getrandbits(${k}): more than 53 bits, use getrandbitsBig`);
    if (k === 0) return 0;
    if (k <= 32) return this.nextUint32() >>> (32 - k);
    const low = this.nextUint32();
    const high = this.nextUint32() >>> (64 - k);
    return high * TWO32 + low;
  }

  /** `random.getrandbits(k)` for any k >= 0, as a bigint. */
  getrandbitsBig(k: number): bigint {
    checkBits(k);
    if (k <= 53) return BigInt(this.getrandbits(k));
    let result = 0n;
    let shift = 0n;
    for (let left = k; left > 0; left -= 32, shift += 32n) {
      let r = this.nextUint32();
      if (left < 32) r >>>= 32 - left;
      result |= BigInt(r) << shift;
    }
    return result;
  }

  /** `random._randbelow(n)` (rejection sampling on getrandbits(n.bit_length())), n a positive safe integer. */
  randbelow(n: number): number {
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw new RangeError(`randbelow(${n}): n must be a positive safe integer (use randbelowBig)`);
    }
    const k = bitLength(n);
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return r;
  }

  /** `random._randbelow(n)` for a positive bigint n. */
  randbelowBig(n: bigint): bigint {
    if (n <= 0n) throw new RangeError(`randbelow(${n}): n must be positive`);
    const k = n.toString(2).length;
    let r = this.getrandbitsBig(k);
    while (r >= n) r = this.getrandbitsBig(k);
    return r;
  }

  /** `random.randint(a, b)`: a + randbelow(b - a + 1), both ends inclusive. */
  randint(a: number, b: number): number {
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b)) {
      throw new RangeError(`randint(${a}, ${b}): bounds must be safe integers (use randintBig)`);
    }
    const width = b - a + 1;
    if (width <= 0) throw new RangeError(`randint(${a}, ${b}): empty range`);
    if (!Number.isSafeInteger(width)) return Number(this.randintBig(BigInt(a), BigInt(b)));
    return a + this.randbelow(width);
  }

  /** `random.randint(a, b)` with bigint bounds. */
  randintBig(a: bigint, b: bigint): bigint {
    const width = b - a + 1n;
    if (width <= 0n) throw new RangeError(`randint(${a}, ${b}): empty range`);
    return a + this.randbelowBig(width);
  }
}

function checkBits(k: number): void {
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`getrandbits(${k}): k must be a non-negative integer`);
}

/** Python's int.bit_length() for a positive safe integer. */
function bitLength(n: number): number {
  return n < TWO32 ? 32 - Math.clz32(n) : 32 + (32 - Math.clz32(Math.floor(n / TWO32)));
}
