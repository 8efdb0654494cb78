// Incremental scanner that finds token usage in an LLM response body as it streams by.
//
// It never holds the body: it keeps a few bytes of lexical state (string/escape flags,
// nesting depth, the last object key if short) and copies out only the `usage` /
// `usageMetadata` object, bounded by maxBufferBytes. Chunks may split anything anywhere
// (keys, numbers, SSE lines, UTF-8 sequences). Cost is one pass over each byte.
//
// Where usage lives:
//   OpenAI chat / DashScope compatible: {"usage":{"prompt_tokens","completion_tokens","total_tokens"}}
//   OpenAI Responses / DashScope native: {"usage":{"input_tokens","output_tokens","total_tokens"}}
//     (Responses streaming: {"type":"response.completed","response":{..."usage":{...}}})
//   Anthropic: {"usage":{"input_tokens","output_tokens"}}; streaming: message_start
//     {"message":{..."usage":{"input_tokens"}}} then message_delta {"usage":{"output_tokens"}}
//   Gemini: {"usageMetadata":{"promptTokenCount","candidatesTokenCount","totalTokenCount"}}
//   Gemini streamGenerateContent without alt=sse: a JSON array of such objects.
// So a usage object is accepted as a key of a top-level object (the document, or an
// element of a top-level array), or one level down under "message" or "response". Later objects overwrite the fields they carry
// (streams report cumulative counts).

import { ByteBuf } from "./bytes";
import { parseJson, JValue, J_OBJ, J_NUM } from "./json";
import { CharCounter } from "./estimate";

const K_OTHER = 0;
const K_USAGE = 1;
const K_MESSAGE = 2;
const K_RESPONSE = 3;
const K_TEXT = 4;     // generated text (only with countText): content, text, delta, ...

const KEY_MAX = 20;
const NEWLINE: usize = memory.data<u8>([0x0a]);
const MAX_TOKENS: f64 = 1e15;

export class UsageScanner {
  sse: bool;
  maxBuf: i32;

  // JSON lexical state.
  depth: i32 = 0;
  base: i32 = 0;               // 1 when the document is an array of objects
  inStr: bool = false;
  esc: bool = false;
  tracking: bool = false;      // recording the current string (a possible key)
  key: ByteBuf = new ByteBuf(KEY_MAX);
  keyOverflow: bool = false;
  lastStrKind: i32 = -1;       // kind of the string just closed, -1 if none pending
  lastStrDepth: i32 = 0;
  awaitKind: i32 = -1;         // after "key": the kind of key whose value comes next
  parentKind: i32 = K_OTHER;   // key of the depth-2 object we are inside
  capturing: bool = false;
  capDepth: i32 = 0;
  cap: ByteBuf;
  capOverflow: bool = false;

  // SSE line state.
  lineMode: i32 = 0;           // 0 field name, 1 data value (first byte), 2 data value, 3 skip
  field: ByteBuf = new ByteBuf(8);
  lastCR: bool = false;

  // Results (-1 = unknown).
  prompt: i64 = -1;
  completion: i64 = -1;
  total: i64 = -1;
  tooLarge: i32 = 0;

  // Generated-text counting (reserve mode: an estimate when the usage never comes). The
  // characters of string values under text keys at any depth (delta.content, message.content,
  // parts[].text, Anthropic delta.text, Responses "delta" strings, reasoning, tool arguments).
  countText: bool = false;
  inText: bool = false;
  uLeft: i32 = 0;              // hex digits of a \u escape still to read (in text)
  uCp: i32 = 0;
  text: CharCounter = new CharCounter();

  constructor(sse: bool, maxBuf: i32, countText: bool = false) {
    this.sse = sse;
    this.maxBuf = maxBuf;
    this.cap = new ByteBuf(256);
    this.countText = countText;
  }

  found(): bool { return this.prompt >= 0 || this.completion >= 0 || this.total >= 0; }
  promptTokens(): i64 { return this.prompt > 0 ? this.prompt : 0; }
  completionTokens(): i64 { return this.completion > 0 ? this.completion : 0; }
  totalTokens(): i64 { return this.total >= 0 ? this.total : this.promptTokens() + this.completionTokens(); }

