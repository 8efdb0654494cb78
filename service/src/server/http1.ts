/**
 * A small HTTP/1.1 server for the main port (the protocol routes and the probes).
 *
 * Why not node:http: on the hot path Node's HTTP machinery (parser callbacks, IncomingMessage,
 * ServerResponse, stream events) costs about 3.5 µs of CPU per request, a fifth of what the
 * service spends on a check; on a 2-core pod shared with Redis and the load that is throughput
 * lost (service/README.md, "Several workers"). The main port needs little of HTTP: requests
 * with small bodies, answered whole. What it does implement, strictly (anything else is a 400
 * with a JSON error and the connection closed):
 * - request line `METHOD SP target SP HTTP/1.0|1.1`, the target printable ASCII;
 * - header lines `name: value` (name a token; value without CR, LF or other controls); no
 *   line folding, no bare LF; at most `maxHeaderBytes` of head (else 431) and MAX_HEADERS lines;
 * - `Host` required in HTTP/1.1;
 * - bodies by `Content-Length` or `Transfer-Encoding: chunked` (both at once: 400), at most
 *   `maxBodyBytes` (else 400, as every other bad input of the protocol); `Expect: 100-continue`;
 * - keep-alive (HTTP/1.1 by default, HTTP/1.0 on request), pipelined requests answered in order;
 * - an idle connection closes after `keepAliveMs`; a request head or body that takes longer
 *   than `requestTimeoutMs` to arrive closes it too (slow clients cannot hold connections).
 */
import { createServer, type Server, type Socket } from 'node:net';

export interface HttpRequest {
  method: string;
  /** The request target as sent (path and query). */
  url: string;
  /** Lower-case names. A repeated header: the first value (these routes read each once). */
  headers: Record<string, string>;
  /** The body as UTF-8 text ('' without one). */
  body: string;
}

export interface HttpReply {
  status: number;
  /** JSON text (sent as application/json); undefined: no body. */
  json?: string;
  headers?: Record<string, string>;
}

export type HttpHandler = (req: HttpRequest) => HttpReply | Promise<HttpReply>;

export interface Http1Options {
  maxHeaderBytes: number;
  maxBodyBytes: number;
  /** Idle keep-alive connections close after this (ms). */
  keepAliveMs: number;
  /** A request must arrive whole within this (ms) of its first byte. */
  requestTimeoutMs: number;
  /** Called when the handler throws (the client gets a 500). */
  onError?: (err: unknown) => void;
}

/** Most header lines in a request head. */
export const MAX_HEADERS = 100;

const REASONS: Record<number, string> = {
  100: 'Continue', 200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found',
  405: 'Method Not Allowed', 408: 'Request Timeout', 413: 'Content Too Large', 431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable',
};

const CRLFCRLF = Buffer.from('\r\n\r\n');
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/;
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*$/;

/** A request the connection cannot go on from: answered with `status` and closed. */
class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

