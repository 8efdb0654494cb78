/**
 * Replies both ports send alike: errors, the probes, a refused token; and how a JSON reply is
 * written. Every reply the service sends is JSON.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Limiter } from '../limiter/limiter';
import type { Logger } from '../log';
import { StoreError } from '../store/types';
import { BadRequest } from './input';

export interface JsonReply {
  status: number;
  body: unknown;
}

/** What /readyz reports beyond reachability (e.g. a Redis eviction-policy warning). */
export interface Readiness {
  warnings?: string[];
}

export const UNAUTHORIZED_BODY = { error: 'missing or invalid bearer token (Authorization: Bearer <token>)' };
export const HEALTHY: JsonReply = { status: 200, body: { status: 'ok' } };
export const NOT_FOUND: JsonReply = { status: 404, body: { error: 'not found' } };

/** A body larger than the bound: refused before it is read (the connection then closes). */
export class BodyTooLarge extends Error {
  constructor(readonly max: number) {
    super(`body larger than ${max} bytes`);
    this.name = 'BodyTooLarge';
  }
}

/**
 * An error as a reply: bad input 400, a body over the bound 413, the store unavailable 503
 * (logged at warn), a client error express raised (e.g. a malformed URL) 400, anything else
 * 500 (logged at error).
 */
export function errorReply(err: unknown, op: string, logger: Logger): JsonReply {
  if (err instanceof BadRequest) return { status: 400, body: { error: err.message } };
  if (err instanceof BodyTooLarge) return { status: 413, body: { error: err.message } };
  if (err instanceof StoreError) {
    logger.warn('store error', { op, err: err.message });
    return { status: 503, body: { error: 'rate-limit store unavailable' } };
  }
  const status = (err as { status?: number })?.status;
  if (status && status >= 400 && status < 500) return { status: 400, body: { error: (err as Error).message ?? 'bad request' } };
  logger.error('internal error', { op, err: err as Error });
  return { status: 500, body: { error: 'internal error' } };
}

/** /readyz: 200 when the store answers (with any warnings), else 503 naming the error. */
export async function readyReply(limiter: Limiter, isReady: () => Promise<Readiness | void>): Promise<JsonReply> {
  try {
    const r = await isReady();
    const body: Record<string, unknown> = { status: 'ready', store: limiter.store.kind };
    if (r && r.warnings?.length) body.warnings = r.warnings;
    return { status: 200, body };
  } catch (err) {
    return { status: 503, body: { status: 'not ready', store: limiter.store.kind, error: (err as Error).message } };
  }
}

/** The probes, on both ports: the reply for `path`, or undefined when it is not a probe. */
export function probeReply(path: string, limiter: Limiter, isReady: () => Promise<Readiness | void>): JsonReply | Promise<JsonReply> | undefined {
  if (path === '/healthz') return HEALTHY;
  if (path === '/readyz') return readyReply(limiter, isReady);
  return undefined;
}

const JSON_TYPE = 'application/json';

/**
 * Writes a JSON reply (`headers`: more, as name, value, …). The connection closes after it
 * when `close` says so, or when the request's body is chunked and was not read (Node would
 * otherwise read it to its end to find the next request; a body of a declared length is
 * bounded before any handler runs). Nothing is written when the connection already failed (a
 * framing error answered by the server, a client gone).
 */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: readonly string[], close = false): void {
  if (!writable(res)) return;
  const text = JSON.stringify(body);
  const head = ['Content-Type', JSON_TYPE, 'Content-Length', String(Buffer.byteLength(text))];
  if (headers) head.push(...headers);
  // Node then sends `Connection: close` and closes after the reply.
  if (close || unreadChunkedBody(res.req)) res.shouldKeepAlive = false;
  res.writeHead(status, head);
  res.end(text);
}

/** A reply without a body (the update's 200, as the reference sends it). */
export function sendEmpty(res: ServerResponse, status: number): void {
  if (!writable(res)) return;
  if (unreadChunkedBody(res.req)) res.shouldKeepAlive = false;
  res.writeHead(status, ['Content-Length', '0']);
  res.end();
}

export const sendReply = (res: ServerResponse, r: JsonReply, headers?: readonly string[], close = false): void =>
  sendJson(res, r.status, r.body, headers, close);

/** Not answered yet, and the connection can still carry a reply (a pipelined reply waits for its turn: no socket yet). */
function writable(res: ServerResponse): boolean {
  return !res.headersSent && (res.socket === null || res.socket.writable);
}

function unreadChunkedBody(req: IncomingMessage): boolean {
  return !req.complete && req.headers['transfer-encoding'] !== undefined;
}
