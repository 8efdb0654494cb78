/**
 * The main port: the two protocol routes (the hot path; bearer token when configured) and the
 * probes, served by ./http1. Every error is JSON. The admin port is ./routes (express).
 */
import type { AppliedCharge } from '../limiter/limiter';
import type { HttpDeps } from './routes';
import type { HttpReply, HttpRequest } from './http1';
import { BadRequest, parseKeysParam, parseReserveParam, parseUpdateBody } from './input';
import { errorReply, HEALTHY, readyReply, UNAUTHORIZED_BODY, type JsonReply, type Readiness } from './replies';

const CHECK_PATH = '/ratelimit';
const UPDATE_PATH = '/update_ratelimit_record';
const JSON_CT = /^application\/json\s*(;|$)/i;

const UNAUTHORIZED: HttpReply = {
  status: 401,
  json: JSON.stringify(UNAUTHORIZED_BODY),
  headers: { 'WWW-Authenticate': 'Bearer' },
};
const NOT_FOUND: HttpReply = { status: 404, json: JSON.stringify({ error: 'not found' }) };
/** The reference replies 200 with an empty body. */
const UPDATED: HttpReply = { status: 200 };

const json = (status: number, body: unknown): HttpReply => ({ status, json: JSON.stringify(body) });
const fromJson = (r: JsonReply): HttpReply => json(r.status, r.body);

/** The query parameters (first occurrence wins in get(); `+` is a space, as Go's Query().Get). */
function queryParams(url: string): URLSearchParams | undefined {
  const q = url.indexOf('?');
  return q < 0 ? undefined : new URLSearchParams(url.slice(q + 1));
}

/** The path of a request target (without the query). */
function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** The main port's request handler. */
export function mainPortHandler(deps: HttpDeps, isReady: () => Promise<Readiness | void>, debug = false) {
  const { limiter, metrics, logger, auth } = deps;
  // One histogram child per (route, status): no label hashing per request.
  const timers = new Map<string, { observe(v: number): void }>();
  const observe = (req: HttpRequest, route: string, status: number, start: bigint) => {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const id = `${route} ${status}`;
    let t = timers.get(id);
    if (!t) timers.set(id, (t = metrics.requestDuration.labels(route, String(status))));
    t.observe(seconds);
    // Access log (no bodies, no query strings: keys may identify users) at debug level.
    if (debug) logger.debug('request', { method: req.method, route, status, ms: Math.round(seconds * 1e6) / 1e3 });
  };

  const fail = (err: unknown, op: string): HttpReply => fromJson(errorReply(err, op, logger));

  async function check(req: HttpRequest): Promise<HttpReply> {
    if (auth && !auth.verify(req.headers.authorization)) return UNAUTHORIZED;
    try {
      const q = queryParams(req.url);
      const keys = parseKeysParam(q?.get('ratelimit_keys') ?? undefined);
      const reserve = parseReserveParam(q?.get('reserve'));
      return json(200, await limiter.check(keys, reserve));
    } catch (err) {
      return fail(err, 'check');
    }
  }

  async function update(req: HttpRequest): Promise<HttpReply> {
    if (auth && !auth.verify(req.headers.authorization)) return UNAUTHORIZED;
    try {
      const ct = req.headers['content-type'];
      // No content type is accepted (treated as JSON); any other than JSON is refused.
      if (ct !== undefined && !JSON_CT.test(ct)) {
        throw new BadRequest(`Content-Type must be application/json, got ${JSON.stringify(ct.slice(0, 100))}`);
      }
      const body = parseUpdateBody(req.body);
      const { keys, usage, reserved, estimated, reservationId, requestId } = body;
      const recorder = deps.usage;
      const onApplied = recorder ? (charges: AppliedCharge[]) => recorder.record(body, charges) : undefined;
      const charged = await limiter.update(keys, usage, { reserved, estimated, reservationId, requestId, onApplied });
      // Counts only: keys may identify users.
      if (estimated) logger.debug('estimated report', { keys: keys.length, ruled: charged, reserved_tokens: reserved });
      return UPDATED;
    } catch (err) {
      return fail(err, 'update');
    }
  }

  /** Route → reply. Exact paths only: `/ratelimit/` or `/RateLimit` are 404, as in the reference's Go mux. */
  function route(req: HttpRequest, path: string): [string, Promise<HttpReply> | HttpReply] {
    const m = req.method;
    if (path === CHECK_PATH) {
      if (m === 'GET') return [CHECK_PATH, check(req)];
      return [CHECK_PATH, { ...json(405, { error: `method ${m} not allowed` }), headers: { Allow: 'GET' } }];
    }
    if (path === UPDATE_PATH) {
      if (m === 'POST') return [UPDATE_PATH, update(req)];
      return [UPDATE_PATH, { ...json(405, { error: `method ${m} not allowed` }), headers: { Allow: 'POST' } }];
    }
    if (m === 'GET' || m === 'HEAD') {
      if (path === '/healthz') return ['/healthz', fromJson(HEALTHY)];
      if (path === '/readyz') return ['/readyz', readyReply(limiter, isReady).then(fromJson)];
    }
    return ['other', NOT_FOUND];
  }

  return (req: HttpRequest): Promise<HttpReply> | HttpReply => {
    const start = process.hrtime.bigint();
    const [name, out] = route(req, pathOf(req.url));
    if (!(out instanceof Promise)) {
      observe(req, name, out.status, start);
      return out;
    }
    return out.then((r) => {
      observe(req, name, r.status, start);
      return r;
    });
  };
}
