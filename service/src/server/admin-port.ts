/**
 * The admin port (createAdminApp, express): /buckets (admin token), /metrics and the probes.
 * Not for the Kubernetes Service. The main port is ./main-port.
 */
import express, { type Request, type Response, type NextFunction } from 'express';
import type { ServerResponse } from 'node:http';
import { authorized } from './auth';
import type { HttpDeps } from './deps';
import { BadRequest, validateKeys } from './input';
import { errorReply, NOT_FOUND, probeReply, sendJson, sendReply, type Readiness } from './replies';
import { RequestTimer } from './timing';

/**
 * The admin port: /buckets/{key} (needs an admin token; disabled without ADMIN_TOKENS),
 * /metrics, /healthz, /readyz. Every reply is JSON but /metrics' text.
 */
export function createAdminApp(deps: HttpDeps, isReady: () => Promise<Readiness | void>, accessLog = false) {
  const { limiter, metrics, logger, adminAuth } = deps;
  const timer = new RequestTimer(metrics, logger, accessLog);
  const fail = (res: ServerResponse, err: unknown, op: string) => sendReply(res, errorReply(err, op, logger));

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('strict routing', true);
  app.set('case sensitive routing', true);
  app.use((req: Request, res: Response, next: NextFunction) => {
    const start = RequestTimer.start();
    res.on('finish', () => timer.observe(req.method, (res.locals.route as string) ?? 'other', res.statusCode, start));
    next();
  });

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

  app.get(['/healthz', '/readyz'], async (req: Request, res: Response) => {
    res.locals.route = req.path;
    sendReply(res, await probeReply(req.path, limiter, isReady)!);
  });

  app.use((_req: Request, res: Response) => sendReply(res, NOT_FOUND));
  // Anything express itself throws (e.g. malformed URL): JSON, never a crash.
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => fail(res, err, 'express'));
  return app;
}
