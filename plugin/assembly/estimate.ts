// Token estimates for reservations (config `reserve`): no tokenizer, just character
// counts with two ratios. CJK ideographs, kana and hangul are counted apart from other
// characters because tokenizers spend roughly one token per such character, against about
// four characters per token for Latin text.
//
//   tokens = ceil(otherChars / charsPerToken + cjkChars / cjkCharsPerToken)
//
// Request side: the JSON body is parsed (it is buffered anyway, up to maxBodyBytes) and the
// text the model will read is counted: messages[].content (strings, or parts with text),
// prompt, input, instructions, system, contents[].parts[].text, systemInstruction. The
// completion side is the request's own output bound (max_tokens, max_completion_tokens,
// max_output_tokens, generationConfig.maxOutputTokens) or defaultCompletionTokens.

import { ByteBuf } from "./bytes";
import { ReserveConfig } from "./config";
import { parseJson, JValue, J_OBJ, J_ARR, J_STR, J_NUM, J_BOOL } from "./json";

/** Upper bound of one estimate (a client asking for max_tokens 1e15 reserves this much). */
export const MAX_ESTIMATE: i64 = 1000000000;
const MAX_TEXT_DEPTH = 12;

/** CJK ideographs (incl. extensions and compatibility), kana, hangul, CJK punctuation, fullwidth forms. */
export function isCjk(cp: i32): bool {
  if (cp < 0x2e80) return false;
  if (cp <= 0x9fff) return true;                  // CJK radicals .. punctuation, kana, bopomofo, ideographs
  if (cp >= 0xac00 && cp <= 0xd7af) return true;  // hangul syllables
  if (cp >= 0xf900 && cp <= 0xfaff) return true;  // compatibility ideographs
  if (cp >= 0xff00 && cp <= 0xffef) return true;  // fullwidth / halfwidth forms
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
    if (c < 0x80) { this.need = 0; this.other++; return; }
    if (c < 0xc0) {
      if (this.need > 0) {
        this.cp = (this.cp << 6) | (c & 63);
        this.need--;
        if (this.need == 0) this.code(this.cp);
      }
      return;
    }
    if (c < 0xe0) { this.cp = c & 31; this.need = 1; }
    else if (c < 0xf0) { this.cp = c & 15; this.need = 2; }
    else { this.cp = c & 7; this.need = 3; }
  }

  bytes(ptr: usize, len: i32): void {
    for (let i = 0; i < len; i++) this.byte(<i32>load<u8>(ptr + <usize>i));
  }

  /** One whole code point. */
  code(cp: i32): void {
    if (isCjk(cp)) this.cjk++; else this.other++;
  }

  chars(): i64 { return this.other + this.cjk; }
}

export function tokensFor(other: i64, cjk: i64, r: ReserveConfig): i64 {
  let t = Math.ceil(<f64>other / r.charsPerToken + <f64>cjk / r.cjkCharsPerToken);
  if (!(t >= 0)) return 0;
  if (t > <f64>MAX_ESTIMATE) return MAX_ESTIMATE;
  return <i64>t;
}

/** A body we did not parse: its byte length at the Latin ratio. */
export function lengthTokens(bytes: i64, r: ReserveConfig): i64 {
  return tokensFor(bytes, 0, r);
}

export class RequestEstimate {
  prompt: i64 = 0;
  completion: i64 = 0;
  /** The body with stream_options.include_usage added, when includeStreamUsage applied. */
  rewritten: ByteBuf | null = null;
  /** The parsed body (null if not JSON), for key templates that read body fields. */
  json: JValue | null = null;
  /** The request's "model" (a string of at most MAX_MODEL_BYTES), reported with the usage. */
  model: ByteBuf | null = null;
}

export const MAX_MODEL_BYTES = 128;

// Top-level fields holding text the model reads, across the supported APIs.
const PROMPT_FIELDS = ["messages", "prompt", "input", "instructions", "system", "contents",
  "systemInstruction", "system_instruction"];
// Inside those: where text sits in messages, parts and items.
const TEXT_KEYS = ["text", "content", "parts"];

function countText(v: JValue, cc: CharCounter, depth: i32): void {
  if (depth > MAX_TEXT_DEPTH) return;
  if (v.kind == J_STR) {
    let s = v.s;
    if (s !== null) cc.bytes(s.ptr(), s.length);
  } else if (v.kind == J_ARR) {
    for (let i = 0; i < v.items.length; i++) countText(v.items[i], cc, depth + 1);
  } else if (v.kind == J_OBJ) {
    for (let k = 0; k < TEXT_KEYS.length; k++) {
      let f = v.get(TEXT_KEYS[k]);
      if (f !== null) countText(f, cc, depth + 1);
    }
  }
}

