// Base64 decoding (RFC 4648, standard and URL-safe alphabets) of bytes read in place.
// Used for Bedrock InvokeModelWithResponseStream, whose event payloads are
// {"bytes":"<base64 of a provider event>"}. Never traps: invalid input returns false.

import { ByteBuf } from "./bytes";

@inline function sextet(c: i32): i32 {
  if (c >= 65 && c <= 90) return c - 65;        // A-Z
  if (c >= 97 && c <= 122) return c - 71;       // a-z
  if (c >= 48 && c <= 57) return c + 4;         // 0-9
  if (c == 0x2b || c == 0x2d) return 62;        // + -
  if (c == 0x2f || c == 0x5f) return 63;        // / _
  return -1;
}

/**
 * Decodes len bytes at ptr into out (cleared first). Skips backslashes (a JSON encoder may
 * write "/" as "\/") and stops at the first "=". Returns false on any other byte.
 */
export function base64Decode(ptr: usize, len: i32, out: ByteBuf): bool {
  out.clear();
  if (len <= 0) return true;
  out.reserve(<i32>((<i64>len * 3) >> 2) + 3);
  let base = out.ptr();
  let n = 0;
  let acc: u32 = 0;
  let bits = 0;
  for (let i = 0; i < len; i++) {
    let c = <i32>load<u8>(ptr + <usize>i);
    if (c == 0x3d) break;        // padding: the end
    if (c == 0x5c) continue;     // "\/" in JSON
    let v = sextet(c);
    if (v < 0) { out.clear(); return false; }
    acc = (acc << 6) | <u32>v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      store<u8>(base + <usize>n, <u8>(acc >> <u32>bits));
      n++;
    }
  }
  out.length = n;
  return true;
}
