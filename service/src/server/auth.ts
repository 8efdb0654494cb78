/** Bearer-token check for the protocol routes and for /buckets. */
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string) => createHash('sha256').update(s).digest();

export class Authenticator {
  private readonly digests: Buffer[];

  /** `tokens`: every accepted token (several during a rotation). Must not be empty. */
  constructor(tokens: readonly string[]) {
    if (tokens.length === 0) throw new Error('Authenticator: no tokens');
    this.digests = tokens.map(digest);
  }

  get size(): number {
    return this.digests.length;
  }

  /** True when `header` is `Bearer <one of the tokens>` (compared in constant time). */
  verify(header: string | undefined): boolean {
    if (!header || header.length < 8 || header.length > 4096) return false;
    if (!/^bearer /i.test(header.slice(0, 7))) return false;
    const d = digest(header.slice(7).trim());
    let ok = false;
    for (const t of this.digests) ok = timingSafeEqual(d, t) || ok;
    return ok;
  }
}