/** A sane token bound from a JSON number, or -1. */
function bound(v: JValue | null): i64 {
  if (v === null || v.kind != J_NUM) return -1;
  let n = v.n;
  if (!(n >= 0)) return -1;
  if (n > <f64>MAX_ESTIMATE) return MAX_ESTIMATE;
  return <i64>Math.floor(n);
}

function completionBound(root: JValue, dflt: i64): i64 {
  let b = bound(root.get("max_tokens"));
  if (b < 0) b = bound(root.get("max_completion_tokens"));
  if (b < 0) b = bound(root.get("max_output_tokens"));
  if (b < 0) {
    let gc = root.get("generationConfig");
    if (gc === null) gc = root.get("generation_config");
    if (gc !== null && gc.kind == J_OBJ) {
      b = bound(gc.get("maxOutputTokens"));
      if (b < 0) b = bound(gc.get("max_output_tokens"));
    }
  }
  if (b < 0) b = dflt;
  // OpenAI `n`: that many choices, each up to the bound.
  let n = root.get("n");
  if (n !== null && n.kind == J_NUM && n.n >= 2 && n.n <= 128) b *= <i64>Math.floor(n.n);
  if (b > MAX_ESTIMATE) b = MAX_ESTIMATE;
  return b;
}

/**
 * Estimates a buffered request body. `mayRewrite`: includeStreamUsage is on and the
 * request is not for an API that rejects stream_options (see filter.ts).
 */
export function estimateRequest(body: ByteBuf, r: ReserveConfig, mayRewrite: bool): RequestEstimate {
  let e = new RequestEstimate();
  let root = parseJson(body);
  e.json = root;
  if (root === null || root.kind != J_OBJ) {
    e.prompt = lengthTokens(body.length, r);
    e.completion = r.defaultCompletionTokens;
    return e;
  }
  let m = root.get("model");
  if (m !== null && m.kind == J_STR && m.s !== null && (<ByteBuf>m.s).length <= MAX_MODEL_BYTES) e.model = m.s;
  let cc = new CharCounter();
  for (let i = 0; i < PROMPT_FIELDS.length; i++) {
    let f = root.get(PROMPT_FIELDS[i]);
    if (f !== null) countText(f, cc, 0);
  }
  if (cc.chars() > 0) {
    e.prompt = tokensFor(cc.other, cc.cjk, r);
  } else {
    e.prompt = lengthTokens(body.length, r);
  }
  e.completion = completionBound(root, r.defaultCompletionTokens);
  if (mayRewrite) e.rewritten = withStreamUsage(body, root);
  return e;
}

/**
 * For an OpenAI-style streaming request ({"stream": true, "messages" or "prompt"}) without
 * stream_options.include_usage: the same bytes with it added (merged into an existing
 * stream_options object). Null when nothing needs to change. Edits are textual, at the
 * parsed value offsets, so everything else stays byte for byte.
 */
export function withStreamUsage(body: ByteBuf, root: JValue): ByteBuf | null {
  let st = root.get("stream");
  if (st === null || st.kind != J_BOOL || !st.b) return null;
  if (root.get("messages") === null && root.get("prompt") === null) return null;
  if (root.get("anthropic_version") !== null) return null;
  let so = root.get("stream_options");
  if (so === null) {
    // (if/else, not ?: on strings: see the README's toolchain notes)
    let text = "\"stream_options\":{\"include_usage\":true}";
    if (root.keys.length > 0) text = "," + text;
    return splice(body, root.end - 1, root.end - 1, text);
  }
  if (so.kind != J_OBJ) return splice(body, so.start, so.end, "{\"include_usage\":true}");
  let iu = so.get("include_usage");
  if (iu === null) {
    let text = "\"include_usage\":true";
    if (so.keys.length > 0) text = "," + text;
    return splice(body, so.end - 1, so.end - 1, text);
  }
  if (iu.kind == J_BOOL && iu.b) return null;
  return splice(body, iu.start, iu.end, "true");
}

function splice(body: ByteBuf, from: i32, to: i32, text: string): ByteBuf {
  let out = new ByteBuf(body.length + text.length);
  out.appendRaw(body.ptr(), from);
  out.appendString(text);
  out.appendRaw(body.ptr() + <usize>to, body.length - to);
  return out;
}
