// Server-Sent Events line reader: splits a text/event-stream body, fed in chunks split
// anywhere, into what the usage scanner needs — the bytes of `data:` values, the line breaks
// between the lines of one event's data, and the ends of events. Other fields (event:, id:,
// comments) are skipped. LF, CRLF and CR all end a line (a CRLF split across chunks counts
// once). State is a few bytes: nothing of the body is kept.
//
// Pull style, like eventstream.ts: step() consumes input until it has one thing to report
// (or the chunk ends) and says what in `out`.

import { ByteBuf } from "./bytes";

// What step() found.
export const SSE_NONE = 0; // the chunk ended with nothing to report
export const SSE_DATA = 1; // dataPtr/dataLen: a run of a data value's bytes
export const SSE_DATA_LINE = 2; // a data line ended (the event's data continues on the next data line)
export const SSE_EVENT_END = 3; // a blank line: the event is complete

// Where in a line the reader is.
const LINE_FIELD = 0; // reading the field name
const LINE_DATA_START = 1; // after "data:", at the optional space
const LINE_DATA = 2; // inside a data value
const LINE_SKIP = 3; // inside another field's value (ignored)

const FIELD_MAX = 8; // longer names cannot be "data"

export class SseReader {
  out: i32 = SSE_NONE;
  dataPtr: usize = 0;
  dataLen: i32 = 0;

  private line: i32 = LINE_FIELD;
  private field: ByteBuf = new ByteBuf(FIELD_MAX);
  private lastCR: bool = false;

  /** Reads from ptr[i..len); returns where it stopped. Call again while it returns < len. */
  step(ptr: usize, len: i32, i: i32): i32 {
    this.out = SSE_NONE;
    while (i < len) {
      const c = <i32>load<u8>(ptr + <usize>i);
      if (c == 0x0a || c == 0x0d) {
        const crlf = c == 0x0a && this.lastCR;
        this.lastCR = c == 0x0d;
        i++;
        if (crlf) continue;
        const line = this.line;
        const blank = line == LINE_FIELD && this.field.length == 0;
        this.line = LINE_FIELD;
        this.field.clear();
        if (blank) {
          this.out = SSE_EVENT_END;
          return i;
        }
        if (line == LINE_DATA_START || line == LINE_DATA) {
          this.out = SSE_DATA_LINE;
          return i;
        }
        continue;
      }
      this.lastCR = false;
      const line = this.line;
      if (line == LINE_FIELD) {
        if (c == 0x3a) {
          this.line = this.field.eqStr("data") ? LINE_DATA_START : LINE_SKIP;
        } else if (this.field.length < FIELD_MAX) {
          this.field.push(c);
        } else {
          this.field.push(0x20); // too long to be "data": poison the name
          this.field.length = FIELD_MAX;
        }
        i++;
        continue;
      }
      if (line == LINE_DATA_START) {
        // one optional space after "data:"
        this.line = LINE_DATA;
        if (c == 0x20) {
          i++;
          continue;
        }
      }
      // The rest of the line in one run: reported (data) or skipped.
      let j = i;
      while (j < len) {
        const d = <i32>load<u8>(ptr + <usize>j);
        if (d == 0x0a || d == 0x0d) break;
        j++;
      }
      if (this.line == LINE_DATA) {
        this.out = SSE_DATA;
        this.dataPtr = ptr + <usize>i;
        this.dataLen = j - i;
        return j;
      }
      i = j;
    }
    return i;
  }
}
