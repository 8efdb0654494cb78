/**
 * HTTP layer. The two protocol routes (hot path) are plain Node handlers dispatched before
 * express; express serves the operations routes (/buckets, /healthz, /readyz, /metrics).
 */
import express, { type Request, type Response, type NextFunction } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Limiter } from '../limiter/limiter';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { StoreError } from '../store/types';
import { BadRequest, MAX_BODY_BYTES, parseKeysParam, parseReserveParam, parseUpdateBody, validateKeys } from './input';

export interface HttpDeps {
  limiter: Limiter;
  metrics: Metrics;
  logger: Logger;
}

type Req = IncomingMessage;
type Res = ServerResponse;

const JSON_TYPE = 'application/json';
const CHECK_PATH = '/ratelimit';
const UPDATE_PATH = '/update_ratelimit_record';
const JSON_CT = /^application\/json\s*(;|$)/i;

function sendJson(res: Res, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
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
export function createHttpApp(deps: HttpDeps, isReady: () => Promise<void>, debug = false) {
  const { limiter, metrics, logger } = deps;

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
      const ct = req.headers['content-type'];
      // No content type is accepted (treated as JSON); any other than JSON is refused.
      if (ct !== undefined && !JSON_CT.test(ct)) {
        req.resume();
        throw new BadRequest(`Content-Type must be application/json, got ${JSON.stringify(ct.slice(0, 100))}`);
      }
      const { keys, usage, reserved, estimated } = parseUpdateBody(await readBody(req));
      const charged = await limiter.update(keys, usage, { reserved, estimated });
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

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  app.use((req: Request, res: Response, next: NextFunction) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => observe(req, (res.locals.route as string) ?? 'other', res.statusCode, start));
    next();
  });

  // Protocol routes with a method other than the protocol's: 405 (JSON).
  app.all([CHECK_PATH, UPDATE_PATH], (req: Request, res: Response) => {
    res.locals.route = req.path;
    res.setHeader('Allow', req.path === CHECK_PATH ? 'GET' : 'POST');
    sendJson(res, 405, { error: `method ${req.method} not allowed` });
  });

  // Read-only bucket view for operators: GET /buckets/<url-encoded key>
  app.get(/^\/buckets\/(.+)$/, async (req: Request, res: Response) => {
    res.locals.route = '/buckets';
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

  app.get('/healthz', (_req: Request, res: Response) => {
    res.locals.route = '/healthz';
    sendJson(res, 200, { status: 'ok' });
  });

  app.get('/readyz', async (_req: Request, res: Response) => {
    res.locals.route = '/readyz';
    try {
      await isReady();
      sendJson(res, 200, { status: 'ready', store: limiter.store.kind });
    } catch (err) {
      sendJson(res, 503, { status: 'not ready', store: limiter.store.kind, error: (err as Error).message });
    }
  });

  app.get('/metrics', async (_req: Request, res: Response) => {
    res.locals.route = '/metrics';
    try {
      const text = await metrics.registry.metrics();
      res.writeHead(200, { 'Content-Type': metrics.registry.contentType });
      res.end(text);
    } catch (err) {
      fail(res, err, 'metrics');
    }
  });

  app.use((_req: Request, res: Response) => sendJson(res, 404, { error: 'not found' }));

  // Anything express itself throws (e.g. malformed URL): JSON, never a crash.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => fail(res, err, 'express'));

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
