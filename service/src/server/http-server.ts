/**
 * Both ports' HTTP server: Node's (llhttp) with the protections the service needs. Request
 * heads are bounded (MAX_HEADER_BYTES, else 431); a request must arrive whole within
 * `requestTimeoutMs` (else 408); an idle keep-alive connection closes after
 * `keepAliveTimeoutMs`, and one that sends only empty lines between requests (which restart
 * Node's idle timer but start no request) after `keepAliveTimeoutMs + requestTimeoutMs`.
 * Before any handler runs, a request is refused (JSON, connection closed) when its HTTP
 * version is not 1.x (505), it has no Host in HTTP/1.1 (400), a Transfer-Encoding other than
 * chunked (501), or a declared body over `maxBodyBytes` (413, the body not read). Every error,
 * including those of the parser, is JSON.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { sendJson } from './replies';

/** Largest request head accepted (Node's default is 16 KiB; a check of 16 keys of 512 bytes, percent-encoded, is up to ~48 KiB). */
export const MAX_HEADER_BYTES = 64 * 1024;

export interface HttpTimeouts {
  /** An idle keep-alive connection closes after this (ms). */
  keepAliveTimeoutMs: number;
  /** A request (head and body) must arrive whole within this (ms) of its first byte; else 408 and closed. */
  requestTimeoutMs: number;
  /** How often the timeouts are enforced (ms). */
  checkIntervalMs: number;
}

/** Idle keep-alive connections from Envoy are kept a while (Envoy reuses its pool). */
export const DEFAULT_TIMEOUTS: HttpTimeouts = { keepAliveTimeoutMs: 65_000, requestTimeoutMs: 66_000, checkIntervalMs: 1000 };

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface HttpServer {
  server: Server;
  /**
   * Stops accepting; idle connections close now, requests in flight are answered with
   * `Connection: close`; after `forceMs` the rest are closed. Resolves when all are gone.
   */
  close(forceMs: number): Promise<void>;
}

/** When a connection last started a request (or opened), on the server's coarse clock. */
const LAST_REQUEST = Symbol('lastRequest');
type Tracked = Socket & { [LAST_REQUEST]: number };

export interface HttpServerOptions {
  maxBodyBytes: number;
  timeouts?: Partial<HttpTimeouts>;
  /** Hears about a handler that threw (the client gets a 500). */
  onError?: (err: unknown) => void;
}

export function createHttpServer(handler: Handler, opts: HttpServerOptions): HttpServer {
  const t = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const server = createServer({
    maxHeaderSize: MAX_HEADER_BYTES,
    keepAliveTimeout: t.keepAliveTimeoutMs,
    headersTimeout: t.requestTimeoutMs,
    requestTimeout: t.requestTimeoutMs,
    connectionsCheckingInterval: t.checkIntervalMs,
    // Checked by admit(), so that the refusal is JSON too.
    requireHostHeader: false,
  });
  server.on('clientError', jsonClientError);
  // A client that shuts its sending side after a request still gets the reply (then the
  // connection closes); Node's default drops the replies in flight.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;

  let now = Date.now();
  let closing = false;
  const conns = new Set<Tracked>();
  server.on('connection', (s: Tracked) => {
    s[LAST_REQUEST] = now;
    conns.add(s);
    s.once('close', () => conns.delete(s));
  });
  const idleLimit = t.keepAliveTimeoutMs + t.requestTimeoutMs;
  const sweep = setInterval(() => {
    now = Date.now();
    for (const s of conns) if (now - s[LAST_REQUEST] > idleLimit) s.destroy();
  }, t.checkIntervalMs);
  sweep.unref();

  const serve = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean) => {
    (req.socket as Tracked)[LAST_REQUEST] = now;
    if (closing) res.shouldKeepAlive = false;
    if (!admit(req, res, opts.maxBodyBytes)) return;
    if (expectsContinue) res.writeContinue();
    try {
      handler(req, res);
    } catch (err) {
      opts.onError?.(err);
      sendJson(res, 500, { error: 'internal error' }, undefined, true);
    }
  };
  server.on('request', (req: IncomingMessage, res: ServerResponse) => serve(req, res, false));
  // Expect: 100-continue: the 100 only once the request is admitted (a refused body is not asked for).
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => serve(req, res, true));

  return {
    server,
    close(forceMs: number): Promise<void> {
      closing = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of conns) {
        const pending = (s as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
        if (pending && !pending.headersSent) pending.shouldKeepAlive = false;
      }
      server.closeIdleConnections();
      // Connections that finish a reply meanwhile close right after it.
      const idle = setInterval(() => server.closeIdleConnections(), 100);
      const force = setTimeout(() => server.closeAllConnections(), forceMs);
      return done.finally(() => {
        clearInterval(idle);
        clearTimeout(force);
        clearInterval(sweep);
      });
    },
  };
}

/** The checks every request passes before its handler; false when it was refused (answered). */
function admit(req: IncomingMessage, res: ServerResponse, maxBodyBytes: number): boolean {
  const refuse = (status: number, error: string) => {
    sendJson(res, status, { error }, undefined, true);
    return false;
  };
  if (req.httpVersionMajor !== 1) return refuse(505, `HTTP/${req.httpVersion} is not supported (HTTP/1.0 and 1.1 are)`);
  const h = req.headers;
  if (h.host === undefined && req.httpVersionMinor === 1) return refuse(400, 'missing Host header');
  const te = h['transfer-encoding'];
  if (te !== undefined && te.toLowerCase() !== 'chunked') return refuse(501, `unsupported Transfer-Encoding ${JSON.stringify(te.slice(0, 100))}`);
  const length = h['content-length'];
  if (length !== undefined && Number(length) > maxBodyBytes) return refuse(413, `body larger than ${maxBodyBytes} bytes`);
  return true;
}

/**
 * Errors Node's HTTP parser answers itself (a malformed request line or header, raw non-ASCII
 * bytes in the URL, a head over the limit, a request not received in time): JSON too, so that
 * the plugin sees "refused", not "unavailable". When a reply to an earlier request is still
 * due on the connection, no reply can be put in order: the connection is closed.
 */
export function jsonClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const pending = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
  // Bytes after a request that closes the connection (`Connection: close`, HTTP/1.0): ignored,
  // never a request; the connection closes once the reply is sent.
  if (err.code === 'HPE_CLOSED_CONNECTION' && pending && !pending.writableFinished) return;
  if (err.code === 'ECONNRESET' || !socket.writable || (pending && (pending.headersSent || pending.req?.complete))) {
    socket.destroy();
    return;
  }
  const [status, error] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? ['431 Request Header Fields Too Large', 'request headers too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? ['408 Request Timeout', 'request not received in time']
        : ['400 Bad Request', `malformed HTTP request (${err.code ?? 'parse error'})`];
  const body = JSON.stringify({ error });
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
