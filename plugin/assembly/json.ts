// Small, defensive JSON parser over bytes. Used for the plugin configuration, the
// rate-limit service's reply, and the `usage` object cut out of an LLM response.
// It never aborts: any error (bad syntax, bad UTF-8 in strings, too deep, trailing
// garbage) yields null. Strings are unescaped into UTF-8 bytes.

import { ByteBuf, hexVal } from "./bytes";

export const J_NULL = 0;
export const J_BOOL = 1;
export const J_NUM = 2;
export const J_STR = 3;
export const J_ARR = 4;
export const J_OBJ = 5;

const MAX_DEPTH = 32;

export class JValue {
  kind: i32;
  b: bool = false;
  n: f64 = 0;
  s: ByteBuf | null = null;
  items: JValue[] = [];
  keys: ByteBuf[] = [];
  // Raw text span, for error messages.
  src: ByteBuf | null = null;
  start: i32 = 0;
  end: i32 = 0;

  constructor(kind: i32) {
    this.kind = kind;
  }

  get(key: string): JValue | null {
    if (this.kind != J_OBJ) return null;
    // Last duplicate wins, like most parsers.
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (this.keys[i].eqStr(key)) return this.items[i];
    }
    return null;
  }

  /** Member `key` (bytes) of an object, last duplicate winning; null if absent or not an object. */
  member(key: ByteBuf): JValue | null {
    if (this.kind != J_OBJ) return null;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (this.keys[i].equals(key)) return this.items[i];
    }
    return null;
  }

  /** Raw JSON text of this value, made printable. */
  display(): string {
    const src = this.src;
    if (src === null) return "?";
    return src.slice(this.start, this.end).display(120);
  }
}

/**
 * Whether two member names are the same to a decoder that matches names case-insensitively, as
 * Go's encoding/json does (its fold: ASCII case, and the Kelvin sign U+212A and long s U+017F,
 * whose fold sets hold k and s). Other non-ASCII bytes compare exactly.
 */
export function foldEq(a: ByteBuf, b: ByteBuf): bool {
  let i = 0,
    j = 0;
  while (i < a.length && j < b.length) {
    const ca = foldedUnit(a, i);
    const cb = foldedUnit(b, j);
    if ((ca & 0xff) != (cb & 0xff)) return false;
    i += ca >> 8;
    j += cb >> 8;
  }
  return i == a.length && j == b.length;
}

/** The folded unit at b[i]: its value (low byte) and its length in bytes (<< 8). */
function foldedUnit(b: ByteBuf, i: i32): i32 {
  const c = b.at(i);
  if (c >= 0x41 && c <= 0x5a) return (1 << 8) | (c + 0x20);
  if (c == 0xe2 && i + 2 < b.length && b.at(i + 1) == 0x84 && b.at(i + 2) == 0xaa) return (3 << 8) | 0x6b; // K
  if (c == 0xc5 && i + 1 < b.length && b.at(i + 1) == 0xbf) return (2 << 8) | 0x73; // ſ
  return (1 << 8) | c;
}

class Parser {
  src: ByteBuf;
  base: usize;
  pos: i32 = 0;
  end: i32;
  failed: bool = false;

  constructor(src: ByteBuf) {
    this.src = src;
    this.base = src.ptr();
    this.end = src.length;
  }

  @inline peek(): i32 {
    return this.pos < this.end ? <i32>load<u8>(this.base + <usize>this.pos) : -1;
  }

  ws(): void {
    while (this.pos < this.end) {
      const c = <i32>load<u8>(this.base + <usize>this.pos);
      if (c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d) this.pos++;
      else break;
    }
  }

  value(depth: i32): JValue | null {
    if (depth > MAX_DEPTH) return null;
    this.ws();
    const start = this.pos;
    const c = this.peek();
    let v: JValue | null = null;
    if (c == 0x7b) v = this.object(depth);
    else if (c == 0x5b) v = this.array(depth);
    else if (c == 0x22) {
      const s = this.string();
      if (s !== null) {
        v = new JValue(J_STR);
        v.s = s;
      }
    } else if (c == 0x74) v = this.word("true", J_BOOL, true);
    else if (c == 0x66) v = this.word("false", J_BOOL, false);
    else if (c == 0x6e) v = this.word("null", J_NULL, false);
    else if (c == 0x2d || (c >= 0x30 && c <= 0x39)) v = this.number();
    if (v === null) return null;
    v.src = this.src;
    v.start = start;
    v.end = this.pos;
    return v;
  }

