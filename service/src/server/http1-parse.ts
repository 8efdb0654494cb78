/**
 * Parsing for ./http1: request heads, header lines, chunked bodies, and the buffer of bytes
 * received and not parsed yet. Every step is linear in the bytes it is given, however they
 * are split: the parser's work grows in proportion to what a client sends, never faster.
 */

/** Most header lines in a request head. */
export const MAX_HEADERS = 100;

const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * `name: value` → [name, value without surrounding spaces and tabs], or undefined when malformed.
 * Split by hand, not by one regex: a pattern with a lazy value and trailing optional spaces
 * backtracks quadratically on a long run of spaces (a 64 KiB header line would cost seconds).
 */
export function headerLine(line: string): [string, string] | undefined {
  const colon = line.indexOf(':');
  if (colon <= 0) return undefined;
  const name = line.slice(0, colon);
  if (!TOKEN.test(name)) return undefined;
  let a = colon + 1;
  let b = line.length;
  while (a < b && (line.charCodeAt(a) === 32 || line.charCodeAt(a) === 9)) a++;
  while (b > a && (line.charCodeAt(b - 1) === 32 || line.charCodeAt(b - 1) === 9)) b--;
  const value = line.slice(a, b);
  return FIELD_VALUE.test(value) ? [name, value] : undefined;
}

/** A request the connection cannot go on from: answered with `status` and closed. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export interface Head {
  method: string;
  url: string;
  headers: Record<string, string>;
  keepAlive: boolean;
  http10: boolean;
  /** Body length, or -1 for chunked. */
  length: number;
  expectContinue: boolean;
}

/** Parses a request head (without its final CRLFCRLF), latin1-decoded. */
export function parseHead(text: string): Head {
  const lines = text.split('\r\n');
  const m = REQUEST_LINE.exec(lines[0]);
  if (!m) throw new HttpError(400, 'malformed HTTP request line');
  if (lines.length - 1 > MAX_HEADERS) throw new HttpError(431, 'request headers too large');
  // No prototype: a header named like an Object property is just a header.
  const headers: Record<string, string> = Object.create(null);
  let contentLength: string | undefined;
  let te: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const h = headerLine(lines[i]);
    if (!h) throw new HttpError(400, 'malformed HTTP header line');
    const name = h[0].toLowerCase();
    const value = h[1];
    if (name === 'content-length') {
      if (contentLength !== undefined && contentLength !== value) throw new HttpError(400, 'conflicting Content-Length headers');
      contentLength = value;
    } else if (name === 'transfer-encoding') {
      te = te === undefined ? value : `${te}, ${value}`;
    }
    if (headers[name] === undefined) headers[name] = value;
  }
  const http10 = m[3] === '0';
  if (!http10 && headers.host === undefined) throw new HttpError(400, 'missing Host header');
  let length = 0;
  if (te !== undefined) {
    if (contentLength !== undefined) throw new HttpError(400, 'both Content-Length and Transfer-Encoding');
    if (http10 || te.toLowerCase() !== 'chunked') throw new HttpError(501, `unsupported Transfer-Encoding ${JSON.stringify(te.slice(0, 100))}`);
    length = -1;
  } else if (contentLength !== undefined) {
    if (!/^[0-9]{1,15}$/.test(contentLength)) throw new HttpError(400, 'malformed Content-Length');
    length = Number(contentLength);
  }
  const conn = (headers.connection ?? '').toLowerCase().split(',').map((t) => t.trim());
  const keepAlive = http10 ? conn.includes('keep-alive') : !conn.includes('close');
  const expectContinue = !http10 && headers.expect?.toLowerCase() === '100-continue';
  return { method: m[1], url: m[2], headers, keepAlive, http10, length, expectContinue };
}

/** Longest chunk-size line (size and extensions). */
const MAX_CHUNK_LINE = 1024;

/**
 * A chunked body, decoded as its bytes arrive: `feed` takes everything received after the head
 * so far (the same bytes again plus the new ones) and resumes where it stopped, so a body sent a
 * byte at a time costs linear time. Trailers are read and ignored.
 */
