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
import { ChunkedDecoder, HttpError, parseHead, Pending, type Head } from './http1-parse';

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

/** The statuses the main port sends. */
const REASONS: Record<number, string> = {
  200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 405: 'Method Not Allowed',
  431: 'Request Header Fields Too Large', 500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable',
};

const CRLFCRLF = Buffer.from('\r\n\r\n');

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
  private readonly pending = new Pending();
  /** Where the search for the end of the head goes on (bytes of `pending` already searched). */
  private scanned = 0;
  private head: Head | undefined;
  private chunked: ChunkedDecoder | undefined;
  private busy = false;
  private ended = false;
  /** The client shut its side: answer what it sent, then close. */
  private peerEnded = false;
  private paused = false;
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
    socket.on('drain', () => this.flow());
    socket.on('end', () => {
      this.peerEnded = true;
      if (!this.busy) this.finish();
    });
  }

  get idle(): boolean {
    return !this.busy && this.started === 0;
  }

  /** Bytes received and not parsed yet. */
  get buffered(): number {
    return this.pending.length;
  }

  private onData(d: Buffer): void {
    this.active = this.server.now;
    if (this.ended) return;
    this.pending.append(d);
    if (this.started === 0) this.started = this.server.now;
    if (this.busy) this.flow();
    else this.parse();
  }

  /**
   * Stops reading while the client does not read our replies, or sends far ahead of them
   * (pipelining while a request is in flight): what is buffered stays bounded.
   */
  private flow(): void {
    const o = this.server.options;
    const stop = this.socket.writableNeedDrain || (this.busy && this.pending.length > o.maxHeaderBytes + 2 * o.maxBodyBytes);
    if (stop && !this.paused) this.socket.pause();
    else if (!stop && this.paused) this.socket.resume();
    this.paused = stop;
  }

  /** Parses and answers the requests received, in order, until one is in flight or bytes run out. */
  private parse(): void {
    const o = this.server.options;
    try {
      while (!this.busy && !this.ended && this.pending.length > 0) {
        if (this.head === undefined) {
          let buf = this.pending.view();
          // An empty line before a request line is ignored (RFC 9112 §2.2).
          let skip = 0;
          while (buf.length >= skip + 2 && buf[skip] === 13 && buf[skip + 1] === 10) skip += 2;
          if (skip > 0) {
            this.pending.consume(skip);
            this.scanned = 0;
            buf = this.pending.view();
            if (buf.length === 0) break;
          }
          const end = buf.indexOf(CRLFCRLF, Math.max(0, this.scanned - 3));
          if (end < 0 || end > o.maxHeaderBytes) {
            if (end > o.maxHeaderBytes || buf.length > o.maxHeaderBytes) throw new HttpError(431, 'request headers too large');
            this.scanned = buf.length;
            break;
          }
          this.head = parseHead(buf.toString('latin1', 0, end));
          this.pending.consume(end + 4);
          this.scanned = 0;
          if (this.head.length > o.maxBodyBytes) throw new HttpError(400, `body larger than ${o.maxBodyBytes} bytes`);
          if (this.head.length < 0) this.chunked = new ChunkedDecoder(o.maxBodyBytes, o.maxHeaderBytes);
          if (this.head.expectContinue && this.head.length !== 0 && this.pending.length === 0) {
            this.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
          }
        }
        const h = this.head;
        let body: string;
        if (this.chunked === undefined) {
          if (this.pending.length < h.length) break;
          body = h.length === 0 ? '' : this.pending.view().toString('utf8', 0, h.length);
          this.pending.consume(h.length);
        } else {
          const c = this.chunked.feed(this.pending.view());
          if (c === undefined) break;
          body = c.body.toString('utf8');
          this.pending.consume(c.used);
          this.chunked = undefined;
        }
        this.head = undefined;
        this.started = this.pending.length > 0 ? this.server.now : 0;
        const out = this.call(h, body);
        if (out instanceof Promise) {
          this.busy = true;
          out.then(
            (r) => this.answered(h, r),
            (err) => this.answered(h, this.internal(err)),
          );
          break;
        }
        this.send(h, out);
      }
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      this.fail(err);
      return;
    }
    if (this.peerEnded && !this.busy && !this.ended) this.finish();
    this.flow();
  }

  private call(h: Head, body: string): HttpReply | Promise<HttpReply> {
    try {
      return this.server.handler({ method: h.method, url: h.url, headers: h.headers, body });
    } catch (err) {
      return this.internal(err);
    }
  }

  private internal(err: unknown): HttpReply {
    this.server.options.onError?.(err);
    return { status: 500, json: '{"error":"internal error"}' };
  }

  /** A reply that was in flight: sent, then the requests that arrived meanwhile. */
  private answered(h: Head, r: HttpReply): void {
    this.busy = false;
    if (this.socket.destroyed) return;
    this.send(h, r);
    this.parse();
  }

  private send(h: Head, r: HttpReply): void {
    const keepAlive = h.keepAlive && !this.server.closing;
    this.socket.write(serialize(r, keepAlive, h.http10, h.method === 'HEAD', this.server.date));
    if (!keepAlive) this.finish();
  }

  /** Ends our side; nothing more is read or answered. */
  private finish(): void {
    this.ended = true;
    this.pending.clear();
    this.socket.end();
  }

  /** Answers a request the connection cannot go on from, and closes it. */
  private fail(err: HttpError): void {
    const r: HttpReply = { status: err.status, json: JSON.stringify({ error: err.message }) };
    this.socket.write(serialize(r, false, false, false, this.server.date));
    this.head = undefined;
    this.chunked = undefined;
    this.finish();
  }

  /** Closes the connection if no request is in flight (shutdown). */
  closeIfIdle(): void {
    if (this.idle && !this.ended) this.finish();
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

  /** Open connections and the bytes they hold unparsed (tests, debugging). */
  stats(): { connections: number; buffered: number } {
    let buffered = 0;
    for (const c of this.conns) buffered += c.buffered;
    return { connections: this.conns.size, buffered };
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
