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
//   Bedrock Converse: {"usage":{"inputTokens","outputTokens","totalTokens",...}}; ConverseStream:
//     the same under the `metadata` event of an AWS event stream (eventstream.ts);
//     InvokeModelWithResponseStream: event-stream payloads {"bytes":"<base64 of the model's own
//     event>"} (Anthropic's usage as above; other models: amazon-bedrock-invocationMetrics).
//   Cohere v2: {"usage":{"billed_units":{...},"tokens":{...}}}; stream: message-end {"delta":{"usage":...}}
//   Groq (older streams): {"x_groq":{"usage":{...}}}
//   Moonshot (2024 streams): the last chunk's {"choices":[{...,"usage":{...}}]}
//   Amazon Titan embeddings (Bedrock InvokeModel): {"embedding":[...],"inputTextTokenCount":N}
// So a usage object is accepted as a key of a top-level object (the document, or an
// element of a top-level array), one level down under "message", "response", "delta" or
// "x_groq", or in an element of "choices" (usage-keys.ts, objectAt). Later objects overwrite the fields they carry, field by field (streams report
// cumulative counts; Anthropic's message_delta repeats or completes message_start's fields).
// How the fields add up to prompt / completion / total (what the provider bills): see the
// getters below and plugin/README.md, "Usage accounting".

import { ByteBuf, hexVal, startsWithLower } from "./bytes";
import { SseReader, SSE_DATA, SSE_DATA_LINE, SSE_EVENT_END } from "./sse";
import { parseJson } from "./json";
import { BilledUsage, MAX_SUM } from "./billed";
import { K_OTHER, K_USAGE, K_MESSAGE, K_TEXT, K_DELTA, K_METRICS, K_EMBEDDING, K_INPUT_TEXT_TOKENS, objectAt, arrayParent, tracksKeys, classify } from "./usage-keys";
import { CharCounter } from "./token-estimate";
import { EventStreamDecoder } from "./eventstream";
import { base64Decode } from "./base64";
import { __collect } from "rt/index-full";

/** Body formats. */
export const MODE_JSON = 0;
export const MODE_SSE = 1;
export const MODE_EVENTSTREAM = 2; // application/vnd.amazon.eventstream (Bedrock streams)

const KEY_MAX = 32;
const NEWLINE: usize = memory.data<u8>([0x0a]);

export class UsageScanner {
  sse: bool;
  mode: i32;
  sniffed: bool = false;       // JSON mode: first body byte looked at (0x00 = an event stream)
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
  capKind: i32 = K_USAGE;      // K_USAGE or K_METRICS: what the captured object is
  capDepth: i32 = 0;
  cap: ByteBuf;
  capOverflow: bool = false;
  capProvisional: bool = false; // the captured object is a provisional usage (Anthropic message_start)
  numKind: i32 = -1;           // reading a top-level count given as a bare number (Titan): its key kind
  num: i64 = 0;

  // SSE (MODE_SSE only).
  lines: SseReader = new SseReader();

  // AWS event stream (MODE_EVENTSTREAM only).
  events: EventStreamDecoder | null = null;
  b64: ByteBuf | null = null;

  usage: BilledUsage = new BilledUsage();
  // The last usage read is provisional: Anthropic's message_start (on Anthropic, Bedrock and
  // Vertex streams), whose output_tokens is a placeholder until message_delta gives the count.
  // A stream that ends without a later usage is charged at least its estimate (filter.ts).
  provisional: bool = false;
  tooLarge: i32 = 0;
  merges: i32 = 0;             // usage objects parsed so far

  // Generated-text counting (for an estimate when the usage never comes). The
  // characters of string values under text keys at any depth (delta.content, message.content,
  // parts[].text, Anthropic delta.text, Responses "delta" strings, reasoning, tool arguments).
  countText: bool = false;
  inText: bool = false;
  uLeft: i32 = 0;              // hex digits of a \u escape still to read (in text)
  uCp: i32 = 0;
  text: CharCounter = new CharCounter();

  /**
   * sse: the body is text/event-stream. Otherwise it is JSON, unless its first byte is 0x00,
   * which no JSON document starts with and every AWS event-stream message under 16 MiB does
   * (its big-endian length): then it is read as an AWS event stream.
   */
  constructor(sse: bool, maxBuf: i32, countText: bool = false) {
    this.sse = sse;
    this.mode = sse ? MODE_SSE : MODE_JSON;
    this.maxBuf = maxBuf;
    this.cap = new ByteBuf(256);
    this.countText = countText;
  }

