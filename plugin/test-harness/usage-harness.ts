// Test harness (AssemblyScript): the usage scanner alone, without the filter, so tests can read
// the parts (cache reads/writes, reasoning) and the decoder's counters. Test code, kept out of
// the shipped sources (assembly/): plugin/test/scanner.ts compiles it into a temporary .wasm.
import { UsageScanner } from "../assembly/usage";
import { ByteBuf } from "../assembly/bytes";
import { SseReader, SSE_DATA, SSE_DATA_LINE, SSE_EVENT_END } from "../assembly/sse";

const input = new ByteBuf(1 << 16);
let sc: UsageScanner | null = null;

/** A buffer of len bytes for the caller to fill; returns its address. */
export function inputBuffer(len: i32): usize {
  input.clear();
  input.reserve(len);
  input.length = len;
  return input.ptr();
}

/** New scanner for the content-type in the input buffer (ctLen bytes; -1 = no content-type). */
export function begin(ctLen: i32, maxBuf: i32, countText: bool): void {
  let ct: ByteBuf | null = null;
  if (ctLen >= 0) ct = ByteBuf.fromRaw(input.ptr(), ctLen);
  sc = UsageScanner.forContentType(ct, maxBuf, countText);
}

/** Feeds the first len bytes of the input buffer. */
export function feed(len: i32): void {
  const s = sc;
  if (s !== null) s.feed(input.ptr(), len);
}

/** 0 found, 1 prompt, 2 completion, 3 total, 4 cache read, 5 cache write, 6 reasoning, 7 tooLarge, 8 text chars, 9 mode, 14 provisional. */
export function get(what: i32): f64 {
  const s = sc;
  if (s === null) return -1;
  if (what == 0) return s.found() ? 1 : 0;
  if (what == 1) return <f64>s.promptTokens();
  if (what == 2) return <f64>s.completionTokens();
  if (what == 3) return <f64>s.totalTokens();
  if (what == 4) return <f64>s.cacheReadTokens();
  if (what == 5) return <f64>s.cacheWriteTokens();
  if (what == 6) return <f64>s.reasoningTokens();
  if (what == 7) return <f64>s.tooLarge;
  if (what == 8) return <f64>s.text.chars();
  if (what == 9) return <f64>s.mode;
  if (what == 14) return s.provisional ? 1 : 0;
  const ev = s.events;
  if (ev === null) return -1;
  if (what == 10) return <f64>ev.messages;
  if (what == 11) return <f64>ev.badCrc;
  if (what == 12) return <f64>ev.oversized;
  if (what == 13) return <f64>ev.resyncBytes;
  return -1;
}

// The SSE line reader alone: what it reports for the input, as text. Data bytes as they are,
// a data line break as "\n", an event end as "|".
let lines: SseReader | null = null;
const trace = new ByteBuf(1024);

export function sseBegin(): void {
  lines = new SseReader();
  trace.clear();
}

/** Feeds the first len bytes of the input buffer to the reader; returns the trace's length. */
export function sseFeed(len: i32): i32 {
  const r = lines;
  if (r === null) return -1;
  let i = 0;
  while (i < len) {
    i = r.step(input.ptr(), len, i);
    if (r.out == SSE_DATA) trace.appendRaw(r.dataPtr, r.dataLen);
    else if (r.out == SSE_DATA_LINE) trace.push(0x0a);
    else if (r.out == SSE_EVENT_END) trace.push(0x7c);
  }
  return trace.length;
}

/** Address of the trace (its length: sseFeed's result). */
export function sseTrace(): usize {
  return trace.ptr();
}
