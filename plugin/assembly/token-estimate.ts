// Token estimates without a tokenizer: character counts with two ratios (config `estimate`).
// Used for what a request will cost (prompt-estimate.ts, reserve mode's reservation) and for
// what a response cost when it carries no usage (the text the usage scanner counted). CJK
// ideographs, kana and hangul are counted apart from other characters because tokenizers
// spend roughly one token per such character, against about four characters per token for
// Latin text.
//
//   tokens = ceil(otherChars / charsPerToken + cjkChars / cjkCharsPerToken)

import { EstimateConfig } from "./config";

/** Upper bound of one estimate (a client asking for max_tokens 1e15 reserves this much). */
export const MAX_ESTIMATE: i64 = 1000000000;

/** CJK ideographs (incl. extensions and compatibility), kana, hangul, CJK punctuation, fullwidth forms. */
export function isCjk(cp: i32): bool {
  if (cp < 0x2e80) return false;
  if (cp <= 0x9fff) return true; // CJK radicals .. punctuation, kana, bopomofo, ideographs
  if (cp >= 0xac00 && cp <= 0xd7af) return true; // hangul syllables
  if (cp >= 0xf900 && cp <= 0xfaff) return true; // compatibility ideographs
  if (cp >= 0xff00 && cp <= 0xffef) return true; // fullwidth / halfwidth forms
  if (cp >= 0x20000 && cp <= 0x3ffff) return true; // ideograph extensions B..
  return false;
}

/** Counts characters of UTF-8 text fed byte by byte (sequences may be split across calls). */
export class CharCounter {
  other: i64 = 0;
  cjk: i64 = 0;
  private cp: i32 = 0;
  private need: i32 = 0;

  /** `n` ASCII characters in a row (each also ends any unfinished multi-byte sequence). */
  @inline ascii(n: i64): void {
    this.need = 0;
    this.other += n;
  }

  @inline byte(c: i32): void {
    if (c < 0x80) {
      this.need = 0;
      this.other++;
      return;
    }
    if (c < 0xc0) {
      if (this.need > 0) {
        this.cp = (this.cp << 6) | (c & 63);
        this.need--;
        if (this.need == 0) this.code(this.cp);
      }
      return;
    }
    if (c < 0xe0) {
      this.cp = c & 31;
      this.need = 1;
    } else if (c < 0xf0) {
      this.cp = c & 15;
      this.need = 2;
    } else {
      this.cp = c & 7;
      this.need = 3;
    }
  }

  bytes(ptr: usize, len: i32): void {
    for (let i = 0; i < len; i++) this.byte(<i32>load<u8>(ptr + <usize>i));
  }

  /** One whole code point. */
  code(cp: i32): void {
    if (isCjk(cp)) this.cjk++;
    else this.other++;
  }

  chars(): i64 {
    return this.other + this.cjk;
  }

  reset(): void {
    this.other = 0;
    this.cjk = 0;
    this.cp = 0;
    this.need = 0;
  }
}

export function tokensFor(other: i64, cjk: i64, r: EstimateConfig): i64 {
  const t = Math.ceil(<f64>other / r.charsPerToken + <f64>cjk / r.cjkCharsPerToken);
  if (!(t >= 0)) return 0;
  if (t > <f64>MAX_ESTIMATE) return MAX_ESTIMATE;
  return <i64>t;
}

/** A body we did not parse: its byte length at the Latin ratio. */
export function lengthTokens(bytes: i64, r: EstimateConfig): i64 {
  return tokensFor(bytes, 0, r);
}