  /** Feeds one body chunk (host memory, read in place). */
  feed(ptr: usize, len: i32): void {
    if (len <= 0) return;
    if (this.sse) this.feedSse(ptr, len); else this.feedJson(ptr, len);
  }

  private feedSse(ptr: usize, len: i32): void {
    let i = 0;
    while (i < len) {
      let c = <i32>load<u8>(ptr + <usize>i);
      if (c == 0x0a || c == 0x0d) {
        let crlf = c == 0x0a && this.lastCR;
        this.lastCR = c == 0x0d;
        i++;
        if (crlf) continue;
        if (this.lineMode == 0 && this.field.length == 0) this.endEvent(); // blank line
        else if (this.lineMode == 1 || this.lineMode == 2) this.feedJson(NEWLINE, 1);
        this.lineMode = 0;
        this.field.clear();
        continue;
      }
      this.lastCR = false;
      let mode = this.lineMode;
      if (mode == 0) {
        if (c == 0x3a) {
          this.lineMode = this.field.eqStr("data") ? 1 : 3;
        } else if (this.field.length < 8) {
          this.field.push(c);
        } else {
          this.field.push(0x20); // too long to be "data": poison the name
          this.field.length = 8;
        }
        i++;
        continue;
      }
      if (mode == 1) { // one optional space after "data:"
        this.lineMode = 2;
        if (c == 0x20) { i++; continue; }
      }
      // Run to end of line, fed in one piece (data) or skipped.
      let j = i;
      while (j < len) {
        let d = <i32>load<u8>(ptr + <usize>j);
        if (d == 0x0a || d == 0x0d) break;
        j++;
      }
      if (this.lineMode == 2) this.feedJson(ptr + <usize>i, j - i);
      i = j;
    }
  }

  /** SSE event boundary: each event's data is its own JSON document. */
  private endEvent(): void {
    this.depth = 0;
    this.base = 0;
    this.inStr = false;
    this.esc = false;
    this.tracking = false;
    this.lastStrKind = -1;
    this.awaitKind = -1;
    this.parentKind = K_OTHER;
    this.capturing = false;
    this.capOverflow = false;
    this.inText = false;
    this.uLeft = 0;
  }

  private feedJson(ptr: usize, len: i32): void {
    let i = 0;
    while (i < len) {
      // Fast path: the plain bytes of a string (not captured), up to its quote or backslash.
      if (this.inStr && !this.esc && !this.capturing) {
        if (this.inText) {
          i = this.textRun(ptr, i, len);
          if (i >= len) return;
        }
        let start = i;
        while (i < len) {
          let d = <i32>load<u8>(ptr + <usize>i);
          if (d == 0x22 || d == 0x5c) break;
          i++;
        }
        if (this.tracking && i > start) {
          let n = i - start;
          if (this.key.length + n <= KEY_MAX) this.key.appendRaw(ptr + <usize>start, n);
          else this.keyOverflow = true;
        }
        if (i >= len) return;
      }
      let c = <i32>load<u8>(ptr + <usize>i);
      i++;
      if (this.capturing) {
        if (this.cap.length < this.maxBuf) this.cap.push(c); else this.capOverflow = true;
      }
      if (this.inStr) {
        if (this.esc) {
          if (!this.inText) { this.esc = false; this.keyOverflow = true; continue; } // escaped keys never match
          if (this.uLeft > 0) { // in text: the hex digits of \uXXXX (esc stays set meanwhile)
            let h = hexv(c);
            if (h < 0) { this.uLeft = 0; this.esc = false; continue; } // invalid JSON: drop it
            this.uCp = (this.uCp << 4) | h;
            if (--this.uLeft == 0) {
              this.esc = false;
              // A surrogate pair is one character: count the high half only.
              if (this.uCp < 0xdc00 || this.uCp > 0xdfff) this.text.code(this.uCp);
            }
            continue;
          }
          if (c == 0x75) { this.uLeft = 4; this.uCp = 0; continue; }
          this.esc = false;
          this.text.other++;
          continue;
        }
        if (c == 0x5c) { this.esc = true; continue; }
        if (c == 0x22) {
          this.inStr = false;
          this.inText = false;
          if (this.tracking) {
            this.tracking = false;
            this.lastStrKind = this.keyOverflow ? K_OTHER : classify(this.key, this.countText);
            this.lastStrDepth = this.depth;
          }
          continue;
        }
        if (this.tracking) {
          if (this.key.length < KEY_MAX) this.key.push(c); else this.keyOverflow = true;
        }
        if (this.inText) this.text.byte(c);
        continue;
      }
      if (c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09) continue;
      if (c == 0x22) {
        this.inStr = true;
        this.lastStrKind = -1;
        let rel = this.depth - this.base;
        this.inText = this.awaitKind == K_TEXT && !this.capturing;
        this.awaitKind = -1;
        this.tracking = !this.capturing && !this.inText && rel >= 1 && (rel <= 2 || this.countText);
        if (this.tracking) { this.key.clear(); this.keyOverflow = false; }
        continue;
      }
      if (c == 0x3a) {
        this.awaitKind = this.lastStrKind >= 0 && this.lastStrDepth == this.depth ? this.lastStrKind : -1;
        this.lastStrKind = -1;
        continue;
      }
      let ak = this.awaitKind;
      this.awaitKind = -1;
      this.lastStrKind = -1;
      if (c == 0x7b) {
        let rel = this.depth - this.base;
        if (!this.capturing) {
          if (ak == K_USAGE && (rel == 1 ||
              (rel == 2 && (this.parentKind == K_MESSAGE || this.parentKind == K_RESPONSE)))) {
            this.capturing = true;
            this.capOverflow = false;
            this.capDepth = this.depth;
            this.cap.clear();
            this.cap.push(c);
          }
          if (rel == 1) this.parentKind = ak >= 0 ? ak : K_OTHER;
        }
        if (this.depth == 0) this.base = 0;
        this.depth++;
        continue;
      }
      if (c == 0x5b) {
        if (this.depth == 0) this.base = 1;
        else if (this.depth - this.base == 1) this.parentKind = K_OTHER;
        this.depth++;
        continue;
      }
      if (c == 0x7d || c == 0x5d) {
        if (this.depth > 0) this.depth--;
        if (this.capturing && this.depth == this.capDepth) {
          this.capturing = false;
          if (this.capOverflow) this.tooLarge++;
          else this.merge(this.cap);
        }
        continue;
      }
      // Scalars (numbers, true/false/null) and commas: nothing to track.
    }
  }