interface Head {
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
  const headers: Record<string, string> = {};
  let contentLength: string | undefined;
  let te: string | undefined;
  for (let i = 1; i < lines.length; i++) {
    const h = HEADER_LINE.exec(lines[i]);
    if (!h) throw new HttpError(400, 'malformed HTTP header line');
    const name = h[1].toLowerCase();
    const value = h[2];
    if (name === 'content-length') {
      if (contentLength !== undefined && contentLength !== value) throw new HttpError(400, 'conflicting Content-Length headers');
      contentLength = value;
    } else if (name === 'transfer-encoding') {
      te = te === undefined ? value : `${te}, ${value}`;
    }
    if (!(name in headers)) headers[name] = value;
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
  const conn = headers.connection?.toLowerCase() ?? '';
  const keepAlive = http10 ? /(^|,)\s*keep-alive\s*(,|$)/.test(conn) : !/(^|,)\s*close\s*(,|$)/.test(conn);
  const expectContinue = !http10 && headers.expect?.toLowerCase() === '100-continue';
  return { method: m[1], url: m[2], headers, keepAlive, http10, length, expectContinue };
}

/**
 * Decodes a chunked body from `buf`. Returns the body and the bytes consumed (trailers
 * included and ignored), or undefined while incomplete.
 */
export function decodeChunked(buf: Buffer, maxBody: number, maxTrailer: number): { body: Buffer; used: number } | undefined {
  const parts: Buffer[] = [];
  let size = 0;
  let at = 0;
  for (;;) {
    const eol = buf.indexOf('\r\n', at, 'latin1');
    if (eol < 0) {
      if (buf.length - at > 64) throw new HttpError(400, 'malformed chunk size');
      return undefined;
    }
    const m = /^([0-9A-Fa-f]{1,8})(;[\t\x20-\x7e]*)?$/.exec(buf.toString('latin1', at, eol));
    if (!m) throw new HttpError(400, 'malformed chunk size');
    const n = parseInt(m[1], 16);
    at = eol + 2;
    if (n === 0) break;
    size += n;
    if (size > maxBody) throw new HttpError(400, `body larger than ${maxBody} bytes`);
    if (buf.length < at + n + 2) return undefined;
    if (buf[at + n] !== 13 || buf[at + n + 1] !== 10) throw new HttpError(400, 'malformed chunk');
    parts.push(buf.subarray(at, at + n));
    at += n + 2;
  }
  // Trailer section: header lines up to an empty line.
  for (;;) {
    const eol = buf.indexOf('\r\n', at, 'latin1');
    if (eol < 0) {
      if (buf.length - at > maxTrailer) throw new HttpError(431, 'request headers too large');
      return undefined;
    }
    if (eol === at) return { body: parts.length === 1 ? parts[0] : Buffer.concat(parts), used: eol + 2 };
    if (!HEADER_LINE.test(buf.toString('latin1', at, eol))) throw new HttpError(400, 'malformed trailer line');
    at = eol + 2;
  }
}

/** The reply as bytes on the wire. */
function serialize(reply: HttpReply, keepAlive: boolean, http10: boolean, head: boolean, date: string): string {
  const body = reply.json ?? '';
  let s = `HTTP/1.1 ${reply.status} ${REASONS[reply.status] ?? 'Unknown'}\r\nDate: ${date}\r\n`;
  if (reply.json !== undefined) s += 'Content-Type: application/json\r\n';
  s += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  if (reply.headers) for (const k in reply.headers) s += `${k}: ${reply.headers[k]}\r\n`;
  if (!keepAlive) s += 'Connection: close\r\n';
  else if (http10) s += 'Connection: keep-alive\r\n';
  return s + '\r\n' + (head ? '' : body);
}

/** One client connection: parses requests in order and answers each before the next. */
class Connection {
  private buf: Buffer | undefined;
  private head: Head | undefined;
  private busy = false;
  private ended = false;
  /** The client shut its side: answer what it sent, then close. */
  private peerEnded = false;
  /** When the request now arriving began (the server's coarse clock; 0: between requests). */
  started = 0;
  /** Last activity (coarse clock). */
  active: number;

  constructor(
    readonly socket: Socket,
    private readonly server: Http1Server,
  ) {
    this.active = server.now;
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => socket.destroy());
    socket.on('end', () => {
      this.peerEnded = true;
      if (!this.busy) this.finish();
    });
  }

  /** Ends our side once nothing more can be answered. */
  private finish(): void {
    this.ended = true;
    this.socket.end();
  }

  get idle(): boolean {
    return !this.busy && this.started === 0;
  }

  private onData(d: Buffer): void {
    this.active = this.server.now;
    if (this.ended) return;
    this.buf = this.buf === undefined || this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    if (this.started === 0) this.started = this.server.now;
    if (!this.busy) this.parse();
  }

