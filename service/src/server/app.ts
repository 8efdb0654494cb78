import express, { type Request, type Response, type NextFunction } from 'express';
import type { Server } from 'node:http';
import type { Limiter } from '../limiter/limiter';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import { StoreError } from '../store/types';
import { BadRequest, MAX_BODY_BYTES, parseKeysParam, parseUpdateBody, validateKeys } from './input';

export interface HttpDeps {
  limiter: Limiter;
  metrics: Metrics;
  logger: Logger;
}

const JSON_TYPE = 'application/json';

function sendJson(res: Response, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Reads the body up to MAX_BODY_BYTES. */
function readBody(req: Request): Promise<string> {
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

/** The express application: protocol routes, operations routes. */
export function createHttpApp(deps: HttpDeps, isReady: () => Promise<void>, debug = false) {
  const { limiter, metrics, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  // Request latency histogram (route is the fixed route name, never the raw path).
  app.use((req: Request, res: Response, next: NextFunction) => {
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      const route = (res.locals.route as string) ?? 'other';
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      metrics.requestDuration.observe({ route, status: String(res.statusCode) }, seconds);
      // Access log (no bodies, no query strings: keys may identify users) at debug level.
      if (debug) logger.debug('request', { method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1e6) / 1e3 });
    });
    next();
  });

  app.get('/ratelimit', async (req: Request, res: Response) => {
    res.locals.route = '/ratelimit';
    try {
      const keys = parseKeysParam(req.query.ratelimit_keys);
      const r = await limiter.check(keys);
      sendJson(res, 200, r);
    } catch (err) {
      fail(res, err, 'check');
    }
  });

  app.post('/update_ratelimit_record', async (req: Request, res: Response) => {
    res.locals.route = '/update_ratelimit_record';
    try {
      const ct = req.headers['content-type'];
      // No content type is accepted (treated as JSON); any other than JSON is refused.
      if (ct !== undefined && !/^application\/json\s*(;|$)/i.test(ct)) {
        throw new BadRequest(`Content-Type must be application/json, got ${JSON.stringify(ct.slice(0, 100))}`);
      }
      const body = await readBody(req);
      const { keys, usage } = parseUpdateBody(body);
      await limiter.update(keys, usage);
      // The reference replies 200 with an empty body.
      res.writeHead(200, { 'Content-Length': 0 });
      res.end();
    } catch (err) {
      fail(res, err, 'update');
    }
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

  function fail(res: Response, err: unknown, op: string): void {
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

  return app;
}

export type { Server };
