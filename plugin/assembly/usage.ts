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
// So a usage object is accepted as a key of a top-level object (the document, or an
// element of a top-level array), or one level down under "message", "response", "delta" or
// "x_groq". Later objects overwrite the fields they carry, field by field (streams report
// cumulative counts; Anthropic's message_delta repeats or completes message_start's fields).
// How the fields add up to prompt / completion / total (what the provider bills): see the
// getters below and plugin/README.md, "Usage accounting".

import { ByteBuf, hexVal } from "./bytes";
import { parseJson, JValue, J_OBJ, J_NUM, J_ARR } from "./json";
import { CharCounter } from "./estimate";
import { EventStreamDecoder } from "./eventstream";
import { base64Decode } from "./base64";
import { __collect } from "rt/index-full";

/** Body formats. */
export const MODE_JSON = 0;
export const MODE_SSE = 1;
export const MODE_EVENTSTREAM = 2; // application/vnd.amazon.eventstream (Bedrock streams)

// SSE line reader states.
const LINE_FIELD = 0;      // reading the field name
const LINE_DATA_START = 1; // after "data:", at the optional space
const LINE_DATA = 2;       // inside a data value (fed to the JSON scanner)
const LINE_SKIP = 3;       // inside another field's value (ignored)

const K_OTHER = 0;
const K_USAGE = 1;
const K_MESSAGE = 2;
const K_RESPONSE = 3;
const K_TEXT = 4;     // generated text (only with countText): content, text, reasoning, ...
const K_DELTA = 5;    // "delta": a parent of usage (Cohere message-end) or, as a string, generated text
const K_XGROQ = 6;    // "x_groq": parent of usage in older Groq streams
const K_METRICS = 7;  // "amazon-bedrock-invocationMetrics": Bedrock InvokeModel stream counts (a fallback)

