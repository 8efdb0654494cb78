// Growable byte buffer and byte helpers. The plugin works on bytes, not AS strings:
// request data may be any byte sequence, and String.UTF8 on bad input is a trap risk.

export class ByteBuf {
  buf: ArrayBuffer;
  length: i32 = 0;

  constructor(capacity: i32 = 16) {
    this.buf = new ArrayBuffer(capacity < 16 ? 16 : capacity);
  }

  static fromString(s: string): ByteBuf {
    // Only used with plugin-authored ASCII/valid strings (names, literals).
    let enc = String.UTF8.encode(s);
    let b = new ByteBuf(enc.byteLength);
    b.appendRaw(changetype<usize>(enc), enc.byteLength);
    return b;
  }

  static fromRaw(ptr: usize, len: i32): ByteBuf {
    let b = new ByteBuf(len);
    b.appendRaw(ptr, len);
    return b;
  }

  @inline ptr(): usize { return changetype<usize>(this.buf); }

  reserve(extra: i32): void {
    let need = this.length + extra;
    let cap = this.buf.byteLength;
    if (need <= cap) return;
    let ncap = cap * 2;
    if (ncap < need) ncap = need;
    let nb = new ArrayBuffer(ncap);
    memory.copy(changetype<usize>(nb), changetype<usize>(this.buf), <usize>this.length);
    this.buf = nb;
  }

  push(b: i32): void {
    this.reserve(1);
    store<u8>(this.ptr() + <usize>this.length, <u8>b);
    this.length++;
  }

  appendRaw(ptr: usize, len: i32): void {
    if (len <= 0) return;
    this.reserve(len);
    memory.copy(this.ptr() + <usize>this.length, ptr, <usize>len);
    this.length += len;
  }

  appendBuf(o: ByteBuf): void { this.appendRaw(o.ptr(), o.length); }

  appendString(s: string): void {
    // ASCII fast path for plugin-authored literals.
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) this.push(c); else { this.appendBuf(ByteBuf.fromString(s.substring(i))); return; }
    }
  }

  appendU32LE(v: u32): void {
    this.reserve(4);
    store<u32>(this.ptr() + <usize>this.length, v);
    this.length += 4;
  }

  /** Decimal text of a non-negative integer. */
  appendU64(v: u64): void {
    if (v == 0) { this.push(48); return; }
    let tmp = new ByteBuf(20);
    while (v > 0) { tmp.push(<i32>(48 + v % 10)); v /= 10; }
    for (let i = tmp.length - 1; i >= 0; i--) this.push(tmp.at(i));
  }

  @inline at(i: i32): i32 { return <i32>load<u8>(this.ptr() + <usize>i); }

  clear(): void { this.length = 0; }

  equals(o: ByteBuf): bool {
    if (o.length != this.length) return false;
    return memory.compare(this.ptr(), o.ptr(), <usize>this.length) == 0;
  }

  /** Equal to an ASCII literal. */
  eqStr(s: string): bool {
    if (s.length != this.length) return false;
    for (let i = 0; i < this.length; i++) if (this.at(i) != s.charCodeAt(i)) return false;
    return true;
  }

  slice(start: i32, end: i32): ByteBuf {
    if (start < 0) start = 0;
    if (end > this.length) end = this.length;
    if (end < start) end = start;
    return ByteBuf.fromRaw(this.ptr() + <usize>start, end - start);
  }

  lower(): ByteBuf {
    let b = new ByteBuf(this.length);
    for (let i = 0; i < this.length; i++) b.push(toLower(this.at(i)));
    return b;
  }

  /** Printable rendering for logs: ASCII kept, everything else as \xNN. Never traps. */
  display(max: i32 = 200): string {
    let s = "";
    let n = this.length < max ? this.length : max;
    for (let i = 0; i < n; i++) {
      let c = this.at(i);
      if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
      else s += "\\x" + hex2(c);
    }
    if (n < this.length) s += "...";
    return s;
  }
}

const HEX = "0123456789ABCDEF";
export function hex2(c: i32): string {
  return HEX.charAt((c >> 4) & 15) + HEX.charAt(c & 15);
}
export function hexDigit(v: i32): i32 { return HEX.charCodeAt(v & 15); }

@inline export function toLower(c: i32): i32 {
  return c >= 65 && c <= 90 ? c + 32 : c;
}

export function hexVal(c: i32): i32 {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Non-negative decimal value (capped at `cap`), -1 if `v` is not one. */
export function parseDecimal(v: ByteBuf, cap: i64): i64 {
  if (v.length == 0 || v.length > 18) return -1;
  let n: i64 = 0;
  for (let i = 0; i < v.length; i++) {
    let c = v.at(i);
    if (c < 0x30 || c > 0x39) return -1;
    n = n * 10 + <i64>(c - 0x30);
  }
  if (n > cap) n = cap;
  return n;
}

/** `v` starts with the lower-case ASCII `prefix`, ignoring ASCII case. */
export function startsWithLower(v: ByteBuf, prefix: string): bool {
  if (v.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    if (toLower(v.at(i)) != prefix.charCodeAt(i)) return false;
  }
  return true;
}

/** `v` ends with the ASCII `suffix`. */
export function endsWithStr(v: ByteBuf, suffix: string): bool {
  let n = suffix.length;
  if (v.length < n) return false;
  for (let i = 0; i < n; i++) if (v.at(v.length - n + i) != suffix.charCodeAt(i)) return false;
  return true;
}

/**
 * Whether the `n` bytes at `p` equal `value` (kind 0, M_EXACT), start with it (1, M_PREFIX) or
 * end with it (2, M_SUFFIX). `fold`: compare the bytes at `p` lower-cased (`value` is lower case).
 */
export function matchAt(kind: i32, value: ByteBuf, p: usize, n: i32, fold: bool): bool {
  let k = value.length;
  if (kind == 0 ? k != n : k > n) return false;
  let off: usize = kind == 2 ? <usize>(n - k) : 0;
  let q = value.ptr();
  if (!fold) return memory.compare(p + off, q, <usize>k) == 0;
  for (let i = 0; i < k; i++) {
    if (toLower(<i32>load<u8>(p + off + <usize>i)) != <i32>load<u8>(q + <usize>i)) return false;
  }
  return true;
}
