// Encoders for data we send to the rate-limit service: JSON string literals and URL
// query components. Any byte sequence is accepted and produces valid output.

import { ByteBuf, hexDigit } from "./bytes";
import { utf8SeqLen } from "./json";

/**
 * Appends `src` as a JSON string literal (with quotes). Quotes, backslashes and control
 * characters are escaped; invalid UTF-8 bytes become U+FFFD so the result is valid JSON.
 */
export function appendJsonString(out: ByteBuf, src: ByteBuf): void {
  out.push(0x22);
  const base = src.ptr();
  const end = src.length;
  let i = 0;
  while (i < end) {
    const c = <i32>load<u8>(base + <usize>i);
    if (c == 0x22 || c == 0x5c) {
      out.push(0x5c);
      out.push(c);
      i++;
    } else if (c < 0x20 || c == 0x7f) {
      out.appendString("\\u00");
      out.push(hexDigit(c >> 4));
      out.push(hexDigit(c));
      i++;
    } else if (c < 0x80) {
      out.push(c);
      i++;
    } else {
      const n = utf8SeqLen(base, i, end);
      if (n == 0) {
        out.appendString("\\ufffd");
        i++;
      } else {
        out.appendRaw(base + <usize>i, n);
        i += n;
      }
    }
  }
  out.push(0x22);
}

/** Appends `src` percent-encoded: everything except RFC 3986 unreserved characters. */
export function appendUrlEncoded(out: ByteBuf, src: ByteBuf): void {
  for (let i = 0; i < src.length; i++) {
    const c = src.at(i);
    if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2e || c == 0x5f || c == 0x7e) {
      out.push(c);
    } else {
      out.push(0x25);
      out.push(hexDigit(c >> 4));
      out.push(hexDigit(c));
    }
  }
}

/** Largest length <= max that does not cut a UTF-8 sequence in half. */
export function utf8Boundary(src: ByteBuf, max: i32): i32 {
  if (src.length <= max) return src.length;
  let n = max;
  // Step back over continuation bytes (at most 3) to the start of the cut sequence.
  let back = 0;
  while (n > 0 && back < 3 && (src.at(n) & 0xc0) == 0x80) {
    n--;
    back++;
  }
  return n;
}
