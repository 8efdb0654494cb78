/**
 * The main port's request handler (on ./http-server): the two protocol routes (the hot path,
 * plain Node handlers; bearer token when configured) and the probes. The admin port is
 * ./admin-port (express). A check's body is never read (its connection closes after the reply
 * when one was sent chunked); an update's body is read up to MAX_BODY_BYTES.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AppliedCharge } from '../limiter/limiter';
import { authorized } from './auth';
import { readBody } from './body';
import type { HttpDeps } from './deps';
import { BadRequest, MAX_BODY_BYTES, parseKeysParam, parseReserveParam, parseUpdateBody } from './input';
import { errorReply, NOT_FOUND, probeReply, sendEmpty, sendJson, sendReply, type JsonReply, type Readiness } from './replies';
import { RequestTimer } from './timing';

const CHECK_PATH = '/ratelimit';
const UPDATE_PATH = '/update_ratelimit_record';
const JSON_CT = /^application\/json\s*(;|$)/i;

/** The query parameters (first occurrence wins in get(); `+` is a space, as Go's Query().Get). */
/**
 * A request target in origin form. RFC 9112 §3.2.2: a server must accept the absolute form
 * (`GET http://host/ratelimit?…`), which is the same request as its path and query.
 */
function originForm(url: string): string {
  if (url.charCodeAt(0) === 0x2f) return url; // "/": the usual case, no allocation
  const authority = /^https?:\/\/[^/?#]*/i.exec(url);
  if (!authority) return url;
  const rest = url.slice(authority[0].length);
  return rest === '' || rest[0] === '?' ? '/' + rest : rest;
}

function queryParams(url: string, q: number): URLSearchParams | undefined {
  return q < 0 ? undefined : new URLSearchParams(url.slice(q + 1));
}

export function mainPortHandler(deps: HttpDeps, isReady: () => Promise<Readiness | void>, accessLog = false) {
  const { limiter, logger, auth } = deps;
  const timer = new RequestTimer(deps.metrics, logger, accessLog);

  /** Sends `r` and observes the request's duration under `route`. */
  const reply = (req: IncomingMessage, res: ServerResponse, route: string, start: bigint, r: JsonReply, headers?: readonly string[], close = false) => {
    sendReply(res, r, headers, close);
    timer.observe(req.method, route, r.status, start);
  };
  const fail = (req: IncomingMessage, res: ServerResponse, route: string, start: bigint, err: unknown, op: string) => {
    const r = errorReply(err, op, logger);
    // A body over the bound is not read further: the connection closes after the 413.
    reply(req, res, route, start, r, undefined, r.status === 413);
  };

  async function check(req: IncomingMessage, res: ServerResponse, url: string, q: number, start: bigint): Promise<void> {
    if (!authorized(auth, req, res)) return timer.observe(req.method, CHECK_PATH, 401, start);
    try {
      const params = queryParams(url, q);
      const keys = parseKeysParam(params?.get('ratelimit_keys') ?? undefined);
      const reserve = parseReserveParam(params?.get('reserve'));
      const result = await limiter.check(keys, reserve);
      sendJson(res, 200, result);
      timer.observe(req.method, CHECK_PATH, 200, start);
    } catch (err) {
      fail(req, res, CHECK_PATH, start, err, 'check');
    }
  }

  async function update(req: IncomingMessage, res: ServerResponse, start: bigint): Promise<void> {
    if (!authorized(auth, req, res)) return timer.observe(req.method, UPDATE_PATH, 401, start);
    try {
      const ct = req.headers['content-type'];
      // No content type is accepted (treated as JSON); any other than JSON is refused.
      if (ct !== undefined && !JSON_CT.test(ct)) {
        throw new BadRequest(`Content-Type must be application/json, got ${JSON.stringify(ct.slice(0, 100))}`);
      }
      const body = parseUpdateBody(await readBody(req, MAX_BODY_BYTES));
      const { keys, usage, reserved, estimated, reservationId, requestId, metadataErrors } = body;
      for (const e of metadataErrors) deps.metrics.metadataErrors.inc({ field: e.field });
      // Field names only: no body value or key in the log.
      if (metadataErrors.length > 0) logger.debug('update charged without its bad metadata', { fields: metadataErrors.map((e) => e.field) });
      const recorder = deps.usage;
      const onApplied = recorder ? (charges: AppliedCharge[]) => recorder.record(body, charges) : undefined;
      const charged = await limiter.update(keys, usage, { reserved, estimated, reservationId, requestId, onApplied });
      // Counts only: keys may identify users.
      if (estimated) logger.debug('estimated report', { keys: keys.length, ruled: charged, reserved_tokens: reserved });
      // The reference replies 200 with an empty body.
      sendEmpty(res, 200);
      timer.observe(req.method, UPDATE_PATH, 200, start);
    } catch (err) {
      fail(req, res, UPDATE_PATH, start, err, 'update');
    }
  }

  const notAllowed = (req: IncomingMessage, res: ServerResponse, route: string, allow: string, start: bigint) =>
    reply(req, res, route, start, { status: 405, body: { error: `method ${req.method} not allowed` } }, ['Allow', allow]);

  async function probe(req: IncomingMessage, res: ServerResponse, path: string, start: bigint, r: JsonReply | Promise<JsonReply>): Promise<void> {
    reply(req, res, path, start, await r);
  }

  /** Exact paths only: `/ratelimit/` or `/RateLimit` are 404, as in the reference's Go mux. */
  return (req: IncomingMessage, res: ServerResponse): void => {
    const start = RequestTimer.start();
    const url = originForm(req.url!);
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const m = req.method;
    if (path === CHECK_PATH) {
      if (m === 'GET') void check(req, res, url, q, start);
      else notAllowed(req, res, CHECK_PATH, 'GET', start);
    } else if (path === UPDATE_PATH) {
      if (m === 'POST') void update(req, res, start);
      else notAllowed(req, res, UPDATE_PATH, 'POST', start);
    } else {
      const p = m === 'GET' || m === 'HEAD' ? probeReply(path, limiter, isReady) : undefined;
      if (p) void probe(req, res, path, start, p);
      else reply(req, res, 'other', start, NOT_FOUND);
    }
  };
}
