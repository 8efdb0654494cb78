/** Bearer tokens: the check, and the 401 both ports send (protocol routes, /buckets). */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson, UNAUTHORIZED_BODY } from './replies';

export class Authenticator {
  private readonly tokens: Buffer[];

  /** `tokens`: every accepted token (several during a rotation). Must not be empty. */
  constructor(tokens: readonly string[]) {
    if (tokens.length === 0) throw new Error('Authenticator: no tokens');
    this.tokens = tokens.map((t) => Buffer.from(t, 'utf8'));
  }

  get size(): number {
    return this.tokens.length;
  }

  /**
   * True when `header` is `Bearer <one of the tokens>`. The bytes are compared in constant
   * time (timingSafeEqual); only a token's length can be told apart, and tokens are at least
   * 16 random characters. Every token is compared, so which one matched does not show either.
   */
  verify(header: string | undefined): boolean {
    if (!header || header.length < 8 || header.length > 4096) return false;
    if (!/^bearer /i.test(header.slice(0, 7))) return false;
    const given = Buffer.from(header.slice(7).trim(), 'utf8');
    let ok = false;
    for (const t of this.tokens) ok = (t.length === given.length && timingSafeEqual(t, given)) || ok;
    return ok;
  }
}

const CHALLENGE = ['WWW-Authenticate', 'Bearer'] as const;

/**
 * True when the request may go on: no tokens configured, or it carries one (a repeated
 * Authorization header: Node keeps the first). Otherwise answers 401 (JSON, `WWW-Authenticate:
 * Bearer`) and returns false.
 */
export function authorized(auth: Authenticator | undefined, req: IncomingMessage, res: ServerResponse): boolean {
  if (!auth || auth.verify(req.headers.authorization)) return true;
  sendJson(res, 401, UNAUTHORIZED_BODY, CHALLENGE);
  return false;
}