  /** Counts the plain bytes of a text string from i up to its quote or backslash; returns where it stopped. */
  private textRun(ptr: usize, i: i32, len: i32): i32 {
    let t = this.text;
    while (i < len) {
      let d = <i32>load<u8>(ptr + <usize>i);
      if (d == 0x22 || d == 0x5c) break;
      t.byte(d);
      i++;
    }
    return i;
  }

  private merge(obj: ByteBuf): void {
    let v = parseJson(obj);
    if (v === null || v.kind != J_OBJ) return;
    let p = tokens(v, "prompt_tokens", "input_tokens", "promptTokenCount");
    let c = tokens(v, "completion_tokens", "output_tokens", "candidatesTokenCount");
    let t = tokens(v, "total_tokens", "totalTokenCount", "");
    if (p >= 0) this.prompt = p;
    if (c >= 0) this.completion = c;
    if (t >= 0) this.total = t;
    else if (p >= 0 || c >= 0) this.total = -1; // recompute from the newer parts
  }
}

function classify(k: ByteBuf, countText: bool): i32 {
  if (k.eqStr("usage") || k.eqStr("usageMetadata")) return K_USAGE;
  if (k.eqStr("message")) return K_MESSAGE;
  if (k.eqStr("response")) return K_RESPONSE;
  if (countText && (k.eqStr("content") || k.eqStr("text") || k.eqStr("delta") || k.eqStr("reasoning_content") ||
      k.eqStr("reasoning") || k.eqStr("thinking") || k.eqStr("arguments") || k.eqStr("partial_json"))) return K_TEXT;
  return K_OTHER;
}

function hexv(c: i32): i32 {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** First present field among the names as a token count; -1 if absent or not a sane count. */
function tokens(v: JValue, a: string, b: string, c: string): i64 {
  let f = v.get(a);
  if (f === null) f = v.get(b);
  if (f === null && c.length > 0) f = v.get(c);
  if (f === null || f.kind != J_NUM) return -1;
  let n = f.n;
  if (!(n >= 0) || n > MAX_TOKENS) return -1; // also rejects NaN
  return <i64>Math.floor(n);
}
