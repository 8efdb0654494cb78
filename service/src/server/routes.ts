/**
 * The admin port (createAdminApp, express): /buckets (admin token), /metrics and the probes.
 * Every error the service sends is JSON. The main port is ./main-port (on ./http1).
 */
import express, { type Request, type Response, type NextFunction } from 'express';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Limiter } from '../limiter/limiter';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { Authenticator } from './auth';
import type { UsageRecorder } from '../usage';
import { BadRequest, validateKeys } from './input';
import { errorReply, HEALTHY, readyReply, UNAUTHORIZED_BODY, type JsonReply, type Readiness } from './replies';


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

type Req = IncomingMessage;
type Res = ServerResponse;

const JSON_TYPE = 'application/json';

const send = (res: Res, r: JsonReply) => sendJson(res, r.status, r.body);

function sendJson(res: Res, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** 401 unless the request carries one of the tokens. True when the request may go on. */
function authorized(auth: Authenticator | undefined, req: Req, res: Res): boolean {
  if (!auth || auth.verify(req.headers.authorization)) return true;
  req.resume();
  sendJson(res, 401, UNAUTHORIZED_BODY, { 'WWW-Authenticate': 'Bearer' });
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

function baseApp(metrics: Metrics) {
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
    send(res, HEALTHY);
  });

  app.get('/readyz', async (_req: Request, res: Response) => {
    res.locals.route = '/readyz';
    send(res, await readyReply(limiter, isReady));
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
  const fail = (res: Res, err: unknown, op: string) => send(res, errorReply(err, op, logger));
  const app = baseApp(metrics);

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