  word(w: string, kind: i32, b: bool): JValue | null {
    if (this.pos + w.length > this.end) return null;
    for (let i = 0; i < w.length; i++) {
      if (<i32>load<u8>(this.base + <usize>(this.pos + i)) != w.charCodeAt(i)) return null;
    }
    this.pos += w.length;
    const v = new JValue(kind);
    v.b = b;
    return v;
  }

  number(): JValue | null {
    let neg = false;
    if (this.peek() == 0x2d) {
      neg = true;
      this.pos++;
    }
    let c = this.peek();
    if (c < 0x30 || c > 0x39) return null;
    let mant: f64 = 0;
    let exp10: i32 = 0;
    if (c == 0x30) {
      this.pos++;
    } else {
      while (true) {
        c = this.peek();
        if (c < 0x30 || c > 0x39) break;
        if (mant < 1e17) mant = mant * 10 + <f64>(c - 0x30);
        else exp10++;
        this.pos++;
      }
    }
    if (this.peek() == 0x2e) {
      this.pos++;
      c = this.peek();
      if (c < 0x30 || c > 0x39) return null;
      while (true) {
        c = this.peek();
        if (c < 0x30 || c > 0x39) break;
        if (mant < 1e17) {
          mant = mant * 10 + <f64>(c - 0x30);
          exp10--;
        }
        this.pos++;
      }
    }
    c = this.peek();
    if (c == 0x65 || c == 0x45) {
      this.pos++;
      let eneg = false;
      c = this.peek();
      if (c == 0x2b || c == 0x2d) {
        eneg = c == 0x2d;
        this.pos++;
      }
      c = this.peek();
      if (c < 0x30 || c > 0x39) return null;
      let e: i32 = 0;
      while (true) {
        c = this.peek();
        if (c < 0x30 || c > 0x39) break;
        if (e < 100000) e = e * 10 + (c - 0x30);
        this.pos++;
      }
      exp10 += eneg ? -e : e;
    }
    let val = mant;
    if (exp10 > 400) val = mant == 0 ? 0 : Infinity;
    else if (exp10 < -400) val = 0;
    else if (exp10 > 0) val = mant * Math.pow(10, <f64>exp10);
    else if (exp10 < 0) val = mant / Math.pow(10, <f64>-exp10);
    const v = new JValue(J_NUM);
    v.n = neg ? -val : val;
    return v;
  }

  /** Parses a string literal at pos (on the opening quote) into UTF-8 bytes; validates UTF-8. */
  string(): ByteBuf | null {
    this.pos++; // opening quote
    const out = new ByteBuf(16);
    while (true) {
      if (this.pos >= this.end) return null;
      const c = <i32>load<u8>(this.base + <usize>this.pos);
      if (c == 0x22) {
        this.pos++;
        return out;
      }
      if (c < 0x20) return null;
      if (c == 0x5c) {
        this.pos++;
        const e = this.peek();
        this.pos++;
        if (e == 0x22 || e == 0x5c || e == 0x2f) out.push(e);
        else if (e == 0x62) out.push(8);
        else if (e == 0x66) out.push(12);
        else if (e == 0x6e) out.push(10);
        else if (e == 0x72) out.push(13);
        else if (e == 0x74) out.push(9);
        else if (e == 0x75) {
          let cp = this.hex4();
          if (cp < 0) return null;
          if (cp >= 0xd800 && cp <= 0xdbff) {
            // Surrogate pair, or a lone high surrogate (replaced).
            if (this.pos + 6 <= this.end && this.peek() == 0x5c && <i32>load<u8>(this.base + <usize>(this.pos + 1)) == 0x75) {
              const save = this.pos;
              this.pos += 2;
              const lo = this.hex4();
              if (lo >= 0xdc00 && lo <= 0xdfff) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
              else {
                this.pos = save;
                cp = 0xfffd;
              }
            } else cp = 0xfffd;
          } else if (cp >= 0xdc00 && cp <= 0xdfff) cp = 0xfffd;
          appendCodePoint(out, cp);
        } else return null;
        continue;
      }
      if (c < 0x80) {
        out.push(c);
        this.pos++;
        continue;
      }
      const n = utf8SeqLen(this.base, this.pos, this.end);
      if (n <= 0) return null;
      out.appendRaw(this.base + <usize>this.pos, n);
      this.pos += n;
    }
  }

