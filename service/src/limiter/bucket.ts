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
 *   A negative `cost` is a refund (a report below its reservation): it raises the balance
 *   but never above max_tokens (and never lowers a balance already above it);
 *   'reserve' admits iff balance > 0 and balance >= min(cost, max_tokens); when admitted it
 *   deducts `cost` and writes, when refused it writes nothing (`admitted` says which).
 * - A written record lives max(ttl, time until the bucket is full again), so expiry
 *   never forgives debt: a full bucket and a missing record mean the same thing.
 * Times are integer microseconds.
 */
export type BucketOp = 'check' | 'charge' | 'reserve';

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
  /** 'reserve' only: whether the reservation was admitted (and deducted). */
  admitted?: boolean;
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
  if (op === 'reserve') {
    if (!(balance > 0 && balance >= Math.min(cost, p.maxTokens))) {
      return { balance, lastFillUs: last, nowUs, write: false, ttlMs: 0, admitted: false };
    }
    balance -= cost;
    return { balance, lastFillUs: last, nowUs, write: true, ttlMs: recordTtlMs(balance, last, nowUs, p), admitted: true };
  }
  if (cost < 0 && balance - cost > p.maxTokens) {
    // A refund stops at max_tokens (a balance already above it, after a rule change, stays).
    balance = Math.max(balance, p.maxTokens);
  } else {
    balance -= cost;
  }
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

/**
 * Seconds until the balance next reaches `need` tokens (default 1: above zero; a refused
 * reservation of N needs min(N, max_tokens)). 0 when it already does.
 */
export function retryAfterSeconds(r: BucketResult, p: BucketParams, need = 1): number {
  if (r.balance >= need && r.balance > 0) return 0;
  const n = Math.ceil((Math.max(need, 1) - r.balance) / p.tokensPerFill);
  return Math.max(1, Math.ceil((r.lastFillUs + n * p.fillIntervalUs - r.nowUs) / 1e6));
}
