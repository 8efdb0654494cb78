/**
 * The token-bucket math, TypeScript edition (the embedded store runs it through
 * ./reservation.ts). The Redis edition is the Lua script in ./lua.ts; both must agree
 * (test/bucket-shared.test.ts runs the same cases against both). No imports: the stores
 * and the limiter build on this module, never the other way round.
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
 * - Debt is bounded: a deduction never takes the balance below -maxDebt (it stops there; a
 *   balance already below, after a rule change, is not lowered further).
 * - A written record lives max(ttl, time until the bucket is full again), capped at
 *   MAX_RECORD_TTL_MS, so expiry never forgives debt: a full bucket and a missing record
 *   mean the same thing.
 * Times are integer microseconds. Every intermediate value is an integer below 2^53 (or
 *   only compared, never stored), and the Lua edition does the same double operations in
 *   the same order, so both give identical results for every input the service accepts.
 */
export type BucketOp = 'check' | 'charge' | 'reserve';

export interface BucketParams {
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalUs: number;
  ttlSeconds: number;
  /** Deepest debt: the balance never goes below -maxDebt by a deduction. */
  maxDebt: number;
}

/** Longest record lifetime (about 31.7 years): keeps the TTL exact and in range. */
export const MAX_RECORD_TTL_MS = 1e12;

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
  /** 'charge' settling a reservation: the refund credited from it (0 when none was live). */
  refunded?: number;
  /** 'charge' with a request id already applied: nothing was changed. */
  duplicate?: boolean;
  /** Embedded store only: the key has no record and the store is full of records it may not drop. */
  storeFull?: boolean;
  /**
   * Embedded store only: to make room for this new key at the bound, a record with a positive
   * balance below full was dropped; this is what its key gets back (max_tokens − its balance).
   */
  forgiven?: number;
}

export interface BucketApplied extends BucketResult {
  /** New state to persist (only for writing ops). */
  write: boolean;
  /** Record lifetime in ms when written. */
  ttlMs: number;
  /** 'reserve' admitted: what was actually deducted (less than the cost when clamped at -maxDebt). */
  deducted?: number;
}

/** Deducts `cost` ≥ 0, stopping at -maxDebt (a balance already below it is kept). */
function deduct(balance: number, cost: number, maxDebt: number): number {
  const floor = 0 - maxDebt;
  if (balance - cost < floor) return Math.min(balance, floor);
  return balance - cost;
}

export function applyBucket(state: BucketState | undefined, p: BucketParams, nowUs: number, op: BucketOp, cost: number): BucketApplied {
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
    const before = balance;
    balance = deduct(balance, cost, p.maxDebt);
    return {
      balance,
      lastFillUs: last,
      nowUs,
      write: true,
      ttlMs: recordTtlMs(balance, last, nowUs, p),
      admitted: true,
      deducted: before - balance,
    };
  }
  if (cost < 0) {
    // A refund stops at max_tokens (a balance already above it, after a rule change, stays).
    balance = balance - cost > p.maxTokens ? Math.max(balance, p.maxTokens) : balance - cost;
  } else {
    balance = deduct(balance, cost, p.maxDebt);
  }
  return { balance, lastFillUs: last, nowUs, write: true, ttlMs: recordTtlMs(balance, last, nowUs, p) };
}

export function recordTtlMs(balance: number, lastUs: number, nowUs: number, p: BucketParams): number {
  let ttl = Math.min(p.ttlSeconds * 1000, MAX_RECORD_TTL_MS);
  if (balance < p.maxTokens) {
    const n = Math.ceil((p.maxTokens - balance) / p.tokensPerFill);
    if (n * p.fillIntervalUs > MAX_RECORD_TTL_MS * 1000) return MAX_RECORD_TTL_MS;
    const fullMs = Math.ceil((lastUs + n * p.fillIntervalUs - nowUs) / 1000);
    if (fullMs > ttl) ttl = Math.min(fullMs, MAX_RECORD_TTL_MS);
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