  hex4(): i32 {
    if (this.pos + 4 > this.end) return -1;
    let v = 0;
    for (let i = 0; i < 4; i++) {
      const h = hexVal(<i32>load<u8>(this.base + <usize>(this.pos + i)));
      if (h < 0) return -1;
      v = (v << 4) | h;
    }
    this.pos += 4;
    return v;
  }

  array(depth: i32): JValue | null {
    this.pos++;
    const v = new JValue(J_ARR);
    this.ws();
    if (this.peek() == 0x5d) {
      this.pos++;
      return v;
    }
    while (true) {
      const item = this.value(depth + 1);
      if (item === null) return null;
      v.items.push(item);
      this.ws();
      const c = this.peek();
      this.pos++;
      if (c == 0x2c) continue;
      if (c == 0x5d) return v;
      return null;
    }
  }

  object(depth: i32): JValue | null {
    this.pos++;
    const v = new JValue(J_OBJ);
    this.ws();
    if (this.peek() == 0x7d) {
      this.pos++;
      return v;
    }
    while (true) {
      this.ws();
      if (this.peek() != 0x22) return null;
      const k = this.string();
      if (k === null) return null;
      this.ws();
      if (this.peek() != 0x3a) return null;
      this.pos++;
      const item = this.value(depth + 1);
      if (item === null) return null;
      v.keys.push(k);
      v.items.push(item);
      this.ws();
      const c = this.peek();
      this.pos++;
      if (c == 0x2c) continue;
      if (c == 0x7d) return v;
      return null;
    }
  }
}

/** Parses a complete JSON document; null on any error. */
export function parseJson(src: ByteBuf): JValue | null {
  const p = new Parser(src);
  const v = p.value(0);
  if (v === null) return null;
  p.ws();
  if (p.pos != p.end) return null;
  return v;
}

/**
 * Length of the valid UTF-8 sequence starting at base+pos (non-ASCII lead byte),
 * or 0 if invalid/truncated. Rejects overlongs, surrogates and > U+10FFFF.
 */
export function utf8SeqLen(base: usize, pos: i32, end: i32): i32 {
  const c = <i32>load<u8>(base + <usize>pos);
  let n = 0;
  let lo = 0x80,
    hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0) lo = 0xa0;
    else if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0) lo = 0x90;
    else if (c == 0xf4) hi = 0x8f;
  } else return 0;
  if (pos + n > end) return 0;
  const c1 = <i32>load<u8>(base + <usize>(pos + 1));
  if (c1 < lo || c1 > hi) return 0;
  for (let i = 2; i < n; i++) {
    const ci = <i32>load<u8>(base + <usize>(pos + i));
    if (ci < 0x80 || ci > 0xbf) return 0;
  }
  return n;
}

export function appendCodePoint(out: ByteBuf, cp: i32): void {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) {
    out.push(0xc0 | (cp >> 6));
    out.push(0x80 | (cp & 63));
  } else if (cp < 0x10000) {
    out.push(0xe0 | (cp >> 12));
    out.push(0x80 | ((cp >> 6) & 63));
    out.push(0x80 | (cp & 63));
  } else {
    out.push(0xf0 | (cp >> 18));
    out.push(0x80 | ((cp >> 12) & 63));
    out.push(0x80 | ((cp >> 6) & 63));
    out.push(0x80 | (cp & 63));
  }
}
