/**
 * The token-bucket math, TypeScript edition (used by the embedded store).
 * The Redis edition is the Lua script in ../store/bucket-lua.ts; both must agree
 * (test/bucket-shared.test.ts runs the same cases against both).
 *
 * Semantics (per key):
 * - A missing record starts full: balance = maxTokens, lastFill = now.
 * - Refill: intervals = floor((now - lastFill) / fillInterval); when > 0,
 *   balance = min(balance + intervals * tokensPerFill, maxTokens) and
 *   lastFill += intervals * fillInterval (the clock stays aligned, no partial interval lost).
 * - Ops: 'check' refills in memory only and writes nothing (refill is a pure function of
 *   the stored state and the time, so nothing needs persisting);
 *   'charge' deducts `cost` unconditionally (the balance may go negative: debt) and writes.
 *   (A future 'reserve' op — deduct only if admitted — slots in next to 'charge'.)
 * - A written record lives max(ttl, time until the bucket is full again), so expiry
 *   never forgives debt: a full bucket and a missing record mean the same thing.
 * Times are integer microseconds.
 */
export type BucketOp = 'check' | 'charge';

export interface BucketParams {
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalUs: number;
  ttlSeconds: number;
}

export interface BucketState {
  balance: number;
  lastFillUs: number;
}

export interface BucketResult {
  balance: number;
  lastFillUs: number;
  nowUs: number;
}

export interface BucketApplied extends BucketResult {
  /** New state to persist (only for writing ops). */
  write: boolean;
  /** Record lifetime in ms when written. */
  ttlMs: number;
}

export function applyBucket(
  state: BucketState | undefined,
  p: BucketParams,
  nowUs: number,
  op: BucketOp,
  cost: number,
): BucketApplied {
  let balance: number;
  let last: number;
  if (state) {
    balance = state.balance;
    last = state.lastFillUs;
    const intervals = Math.floor((nowUs - last) / p.fillIntervalUs);
    if (intervals > 0) {
      balance = Math.min(balance + intervals * p.tokensPerFill, p.maxTokens);
      last = last + intervals * p.fillIntervalUs;
    }
  } else {
    balance = p.maxTokens;
    last = nowUs;
  }
  if (op === 'check') return { balance, lastFillUs: last, nowUs, write: false, ttlMs: 0 };
  balance -= cost;
  return { balance, lastFillUs: last, nowUs, write: true, ttlMs: recordTtlMs(balance, last, nowUs, p) };
}

export function recordTtlMs(balance: number, lastUs: number, nowUs: number, p: BucketParams): number {
  let ttl = p.ttlSeconds * 1000;
  if (balance < p.maxTokens) {
    const n = Math.ceil((p.maxTokens - balance) / p.tokensPerFill);
    const fullMs = Math.ceil((lastUs + n * p.fillIntervalUs - nowUs) / 1000);
    if (fullMs > ttl) ttl = fullMs;
  }
  return ttl;
}

/** Seconds until the balance is next above zero (0 when it already is). */
export function retryAfterSeconds(r: BucketResult, p: BucketParams): number {
  if (r.balance > 0) return 0;
  const n = Math.floor(-r.balance / p.tokensPerFill) + 1;
  return Math.max(1, Math.ceil((r.lastFillUs + n * p.fillIntervalUs - r.nowUs) / 1e6));
}