  /**
   * The scanner for a response's content-type (null = absent): text/event-stream -> SSE,
   * application/vnd.amazon.eventstream -> AWS event stream, anything else -> JSON.
   */
  static forContentType(ct: ByteBuf | null, maxBuf: i32, countText: bool = false): UsageScanner {
    let mode = MODE_JSON;
    if (ct !== null) {
      if (startsWithLower(ct, "text/event-stream")) mode = MODE_SSE;
      else if (startsWithLower(ct, "application/vnd.amazon.eventstream")) mode = MODE_EVENTSTREAM;
    }
    let s = new UsageScanner(mode == MODE_SSE, maxBuf, countText);
    if (mode == MODE_EVENTSTREAM) s.startEventStream();
    return s;
  }

  private startEventStream(): void {
    this.mode = MODE_EVENTSTREAM;
    this.sniffed = true;
    this.events = new EventStreamDecoder(this.maxBuf);
  }

  found(): bool { return this.usage.found(); }
  promptTokens(): i64 { return this.usage.promptTokens(); }
  completionTokens(): i64 { return this.usage.completionTokens(); }
  totalTokens(): i64 { return this.usage.totalTokens(); }
  cacheReadTokens(): i64 { return this.usage.cacheReadTokens(); }
  cacheWriteTokens(): i64 { return this.usage.cacheWriteTokens(); }
  reasoningTokens(): i64 { return this.usage.reasoningTokens(); }

  /** Feeds one body chunk (host memory, read in place). */
  feed(ptr: usize, len: i32): void {
    if (len <= 0) return;
    let mode = this.mode;
    if (mode == MODE_SSE) { this.feedSse(ptr, len); return; }
    if (mode == MODE_JSON) {
      if (!this.sniffed) {
        this.sniffed = true;
        if (load<u8>(ptr) == 0) this.startEventStream(); else { this.feedJson(ptr, len); return; }
      } else { this.feedJson(ptr, len); return; }
    }
    this.feedEvents(ptr, len);
  }

  private feedEvents(ptr: usize, len: i32): void {
    let dec = this.events;
    if (dec === null) return;
    let i = 0;
    while (i < len) {
      i = dec.step(ptr, len, i);
      if (dec.ready) this.eventPayload(dec.payload);
    }
  }

  /**
   * One checked event-stream payload: a JSON document (ConverseStream events), or
   * {"bytes":"<base64>"} whose decoded bytes are the JSON document (InvokeModel streams).
   */
  private eventPayload(payload: ByteBuf): void {
    let p = payload.ptr();
    let n = payload.length;
    this.endEvent();
    let at = bytesField(p, n);
    if (at >= 0) {
      let end = at;
      while (end < n && load<u8>(p + <usize>end) != 0x22) end++;
      let b = this.b64;
      if (b === null) { b = new ByteBuf(256); this.b64 = b; }
      if (end < n && base64Decode(p + <usize>at, end - at, b)) this.feedJson(b.ptr(), b.length);
    } else {
      this.feedJson(p, n);
    }
    this.endEvent();
  }

