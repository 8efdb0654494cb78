/**
 * HTTP layer. Main port: the two protocol routes (hot path, plain Node handlers, bearer token
 * when configured) and the probes (/healthz, /readyz). Admin port (createAdminApp): /buckets
 * (admin token), /metrics and the probes again. Every error the service sends is JSON.
 */
import express, { type Request, type Response, type NextFunction } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppliedCharge, Limiter } from '../limiter/limiter';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { StoreError } from '../store/types';
import type { Authenticator } from './auth';
import type { UsageRecorder } from '../usage';
import { BadRequest, MAX_BODY_BYTES, parseKeysParam, parseReserveParam, parseUpdateBody, validateKeys } from './input';

export interface HttpDeps {
  limiter: Limiter;
  metrics: Metrics;
  logger: Logger;
  /** Bearer tokens for the protocol routes; undefined = open (as the reference). */
  auth?: Authenticator;
  /** Bearer tokens for /buckets on the admin port; undefined = /buckets disabled (403). */
  adminAuth?: Authenticator;
  /** Usage records (USAGE_RECORDS): one line per applied update. */
  usage?: UsageRecorder;
  /** What /metrics serves (default: `metrics.registry`); the cluster primary serves its workers' metrics, aggregated. */
  metricsSource?: { contentType: string; metrics(): Promise<string> };
}

/** What /readyz reports beyond reachability (e.g. a Redis eviction-policy warning). */
export interface Readiness {
  warnings?: string[];
}

type Req = IncomingMessage;
type Res = ServerResponse;

const JSON_TYPE = 'application/json';
const CHECK_PATH = '/ratelimit';
const UPDATE_PATH = '/update_ratelimit_record';
const JSON_CT = /^application\/json\s*(;|$)/i;

