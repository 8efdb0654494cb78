/** Replies both ports send alike: errors, the probes, a refused token. Bodies are JSON values. */
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

/**
 * An error as a reply: bad input 400, the store unavailable 503 (logged at warn), a client
 * error express raised (e.g. a malformed URL) 400, anything else 500 (logged at error).
 */
export function errorReply(err: unknown, op: string, logger: Logger): JsonReply {
  if (err instanceof BadRequest) return { status: 400, body: { error: err.message } };
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
