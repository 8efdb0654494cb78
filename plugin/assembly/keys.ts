// Renders the configured key templates for one request, applying onMissingKey and the
// key bound. Every key reaches the service as valid UTF-8 of at most maxKeyBytes bytes
// (the protocol's bound is 512): a value that is longer, or not valid UTF-8, becomes its
// valid prefix plus a digest of the whole value, so distinct values stay distinct keys
// and no client byte can make the service refuse the check.

import { ByteBuf } from "./bytes";
import { Config, MISSING_DENY, MISSING_SKIP } from "./config";
import { RequestView } from "./request";
import { SEG_LITERAL, SEG_BODY, resolve, digestHex } from "./template";
import { utf8Boundary } from "./encode";
import { utf8SeqLen } from "./json";

/** Hex digits of the digest in a bounded key: 128 bits of SHA-256. */
export const DIGEST_HEX = 32;
/** Separates the kept prefix from the digest. */
const DIGEST_MARK = 0x7e; // '~'

export class RenderedKeys {
  keys: ByteBuf[] = [];
  /** Set when onMissingKey is "deny" and a placeholder had no value: that template's text. */
  missing: string | null = null;
}

/**
 * The values of every placeholder that does not read the body, per template, read at the
 * request headers: when the check waits for the body, Envoy no longer lets a filter read the
 * request headers by then (it drops them once the headers callback returned Continue).
 */
export function resolveEarly(cfg: Config, req: RequestView): Array<Array<ByteBuf | null>> {
  const out = new Array<Array<ByteBuf | null>>();
  for (let t = 0; t < cfg.keys.length; t++) {
    const vals = new Array<ByteBuf | null>();
    const segs = cfg.keys[t].segments;
    for (let s = 0; s < segs.length; s++) {
      const k = segs[s].kind;
      if (k != SEG_LITERAL && k != SEG_BODY) vals.push(resolve(segs[s], req));
    }
    out.push(vals);
  }
  return out;
}

/** Renders every template; `early`: values resolveEarly read at the headers (body fields come from `req`). */
export function renderKeys(cfg: Config, req: RequestView, early: Array<Array<ByteBuf | null>> | null = null): RenderedKeys {
  const res = new RenderedKeys();
  for (let t = 0; t < cfg.keys.length; t++) {
    const tpl = cfg.keys[t];
    const out = new ByteBuf(64);
    let skip = false;
    let e = 0;
    for (let s = 0; s < tpl.segments.length; s++) {
      const seg = tpl.segments[s];
      if (seg.kind == SEG_LITERAL) {
        out.appendBuf(seg.arg);
        continue;
      }
      let v: ByteBuf | null = null;
      if (early !== null && seg.kind != SEG_BODY) v = early[t][e++];
      else v = resolve(seg, req);
      if (v !== null && v.length > 0) {
        out.appendBuf(v);
        continue;
      }
      // A client that omits the attribute must not silently escape its limit.
      if (cfg.onMissingKey == MISSING_DENY) {
        res.missing = tpl.text;
        return res;
      }
      if (cfg.onMissingKey == MISSING_SKIP) {
        skip = true;
        break;
      }
      out.appendBuf(cfg.missingDefault);
    }
    if (skip) continue;
    res.keys.push(boundKey(out, cfg.maxKeyBytes));
  }
  return res;
}

/** Length of the longest prefix of `b` that is valid UTF-8. */
function validPrefix(b: ByteBuf): i32 {
  const base = b.ptr();
  let i = 0;
  while (i < b.length) {
    const c = <i32>load<u8>(base + <usize>i);
    if (c < 0x80) {
      i++;
      continue;
    }
    const n = utf8SeqLen(base, i, b.length);
    if (n <= 0) return i;
    i += n;
  }
  return i;
}

/** `raw` if it is valid UTF-8 within maxBytes; else its valid prefix, '~' and a digest of all of it. */
export function boundKey(raw: ByteBuf, maxBytes: i32): ByteBuf {
  const valid = validPrefix(raw);
  if (valid == raw.length && raw.length <= maxBytes) return raw;
  let keep = maxBytes - 1 - DIGEST_HEX;
  if (valid < keep) keep = valid;
  keep = utf8Boundary(raw, keep);
  const out = new ByteBuf(keep + 1 + DIGEST_HEX);
  out.appendRaw(raw.ptr(), keep);
  out.push(DIGEST_MARK);
  out.appendBuf(digestHex(raw));
  return out;
}