function sendJson(res: Res, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

const UNAUTHORIZED = { error: 'missing or invalid bearer token (Authorization: Bearer <token>)' };

/** 401 unless the request carries one of the tokens. True when the request may go on. */
function authorized(auth: Authenticator | undefined, req: Req, res: Res): boolean {
  if (!auth || auth.verify(req.headers.authorization)) return true;
  req.resume();
  sendJson(res, 401, UNAUTHORIZED, { 'WWW-Authenticate': 'Bearer' });
  return false;
}

/**
 * Errors Node's HTTP parser answers itself (malformed request line, raw non-ASCII bytes in the
 * URL, headers over the limit): JSON too, so that the plugin sees "refused", not "unavailable".
 */
export function jsonClientError(err: NodeJS.ErrnoException & { bytesParsed?: number }, socket: import('node:stream').Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable || (socket as any)._httpMessage?.headersSent) {
    socket.destroy();
    return;
  }
  const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
  const status = tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request';
  const body = JSON.stringify({ error: tooLarge ? 'request headers too large' : `malformed HTTP request (${err.code ?? 'parse error'})` });
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Reads the body up to MAX_BODY_BYTES. */
function readBody(req: Req): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (declared > MAX_BODY_BYTES) {
      reject(new BadRequest(`body larger than ${MAX_BODY_BYTES} bytes`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        failed = true;
        reject(new BadRequest(`body larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('close', () => {
      if (!failed && !req.complete) {
        failed = true;
        reject(new BadRequest('request body incomplete'));
      }
    });
    req.on('end', () => {
      if (!failed) resolve(chunks.length === 1 ? chunks[0].toString('utf8') : Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (e) => {
      if (!failed) reject(e);
    });
  });
}

/** The query parameters (first occurrence wins in get(); `+` is a space, as Go's Query().Get). */
function queryParams(url: string): URLSearchParams | undefined {
  const q = url.indexOf('?');
  return q < 0 ? undefined : new URLSearchParams(url.slice(q + 1));
}

/** The node request listener: protocol fast path, then express. */
export function createHttpApp(deps: HttpDeps, isReady: () => Promise<Readiness | void>, debug = false) {
  const { limiter, metrics, logger, auth } = deps;

  const observe = (req: Req, route: string, status: number, start: bigint) => {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    metrics.requestDuration.observe({ route, status: String(status) }, seconds);
    // Access log (no bodies, no query strings: keys may identify users) at debug level.
    if (debug) logger.debug('request', { method: req.method, route, status, ms: Math.round(seconds * 1e6) / 1e3 });
  };

  function fail(res: Res, err: unknown, op: string): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof BadRequest) {
      sendJson(res, 400, { error: err.message });
    } else if (err instanceof StoreError) {
      logger.warn('store error', { op, err: err.message });
      sendJson(res, 503, { error: 'rate-limit store unavailable' });
    } else {
      const status = (err as { status?: number })?.status;
      if (status && status >= 400 && status < 500) {
        sendJson(res, 400, { error: (err as Error).message ?? 'bad request' });
        return;
      }
      logger.error('internal error', { op, err: err as Error });
      sendJson(res, 500, { error: 'internal error' });
    }
  }

  async function check(req: Req, res: Res, start: bigint): Promise<void> {
    try {
      if (!authorized(auth, req, res)) return observe(req, CHECK_PATH, 401, start);
      const q = queryParams(req.url!);
      const keys = parseKeysParam(q?.get('ratelimit_keys') ?? undefined);
      const reserve = parseReserveParam(q?.get('reserve'));
      sendJson(res, 200, await limiter.check(keys, reserve));
    } catch (err) {
      fail(res, err, 'check');
    }
    observe(req, CHECK_PATH, res.statusCode, start);
  }

  async function update(req: Req, res: Res, start: bigint): Promise<void> {
    try {
      if (!authorized(auth, req, res)) return observe(req, UPDATE_PATH, 401, start);
      const ct = req.headers['content-type'];
      // No content type is accepted (treated as JSON); any other than JSON is refused.
      if (ct !== undefined && !JSON_CT.test(ct)) {
        req.resume();
        throw new BadRequest(`Content-Type must be application/json, got ${JSON.stringify(ct.slice(0, 100))}`);
      }
      const body = parseUpdateBody(await readBody(req));
      const { keys, usage, reserved, estimated, reservationId, requestId } = body;
      const recorder = deps.usage;
      const onApplied = recorder ? (charges: AppliedCharge[]) => recorder.record(body, charges) : undefined;
      const charged = await limiter.update(keys, usage, { reserved, estimated, reservationId, requestId, onApplied });
      // Counts only: keys may identify users.
      if (estimated) logger.debug('estimated report', { keys: keys.length, ruled: charged, reserved_tokens: reserved });
      // The reference replies 200 with an empty body.
      res.writeHead(200, { 'Content-Length': 0 });
      res.end();
    } catch (err) {
      fail(res, err, 'update');
    }
    observe(req, UPDATE_PATH, res.statusCode, start);
  }

  const app = baseApp(metrics, fail);
  // Protocol routes with a method other than the protocol's: 405 (JSON). Exact paths only:
  // `/ratelimit/` or `/RateLimit` are 404, as in the reference's Go mux.
  app.all([CHECK_PATH, UPDATE_PATH], (req: Request, res: Response) => {
    res.locals.route = req.path;
    res.setHeader('Allow', req.path === CHECK_PATH ? 'GET' : 'POST');
    sendJson(res, 405, { error: `method ${req.method} not allowed` });
  });
  probes(app, limiter, isReady);
  finish(app, fail);

  return (req: Req, res: Res): void => {
    const url = req.url ?? '/';
    const start = process.hrtime.bigint();
    if (req.method === 'GET' && url.startsWith(CHECK_PATH) && (url.length === CHECK_PATH.length || url[CHECK_PATH.length] === '?')) {
      void check(req, res, start);
    } else if (req.method === 'POST' && (url === UPDATE_PATH || url.startsWith(UPDATE_PATH + '?'))) {
      void update(req, res, start);
    } else {
      app(req as Request, res as Response);
    }
  };
}

function baseApp(metrics: Metrics, _fail: unknown) {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('strict routing', true);
  app.set('case sensitive routing', true);
  app.use((req: Request, res: Response, next: NextFunction) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      metrics.requestDuration.observe({ route: (res.locals.route as string) ?? 'other', status: String(res.statusCode) }, seconds);
    });
    next();
  });
  return app;
}

function probes(app: express.Express, limiter: Limiter, isReady: () => Promise<Readiness | void>): void {
  app.get('/healthz', (_req: Request, res: Response) => {
    res.locals.route = '/healthz';
    sendJson(res, 200, { status: 'ok' });
  });

  app.get('/readyz', async (_req: Request, res: Response) => {
    res.locals.route = '/readyz';
    try {
      const r = await isReady();
      const body: Record<string, unknown> = { status: 'ready', store: limiter.store.kind };
      if (r && r.warnings?.length) body.warnings = r.warnings;
      sendJson(res, 200, body);
    } catch (err) {
      sendJson(res, 503, { status: 'not ready', store: limiter.store.kind, error: (err as Error).message });
    }
  });
}

function finish(app: express.Express, fail: (res: Res, err: unknown, op: string) => void): void {
  app.use((_req: Request, res: Response) => sendJson(res, 404, { error: 'not found' }));
  // Anything express itself throws (e.g. malformed URL): JSON, never a crash.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => fail(res, err, 'express'));
}

/**
 * The admin port: /buckets/{key} (needs an admin token; disabled without ADMIN_TOKENS),
 * /metrics, /healthz, /readyz. Not for the Kubernetes Service.
 */
export function createAdminApp(deps: HttpDeps, isReady: () => Promise<Readiness | void>) {
  const { limiter, metrics, logger, adminAuth } = deps;
  const fail = (res: Res, err: unknown, op: string) => {
    if (err instanceof BadRequest) sendJson(res, 400, { error: err.message });
    else if (err instanceof StoreError) {
      logger.warn('store error', { op, err: err.message });
      sendJson(res, 503, { error: 'rate-limit store unavailable' });
    } else {
      const status = (err as { status?: number })?.status;
      if (status && status >= 400 && status < 500) sendJson(res, 400, { error: (err as Error).message ?? 'bad request' });
      else {
        logger.error('internal error', { op, err: err as Error });
        sendJson(res, 500, { error: 'internal error' });
      }
    }
  };
  const app = baseApp(metrics, fail);

  // Read-only bucket view for operators: GET /buckets/<url-encoded key>
  app.get(/^\/buckets\/(.+)$/, async (req: Request, res: Response) => {
    res.locals.route = '/buckets';
    if (!adminAuth) {
      sendJson(res, 403, { error: '/buckets is disabled: set ADMIN_TOKENS to enable it' });
      return;
    }
    if (!authorized(adminAuth, req, res)) return;
    try {
      let key: string;
      try {
        key = decodeURIComponent(req.path.slice('/buckets/'.length));
      } catch {
        throw new BadRequest('key is not valid percent-encoding');
      }
      const [k] = validateKeys([key]);
      sendJson(res, 200, await limiter.peek(k));
    } catch (err) {
      fail(res, err, 'peek');
    }
  });

  app.get('/metrics', async (_req: Request, res: Response) => {
    res.locals.route = '/metrics';
    try {
      const source = deps.metricsSource ?? metrics.registry;
      const text = await source.metrics();
      res.writeHead(200, { 'Content-Type': source.contentType });
      res.end(text);
    } catch (err) {
      fail(res, err, 'metrics');
    }
  });

  probes(app, limiter, isReady);
  finish(app, fail);
  return app;
}