  private parse(): void {
    const o = this.server.options;
    try {
      while (!this.busy && !this.ended && this.buf !== undefined && this.buf.length > 0) {
        let buf = this.buf;
        if (this.head === undefined) {
          // An empty line before a request line is ignored (RFC 9112 §2.2).
          while (buf.length >= 2 && buf[0] === 13 && buf[1] === 10) buf = buf.subarray(2);
          this.buf = buf;
          const end = buf.indexOf(CRLFCRLF);
          if (end < 0 || end > o.maxHeaderBytes) {
            if (end > o.maxHeaderBytes || buf.length > o.maxHeaderBytes) throw new HttpError(431, 'request headers too large');
            return;
          }
          this.head = parseHead(buf.toString('latin1', 0, end));
          this.buf = buf = buf.subarray(end + 4);
          if (this.head.length > o.maxBodyBytes) throw new HttpError(400, `body larger than ${o.maxBodyBytes} bytes`);
          if (this.head.expectContinue && this.head.length !== 0 && buf.length === 0) {
            this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
          }
        }
        const h = this.head;
        let body: Buffer;
        if (h.length >= 0) {
          if (buf.length < h.length) return;
          body = buf.subarray(0, h.length);
          this.buf = buf.subarray(h.length);
        } else {
          const c = decodeChunked(buf, o.maxBodyBytes, o.maxHeaderBytes);
          if (c === undefined) return;
          body = c.body;
          this.buf = buf.subarray(c.used);
        }
        this.head = undefined;
        this.started = this.buf.length > 0 ? this.server.now : 0;
        this.dispatch(h, body.length === 0 ? '' : body.toString('utf8'));
      }
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      this.fail(err);
    }
  }

  private dispatch(h: Head, body: string): void {
    this.busy = true;
    let out: HttpReply | Promise<HttpReply>;
    try {
      out = this.server.handler({ method: h.method, url: h.url, headers: h.headers, body });
    } catch (err) {
      out = this.internal(err);
    }
    if (out instanceof Promise) out.then((r) => this.reply(h, r), (err) => this.reply(h, this.internal(err)));
    else this.reply(h, out);
  }

  private internal(err: unknown): HttpReply {
    this.server.options.onError?.(err);
    return { status: 500, json: '{"error":"internal error"}' };
  }

  private reply(h: Head, r: HttpReply): void {
    this.busy = false;
    if (this.socket.destroyed) return;
    const keepAlive = h.keepAlive && !this.server.closing;
    this.socket.write(serialize(r, keepAlive, h.http10, h.method === 'HEAD', this.server.date));
    if (!keepAlive) {
      this.ended = true;
      this.socket.end();
      return;
    }
    if (this.buf !== undefined && this.buf.length > 0) this.parse();
    if (this.peerEnded && !this.busy) this.finish();
  }

  /** Answers a request the connection cannot go on from, and closes it. */
  private fail(err: HttpError): void {
    this.ended = true;
    this.head = undefined;
    this.buf = undefined;
    const r: HttpReply = { status: err.status, json: JSON.stringify({ error: err.message }) };
    this.socket.end(serialize(r, false, false, false, this.server.date));
  }

  /** Closes the connection if no request is in flight (shutdown). */
  closeIfIdle(): void {
    if (this.idle) this.socket.end();
  }
}

/** The server: a net.Server plus the connections' clock and timeouts. */
export class Http1Server {
  readonly server: Server;
  private readonly conns = new Set<Connection>();
  private readonly timer: NodeJS.Timeout;
  /** A coarse clock (ms), advanced every 250 ms: timeouts need no timer per request. */
  now = Date.now();
  date = new Date().toUTCString();
  closing = false;

  constructor(
    readonly handler: HttpHandler,
    readonly options: Http1Options,
  ) {
    this.server = createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
      if (this.closing) {
        socket.destroy();
        return;
      }
      const c = new Connection(socket, this);
      this.conns.add(c);
      socket.on('close', () => this.conns.delete(c));
    });
    this.timer = setInterval(() => this.tick(), 250);
    this.timer.unref();
  }

  private tick(): void {
    this.now = Date.now();
    this.date = new Date(this.now).toUTCString();
    for (const c of this.conns) {
      if (c.started !== 0 && this.now - c.started > this.options.requestTimeoutMs) c.socket.destroy();
      else if (c.idle && this.now - c.active > this.options.keepAliveMs) c.socket.destroy();
    }
  }

  /**
   * Stops accepting; idle connections close now, busy ones after their reply (sent with
   * `Connection: close`); after `forceMs` the rest are destroyed. Resolves when all are gone.
   */
  close(forceMs: number): Promise<void> {
    this.closing = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.conns) c.closeIfIdle();
    const idle = setInterval(() => {
      for (const c of this.conns) c.closeIfIdle();
    }, 100);
    const force = setTimeout(() => {
      for (const c of this.conns) c.socket.destroy();
    }, forceMs);
    return done.finally(() => {
      clearInterval(idle);
      clearTimeout(force);
      clearInterval(this.timer);
    });
  }
}