  private feedSse(ptr: usize, len: i32): void {
    let r = this.lines;
    let i = 0;
    while (i < len) {
      i = r.step(ptr, len, i);
      let out = r.out;
      if (out == SSE_DATA) this.feedJson(r.dataPtr, r.dataLen);
      else if (out == SSE_DATA_LINE) this.feedJson(NEWLINE, 1); // data on several lines is one document
      else if (out == SSE_EVENT_END) this.endEvent();
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
    this.numKind = -1;
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
            let h = hexVal(c);
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
        let ak0 = this.awaitKind;
        this.inText = (ak0 == K_TEXT || (ak0 == K_DELTA && this.countText)) && !this.capturing;
        this.awaitKind = -1;
        let first = i < len ? <i32>load<u8>(ptr + <usize>i) : -1; // the string's first byte, if in this chunk
        this.tracking = !this.capturing && !this.inText && tracksKeys(rel, this.parentKind, this.countText, first);
        if (this.tracking) { this.key.clear(); this.keyOverflow = false; }
        continue;
      }
      if (c == 0x3a) {
        let kind = this.lastStrKind >= 0 && this.lastStrDepth == this.depth ? this.lastStrKind : -1;
        this.awaitKind = kind;
        this.lastStrKind = -1;
        if (kind == K_EMBEDDING && this.depth - this.base == 1) this.usage.embedding = true;
        continue;
      }
      let ak = this.awaitKind;
      this.awaitKind = -1;
      this.lastStrKind = -1;
      if (c == 0x7b) {
        let rel = this.depth - this.base;
        if (!this.capturing) {
          let what = objectAt(ak, rel, this.parentKind);
          if (what >= 0) {
            this.capturing = true;
            this.capKind = what;
            this.capOverflow = false;
            this.capDepth = this.depth;
            this.capProvisional = rel == 2 && this.parentKind == K_MESSAGE;
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
        else if (this.depth - this.base == 1) this.parentKind = arrayParent(ak);
        this.depth++;
        continue;
      }
      if (c == 0x7d || c == 0x5d) {
        if (this.numKind >= 0) this.endCount(c);
        if (this.depth > 0) this.depth--;
        if (this.capturing && this.depth == this.capDepth) {
          this.capturing = false;
          if (this.capOverflow) this.tooLarge++;
          else {
            // The parsed tree is of a possibly cyclic type: the runtime only frees it in a
            // collection, and the filter collects at the end of the stream. Streams that
            // repeat usage in every event (Gemini, DashScope) would grow until then, so
            // from the second usage object on, the previous tree is collected first.
            if (this.merges > 0) __collect();
            this.merges++;
            let v = parseJson(this.cap);
            if (v !== null) {
              if (this.capKind == K_METRICS) this.usage.mergeMetrics(v);
              else { this.usage.merge(v); this.provisional = this.capProvisional; }
            }
          }
        }
        continue;
      }
      // Scalars (numbers, true/false/null) and commas: only a top-level count is read, digit
      // by digit, up to the comma or bracket that ends it (whitespace cannot end a number in JSON).
      if (this.numKind >= 0) {
        if (c >= 0x30 && c <= 0x39) this.countDigit(c); else this.endCount(c);
        continue;
      }
      if (ak == K_INPUT_TEXT_TOKENS && c >= 0x30 && c <= 0x39 && this.depth - this.base == 1 && !this.capturing) {
        this.numKind = ak;
        this.num = 0;
        this.countDigit(c);
      }
    }
  }

  private countDigit(c: i32): void {
    let n = this.num * 10 + <i64>(c - 0x30);
    this.num = n > MAX_SUM ? MAX_SUM + 1 : n; // too large to be a count: refused at the end
  }

  /** The byte after a count's digits: a fraction or exponent makes it no count; else it is merged. */
  private endCount(c: i32): void {
    if (c != 0x2e && c != 0x65 && c != 0x45) this.usage.mergeInputTextTokens(this.num);
    this.numKind = -1;
  }

  /** Counts the plain bytes of a text string from i up to its quote or backslash; returns where it stopped. */
  private textRun(ptr: usize, i: i32, len: i32): i32 {
    let t = this.text;
    let ascii: i64 = 0; // ASCII counted in a local: most generated text is, and this is the hot loop
    while (i < len) {
      let d = <i32>load<u8>(ptr + <usize>i);
      if (d < 0x80) {
        if (d == 0x22 || d == 0x5c) break;
        ascii++;
        i++;
        continue;
      }
      if (ascii > 0) { t.ascii(ascii); ascii = 0; }
      t.byte(d);
      i++;
    }
    if (ascii > 0) t.ascii(ascii);
    return i;
  }
}




/**
 * Where the base64 text of a top-level "bytes" string starts in an event-stream payload
 * ({"bytes":"..."}), or -1. The sequence "bytes" with unescaped quotes followed by a colon
 * can only be a key, never text inside a string.
 */
function bytesField(p: usize, n: i32): i32 {
  for (let i = 0; i + 7 <= n; i++) {
    if (load<u8>(p + <usize>i) != 0x22 || load<u8>(p + <usize>(i + 1)) != 0x62) continue;
    if (load<u8>(p + <usize>(i + 2)) != 0x79 || load<u8>(p + <usize>(i + 3)) != 0x74 ||
        load<u8>(p + <usize>(i + 4)) != 0x65 || load<u8>(p + <usize>(i + 5)) != 0x73 ||
        load<u8>(p + <usize>(i + 6)) != 0x22) continue;
    let j = i + 7;
    while (j < n && isWs(<i32>load<u8>(p + <usize>j))) j++;
    if (j >= n || load<u8>(p + <usize>j) != 0x3a) continue;
    j++;
    while (j < n && isWs(<i32>load<u8>(p + <usize>j))) j++;
    if (j >= n || load<u8>(p + <usize>j) != 0x22) continue;
    return j + 1;
  }
  return -1;
}

@inline function isWs(c: i32): bool { return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09; }