export class ChunkedDecoder {
  private at = 0;
  private size = 0;
  private readonly parts: Buffer[] = [];
  private trailer = false;
  private trailerStart = 0;

  constructor(
    private readonly maxBody: number,
    private readonly maxTrailer: number,
  ) {}

  /** The body and the bytes it took, once whole; undefined while incomplete. */
  feed(buf: Buffer): { body: Buffer; used: number } | undefined {
    while (!this.trailer) {
      const eol = buf.indexOf('\r\n', this.at, 'latin1');
      if (eol < 0 || eol - this.at > MAX_CHUNK_LINE) {
        if (eol - this.at > MAX_CHUNK_LINE || buf.length - this.at > MAX_CHUNK_LINE) throw new HttpError(400, 'malformed chunk size');
        return undefined;
      }
      const m = /^([0-9A-Fa-f]{1,8})(;[\t\x20-\x7e]*)?$/.exec(buf.toString('latin1', this.at, eol));
      if (!m) throw new HttpError(400, 'malformed chunk size');
      const n = parseInt(m[1], 16);
      if (n === 0) {
        this.trailer = true;
        this.at = this.trailerStart = eol + 2;
        break;
      }
      if (this.size + n > this.maxBody) throw new HttpError(400, `body larger than ${this.maxBody} bytes`);
      if (buf.length < eol + 2 + n + 2) return undefined;
      const start = eol + 2;
      if (buf[start + n] !== 13 || buf[start + n + 1] !== 10) throw new HttpError(400, 'malformed chunk');
      this.parts.push(buf.subarray(start, start + n));
      this.size += n;
      this.at = start + n + 2;
      // Chunk lines cost bytes the size bound does not see: bound the whole encoding too.
      if (this.at > 2 * this.maxBody + MAX_CHUNK_LINE) throw new HttpError(400, `body larger than ${this.maxBody} bytes`);
    }
    for (;;) {
      const eol = buf.indexOf('\r\n', this.at, 'latin1');
      if (eol < 0 || eol - this.trailerStart > this.maxTrailer) {
        if (eol - this.trailerStart > this.maxTrailer || buf.length - this.trailerStart > this.maxTrailer) {
          throw new HttpError(431, 'request headers too large');
        }
        return undefined;
      }
      if (eol === this.at) return { body: this.parts.length === 1 ? this.parts[0] : Buffer.concat(this.parts), used: eol + 2 };
      if (!headerLine(buf.toString('latin1', this.at, eol))) throw new HttpError(400, 'malformed trailer line');
      this.at = eol + 2;
    }
  }
}

/**
 * Received bytes not parsed yet. Appends grow a private buffer by doubling (amortised linear
 * copying, however small the pieces); when empty, a new piece is used as it is (no copy: the
 * usual request arrives in one piece). Bytes once written are never changed, so views of
 * them (chunks of a body) stay valid.
 */
export class Pending {
  private store: Buffer = Buffer.alloc(0);
  private start = 0;
  private end = 0;
  private owned = false;

  get length(): number {
    return this.end - this.start;
  }

  append(d: Buffer): void {
    if (this.end === this.start) {
      this.store = d;
      this.start = 0;
      this.end = d.length;
      this.owned = false;
      return;
    }
    const len = this.end - this.start;
    if (!this.owned || this.store.length - this.end < d.length) {
      const next = Buffer.allocUnsafe(Math.max(2 * (len + d.length), 4096));
      this.store.copy(next, 0, this.start, this.end);
      this.store = next;
      this.start = 0;
      this.end = len;
      this.owned = true;
    }
    d.copy(this.store, this.end);
    this.end += d.length;
  }

  view(): Buffer {
    return this.store.subarray(this.start, this.end);
  }

  consume(n: number): void {
    this.start += n;
    if (this.start === this.end) {
      this.store = Buffer.alloc(0);
      this.start = this.end = 0;
      this.owned = false;
    }
  }

  clear(): void {
    this.consume(this.length);
  }
}