const KEY_MAX = 32;
const NEWLINE: usize = memory.data<u8>([0x0a]);
const MAX_TOKENS: f64 = 1e15;
const MAX_SUM: i64 = 1000000000000000; // a sum of counts is as sane as one count

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

  // SSE line state.
  lineMode: i32 = LINE_FIELD;
  field: ByteBuf = new ByteBuf(8);
  lastCR: bool = false;

  // AWS event stream (MODE_EVENTSTREAM only).
  events: EventStreamDecoder | null = null;
  b64: ByteBuf | null = null;

  // Usage fields as last reported, each on its own (-1 = never seen). "Add" parts are billed
  // on top of the base count; "in" parts are already inside it (reported, never added twice).
  prompt: i64 = -1;            // prompt_tokens | input_tokens | promptTokenCount | inputTokens | Cohere input
  completion: i64 = -1;        // completion_tokens | output_tokens | candidatesTokenCount | outputTokens | Cohere output
  total: i64 = -1;             // total_tokens | totalTokenCount | totalTokens (as stated)
  cacheReadAdd: i64 = -1;      // Anthropic cache_read_input_tokens, Bedrock cacheReadInputTokens
  cacheWriteAdd: i64 = -1;     // Anthropic cache_creation_input_tokens, Bedrock cacheWriteInputTokens
  cacheReadIn: i64 = -1;       // *_tokens_details.cached_tokens, cachedContentTokenCount, prompt_cache_hit_tokens
  reasoningIn: i64 = -1;       // *_tokens_details.reasoning_tokens (OpenAI: inside; xAI: outside, see completionTokens)
  reasoningAdd: i64 = -1;      // Gemini thoughtsTokenCount
  toolPromptAdd: i64 = -1;     // Gemini toolUsePromptTokenCount
  iterIn: i64 = -1;            // Anthropic usage.iterations[] (compaction): sums over the iterations
  iterOut: i64 = -1;
  iterCacheRead: i64 = -1;
  iterCacheWrite: i64 = -1;
  // Bedrock InvokeModel streams: amazon-bedrock-invocationMetrics in the last chunk, for any
  // model. Used only when the model's own usage was not found.
  metricsIn: i64 = -1;         // inputTokenCount
  metricsOut: i64 = -1;        // outputTokenCount
  metricsCacheRead: i64 = -1;  // cacheReadInputTokenCount
  metricsCacheWrite: i64 = -1; // cacheWriteInputTokenCount
  tooLarge: i32 = 0;
  merges: i32 = 0;             // usage objects parsed so far

  // Generated-text counting (reserve mode: an estimate when the usage never comes). The
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

  found(): bool { return this.ownUsage() || this.metricsIn >= 0 || this.metricsOut >= 0; }

  /** Usage in the provider's own format was seen (else only Bedrock's invocation metrics, if any). */
  private ownUsage(): bool {
    return this.prompt >= 0 || this.completion >= 0 || this.total >= 0 || this.cacheReadAdd >= 0 ||
      this.cacheWriteAdd >= 0 || this.iterIn >= 0 || this.iterOut >= 0;
  }

  /** Prompt as billed: base input + cache reads + cache writes (+ Gemini tool-use prompt); compaction: all iterations. */
  promptTokens(): i64 {
    if (this.iterIn >= 0 || this.iterOut >= 0) return pos(this.iterIn) + pos(this.iterCacheRead) + pos(this.iterCacheWrite);
    if (!this.ownUsage()) return pos(this.metricsIn) + pos(this.metricsCacheRead) + pos(this.metricsCacheWrite);
    return pos(this.prompt) + pos(this.cacheReadAdd) + pos(this.cacheWriteAdd) + pos(this.toolPromptAdd);
  }

  /** Completion as billed: output + reasoning/thinking tokens when the provider reports them apart. */
  completionTokens(): i64 {
    if (this.iterIn >= 0 || this.iterOut >= 0) return pos(this.iterOut);
    if (!this.ownUsage()) return pos(this.metricsOut);
    let c = pos(this.completion) + pos(this.reasoningAdd);
    // xAI: completion_tokens leaves reasoning out, total_tokens has it. OpenAI: reasoning is
    // inside completion_tokens, and prompt + completion = total already.
    let r = this.reasoningIn;
    if (r > 0 && this.total >= 0 && this.promptTokens() + c + r == this.total) c += r;
    return c;
  }

  /** The stated total, unless it is below prompt + completion (then their sum). */
  totalTokens(): i64 {
    let sum = this.promptTokens() + this.completionTokens();
    if (this.iterIn >= 0 || this.iterOut >= 0) return sum;
    return this.total > sum ? this.total : sum;
  }

  /** Prompt tokens read from a cache (part of promptTokens), 0 when unknown. */
  cacheReadTokens(): i64 {
    if (this.iterIn >= 0 || this.iterOut >= 0) return pos(this.iterCacheRead);
    if (!this.ownUsage()) return pos(this.metricsCacheRead);
    return this.cacheReadAdd >= 0 ? this.cacheReadAdd : pos(this.cacheReadIn);
  }

  /** Prompt tokens written to a cache (part of promptTokens), 0 when unknown. */
  cacheWriteTokens(): i64 {
    if (this.iterIn >= 0 || this.iterOut >= 0) return pos(this.iterCacheWrite);
    if (!this.ownUsage()) return pos(this.metricsCacheWrite);
    return pos(this.cacheWriteAdd);
  }

  /** Reasoning / thinking tokens (part of completionTokens), 0 when unknown. */
  reasoningTokens(): i64 {
    return this.reasoningAdd >= 0 ? this.reasoningAdd : pos(this.reasoningIn);
  }

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
    let i = 0;
    while (i < len) {
      let c = <i32>load<u8>(ptr + <usize>i);
      if (c == 0x0a || c == 0x0d) {
        let crlf = c == 0x0a && this.lastCR;
        this.lastCR = c == 0x0d;
        i++;
        if (crlf) continue;
        if (this.lineMode == LINE_FIELD && this.field.length == 0) this.endEvent(); // blank line
        else if (this.lineMode == LINE_DATA_START || this.lineMode == LINE_DATA) this.feedJson(NEWLINE, 1);
        this.lineMode = LINE_FIELD;
        this.field.clear();
        continue;
      }
      this.lastCR = false;
      let mode = this.lineMode;
      if (mode == LINE_FIELD) {
        if (c == 0x3a) {
          this.lineMode = this.field.eqStr("data") ? LINE_DATA_START : LINE_SKIP;
        } else if (this.field.length < 8) {
          this.field.push(c);
        } else {
          this.field.push(0x20); // too long to be "data": poison the name
          this.field.length = 8;
        }
        i++;
        continue;
      }
      if (mode == LINE_DATA_START) { // one optional space after "data:"
        this.lineMode = LINE_DATA;
        if (c == 0x20) { i++; continue; }
      }
      // Run to end of line, fed in one piece (data) or skipped.
      let j = i;
      while (j < len) {
        let d = <i32>load<u8>(ptr + <usize>j);
        if (d == 0x0a || d == 0x0d) break;
        j++;
      }
      if (this.lineMode == LINE_DATA) this.feedJson(ptr + <usize>i, j - i);
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
          if ((ak == K_USAGE && (rel == 1 || (rel == 2 && usageParent(this.parentKind)))) ||
              (ak == K_METRICS && rel == 1)) {
            this.capturing = true;
            this.capKind = ak;
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
          else {
            // The parsed tree is of a possibly cyclic type: the runtime only frees it in a
            // collection, and the filter collects at the end of the stream. Streams that
            // repeat usage in every event (Gemini, DashScope) would grow until then, so
            // from the second usage object on, the previous tree is collected first.
            if (this.merges > 0) __collect();
            this.merges++;
            if (this.capKind == K_METRICS) this.mergeMetrics(this.cap); else this.merge(this.cap);
          }
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

  private mergeMetrics(obj: ByteBuf): void {
    let v = parseJson(obj);
    if (v === null || v.kind != J_OBJ) return;
    let x = num(v, "inputTokenCount");
    if (x >= 0) this.metricsIn = x;
    x = num(v, "outputTokenCount");
    if (x >= 0) this.metricsOut = x;
    x = num(v, "cacheReadInputTokenCount");
    if (x >= 0) this.metricsCacheRead = x;
    x = num(v, "cacheWriteInputTokenCount");
    if (x >= 0) this.metricsCacheWrite = x;
  }

  private merge(obj: ByteBuf): void {
    let v = parseJson(obj);
    if (v === null || v.kind != J_OBJ) return;
    // One pass over the keys (a switch on the length, then a compare or two): this runs for
    // every usage object, and most responses carry just a handful of keys.
    let pt: i64 = -1, it: i64 = -1, ptc: i64 = -1, iT: i64 = -1;         // prompt candidates, by preference
    let ct: i64 = -1, ot: i64 = -1, cand: i64 = -1, oT: i64 = -1;        // completion candidates
    let tt: i64 = -1, ttc: i64 = -1, tT: i64 = -1;                       // total candidates
    let crA: i64 = -1, crB: i64 = -1, cwA: i64 = -1, cwB: i64 = -1;
    let crIn: i64 = -1, crIn2: i64 = -1, crIn3: i64 = -1, crIn4: i64 = -1, crIn5: i64 = -1;
    let rsIn: i64 = -1, rsIn2: i64 = -1, rsIn3: i64 = -1, thoughts: i64 = -1, toolUse: i64 = -1;
    let billed: JValue | null = null, toks: JValue | null = null, iters: JValue | null = null;
    let keys = v.keys;
    let items = v.items;
    for (let k = 0, n = keys.length; k < n; k++) {
      let key = keys[k];
      let item = items[k];
      switch (key.length) {
        case 6: if (key.eqStr("tokens")) toks = item; break;
        case 10: if (key.eqStr("iterations")) iters = item; break;
        case 11:
          if (key.eqStr("inputTokens")) iT = count(item);
          else if (key.eqStr("totalTokens")) tT = count(item);
          break;
        case 12:
          if (key.eqStr("input_tokens")) it = count(item);
          else if (key.eqStr("total_tokens")) tt = count(item);
          else if (key.eqStr("outputTokens")) oT = count(item);
          else if (key.eqStr("billed_units")) billed = item;
          break;
        case 13:
          if (key.eqStr("prompt_tokens")) pt = count(item);
          else if (key.eqStr("output_tokens")) ot = count(item);
          else if (key.eqStr("cached_tokens")) crIn5 = count(item);
          break;
        case 15: if (key.eqStr("totalTokenCount")) ttc = count(item); break;
        case 16: if (key.eqStr("promptTokenCount")) ptc = count(item); break;
        case 17: if (key.eqStr("completion_tokens")) ct = count(item); break;
        case 18: if (key.eqStr("thoughtsTokenCount")) thoughts = count(item); break;
        case 20:
          if (key.eqStr("candidatesTokenCount")) cand = count(item);
          else if (key.eqStr("cacheReadInputTokens")) crB = count(item);
          else if (key.eqStr("input_tokens_details")) crIn2 = num(item, "cached_tokens");
          break;
        case 21:
          if (key.eqStr("cacheWriteInputTokens")) cwB = count(item);
          else if (key.eqStr("prompt_tokens_details")) crIn = num(item, "cached_tokens");
          else if (key.eqStr("output_tokens_details")) {
            rsIn2 = num(item, "reasoning_tokens");
            rsIn3 = num(item, "thinking_tokens");
          }
          break;
        case 23:
          if (key.eqStr("cache_read_input_tokens")) crA = count(item);
          else if (key.eqStr("cachedContentTokenCount")) crIn3 = count(item);
          else if (key.eqStr("prompt_cache_hit_tokens")) crIn4 = count(item);
          else if (key.eqStr("toolUsePromptTokenCount")) toolUse = count(item);
          break;
        case 25: if (key.eqStr("completion_tokens_details")) rsIn = num(item, "reasoning_tokens"); break;
        case 27: if (key.eqStr("cache_creation_input_tokens")) cwA = count(item); break;
      }
    }
    let p = pick4(pt, it, ptc, iT);
    let c = pick4(ct, ot, cand, oT);
    let t = pick4(tt, ttc, tT, -1);
    if (p < 0 && c < 0) { // Cohere v2: what is billed, else what was processed
      p = num(billed, "input_tokens");
      if (p < 0) p = num(toks, "input_tokens");
      c = num(billed, "output_tokens");
      if (c < 0) c = num(toks, "output_tokens");
    }
    if (p >= 0) this.prompt = p;
    if (c >= 0) this.completion = c;
    if (t >= 0) this.total = t;
    else if (p >= 0 || c >= 0) this.total = -1; // recompute from the newer parts

    let x = pick4(crA, crB, -1, -1);
    if (x >= 0) this.cacheReadAdd = x;
    x = pick4(cwA, cwB, -1, -1);
    if (x >= 0) this.cacheWriteAdd = x;
    x = pick4(crIn, crIn2, crIn3, pick4(crIn4, crIn5, -1, -1));
    if (x >= 0) this.cacheReadIn = x;
    x = pick4(rsIn, rsIn2, rsIn3, -1);
    if (x >= 0) this.reasoningIn = x;
    if (thoughts >= 0) this.reasoningAdd = thoughts;
    if (toolUse >= 0) this.toolPromptAdd = toolUse;

    // Anthropic compaction: one usage entry per sampling iteration; the top-level fields are
    // the last iteration only, the bill is the sum of all of them.
    if (iters !== null && iters.kind == J_ARR) {
      let si: i64 = 0, so: i64 = 0, sr: i64 = 0, sw: i64 = 0;
      let any = false;
      let list = iters.items;
      for (let k = 0; k < list.length; k++) {
        let e = list[k];
        if (e.kind != J_OBJ) continue;
        let a = num(e, "input_tokens"), b = num(e, "output_tokens");
        let r = num(e, "cache_read_input_tokens"), w = num(e, "cache_creation_input_tokens");
        if (a < 0 && b < 0 && r < 0 && w < 0) continue;
        any = true;
        si += pos(a); so += pos(b); sr += pos(r); sw += pos(w);
      }
      if (any && si <= MAX_SUM && so <= MAX_SUM && sr <= MAX_SUM && sw <= MAX_SUM) {
        this.iterIn = si; this.iterOut = so; this.iterCacheRead = sr; this.iterCacheWrite = sw;
      }
    }
  }
}

/** The first of the candidates that is known (>= 0), or -1. */
@inline function pick4(a: i64, b: i64, c: i64, d: i64): i64 {
  if (a >= 0) return a;
  if (b >= 0) return b;
  if (c >= 0) return c;
  return d;
}

@inline function pos(x: i64): i64 { return x > 0 ? x : 0; }

function usageParent(k: i32): bool {
  return k == K_MESSAGE || k == K_RESPONSE || k == K_DELTA || k == K_XGROQ;
}

function startsWithLower(v: ByteBuf, prefix: string): bool {
  let n = prefix.length;
  if (v.length < n) return false;
  for (let i = 0; i < n; i++) {
    let c = v.at(i);
    if (c >= 65 && c <= 90) c += 32;
    if (c != prefix.charCodeAt(i)) return false;
  }
  return true;
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

function classify(k: ByteBuf, countText: bool): i32 {
  // By length first: most keys match none, and this runs for every key near the top.
  switch (k.length) {
    case 4: return countText && k.eqStr("text") ? K_TEXT : K_OTHER;
    case 5:
      if (k.eqStr("usage")) return K_USAGE;
      if (k.eqStr("delta")) return K_DELTA;
      return K_OTHER;
    case 6: return k.eqStr("x_groq") ? K_XGROQ : K_OTHER;
    case 7:
      if (k.eqStr("message")) return K_MESSAGE;
      return countText && k.eqStr("content") ? K_TEXT : K_OTHER;
    case 8:
      if (k.eqStr("response")) return K_RESPONSE;
      return countText && k.eqStr("thinking") ? K_TEXT : K_OTHER;
    case 9: return countText && (k.eqStr("reasoning") || k.eqStr("arguments")) ? K_TEXT : K_OTHER;
    case 12: return countText && k.eqStr("partial_json") ? K_TEXT : K_OTHER;
    case 13: return k.eqStr("usageMetadata") ? K_USAGE : K_OTHER;
    case 17: return countText && k.eqStr("reasoning_content") ? K_TEXT : K_OTHER;
    case 32: return k.eqStr("amazon-bedrock-invocationMetrics") ? K_METRICS : K_OTHER;
  }
  return K_OTHER;
}


/** A field of an object as a token count; -1 if absent, not an object, or not a sane count. */
function num(v: JValue | null, key: string): i64 {
  if (v === null || v.kind != J_OBJ) return -1;
  let f = v.get(key);
  if (f === null) return -1;
  return count(f);
}

/** A value as a token count; -1 if not a number or not a sane count. */
function count(f: JValue): i64 {
  if (f.kind != J_NUM) return -1;
  let n = f.n;
  if (!(n >= 0) || n > MAX_TOKENS) return -1; // also rejects NaN
  return <i64>Math.floor(n);
}
