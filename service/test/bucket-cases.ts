/**
 * Bucket cases shared by every store (test/bucket-shared.test.ts runs them on the
 * embedded store and on Redis). Each case drives one key with explicit "now" values.
 */
import type { BucketParams } from '../src/bucket/math';
import type { BucketStore } from '../src/store/types';

export const S = 1_000_000; // one second in µs
export const T0 = 1_800_000_000 * S; // an arbitrary epoch, large like a real one
export const P: BucketParams = { maxTokens: 200, tokensPerFill: 50, fillIntervalUs: 30 * S, ttlSeconds: 300, maxDebt: 2000 };

export interface Step {
  at: number; // µs after T0
  op: 'check' | 'charge' | 'reserve';
  cost?: number; // 'charge' with a negative cost = a refund
  admitted?: boolean; // 'reserve': expected decision
  balance: number; // expected balance after the op
  lastFill?: number; // expected last fill, µs after T0
}

export interface Case {
  name: string;
  params?: BucketParams;
  steps: Step[];
}

export const CASES: Case[] = [
  {
    name: 'a new key starts full at max_tokens and a check writes nothing',
    steps: [
      { at: 0, op: 'check', balance: 200, lastFill: 0 },
      { at: 10 * S, op: 'check', balance: 200, lastFill: 10 * S },
    ],
  },
  {
    name: 'charges go into debt; allowed while balance > 0',
    steps: [
      { at: 0, op: 'charge', cost: 105, balance: 95 },
      { at: 1, op: 'charge', cost: 105, balance: -10 },
      { at: 2, op: 'check', balance: -10 },
    ],
  },
  {
    name: 'refill adds tokens_per_fill per whole interval onto the debt',
    steps: [
      { at: 0, op: 'charge', cost: 300, balance: -100, lastFill: 0 },
      { at: 29 * S, op: 'check', balance: -100, lastFill: 0 },
      { at: 30 * S, op: 'check', balance: -50, lastFill: 30 * S },
      { at: 61 * S, op: 'check', balance: 0, lastFill: 60 * S },
      { at: 91 * S, op: 'check', balance: 50, lastFill: 90 * S },
    ],
  },
  {
    name: 'no partial interval is lost: frequent updates keep the fill clock aligned',
    steps: [
      { at: 0, op: 'charge', cost: 200, balance: 0, lastFill: 0 },
      // The reference would reset last_fill to "now" at 45 s and lose 15 s.
      { at: 45 * S, op: 'charge', cost: 10, balance: 40, lastFill: 30 * S },
      { at: 59 * S + 999_999, op: 'charge', cost: 10, balance: 30, lastFill: 30 * S },
      { at: 60 * S, op: 'check', balance: 80, lastFill: 60 * S },
    ],
  },
  {
    name: 'sub-second precision: 29.999999 s is not an interval, 30 s is',
    steps: [
      { at: 500_000, op: 'charge', cost: 200, balance: 0, lastFill: 500_000 },
      { at: 30 * S + 499_999, op: 'check', balance: 0 },
      { at: 30 * S + 500_000, op: 'check', balance: 50, lastFill: 30 * S + 500_000 },
    ],
  },
  {
    name: 'refill is capped at max_tokens',
    steps: [
      { at: 0, op: 'charge', cost: 60, balance: 140 },
      { at: 3600 * S, op: 'check', balance: 200, lastFill: 3600 * S },
      { at: 3600 * S + 1, op: 'charge', cost: 1, balance: 199 },
    ],
  },
  {
    name: 'a zero-token charge creates a full record',
    steps: [
      { at: 0, op: 'charge', cost: 0, balance: 200 },
      { at: 1, op: 'check', balance: 200, lastFill: 0 },
    ],
  },
  {
    name: 'a clock that steps back refills nothing',
    steps: [
      { at: 100 * S, op: 'charge', cost: 150, balance: 50, lastFill: 100 * S },
      { at: 10 * S, op: 'check', balance: 50, lastFill: 100 * S },
    ],
  },
  {
    name: 'other parameters: 1 token per second, max 3',
    params: { maxTokens: 3, tokensPerFill: 1, fillIntervalUs: 1 * S, ttlSeconds: 10, maxDebt: 30 },
    steps: [
      { at: 0, op: 'charge', cost: 5, balance: -2 },
      { at: 2 * S + 1, op: 'check', balance: 0, lastFill: 2 * S },
      { at: 3 * S, op: 'check', balance: 1, lastFill: 3 * S },
      { at: 10 * S, op: 'check', balance: 3, lastFill: 10 * S },
    ],
  },
  // Reservations: 'reserve' admits iff balance > 0 and balance >= min(N, max),
  // deducting N when admitted and writing nothing when refused; a correction is a 'charge'
  // of actual - reserved, negative for a refund, capped at max_tokens on the way up.
  {
    name: 'reserve admits at the threshold (balance >= N) and refuses just below it, deducting nothing',
    steps: [
      { at: 0, op: 'reserve', cost: 150, admitted: true, balance: 50, lastFill: 0 },
      { at: 1, op: 'reserve', cost: 51, admitted: false, balance: 50, lastFill: 0 },
      { at: 2, op: 'reserve', cost: 50, admitted: true, balance: 0 },
      { at: 3, op: 'reserve', cost: 1, admitted: false, balance: 0 },
      { at: 4, op: 'check', balance: 0 },
    ],
  },
  {
    name: 'reserve 0 admits while balance > 0 and deducts nothing',
    steps: [
      { at: 0, op: 'reserve', cost: 0, admitted: true, balance: 200 },
      { at: 1, op: 'charge', cost: 200, balance: 0 },
      { at: 2, op: 'reserve', cost: 0, admitted: false, balance: 0 },
    ],
  },
  {
    name: 'reserve larger than max_tokens: admitted only on a full bucket, into debt',
    steps: [
      { at: 0, op: 'reserve', cost: 500, admitted: true, balance: -300, lastFill: 0 },
      { at: 30 * S, op: 'reserve', cost: 500, admitted: false, balance: -250, lastFill: 30 * S },
      { at: 300 * S, op: 'reserve', cost: 500, admitted: true, balance: -300, lastFill: 300 * S },
      { at: 600 * S, op: 'charge', cost: 1, balance: 199 },
      { at: 600 * S + 1, op: 'reserve', cost: 500, admitted: false, balance: 199 },
    ],
  },
  {
    name: 'a refund is capped at max_tokens',
    steps: [
      { at: 0, op: 'reserve', cost: 150, admitted: true, balance: 50 },
      { at: 1, op: 'charge', cost: -150, balance: 200 },
      { at: 2, op: 'charge', cost: -100, balance: 200 },
      { at: 3, op: 'reserve', cost: 10, admitted: true, balance: 190 },
      { at: 4, op: 'charge', cost: -1000, balance: 200 },
    ],
  },
  {
    name: 'debt + refund: a refund pays debt back; still refused while <= 0',
    steps: [
      { at: 0, op: 'charge', cost: 300, balance: -100 },
      { at: 1, op: 'charge', cost: -50, balance: -50 },
      { at: 2, op: 'reserve', cost: 10, admitted: false, balance: -50 },
      { at: 3, op: 'charge', cost: -60, balance: 10 },
      { at: 4, op: 'reserve', cost: 10, admitted: true, balance: 0 },
    ],
  },
  {
    name: 'refill during a reservation: the refund lands on the refilled balance, capped',
    steps: [
      { at: 0, op: 'reserve', cost: 150, admitted: true, balance: 50, lastFill: 0 },
      { at: 31 * S, op: 'check', balance: 100, lastFill: 30 * S },
      { at: 40 * S, op: 'charge', cost: -80, balance: 180, lastFill: 30 * S }, // actual 70 of 150
      { at: 60 * S, op: 'charge', cost: 0, balance: 200, lastFill: 60 * S },
    ],
  },
  {
    name: 'refill during a reservation: an under-estimate is topped up after the refill',
    steps: [
      { at: 0, op: 'reserve', cost: 150, admitted: true, balance: 50 },
      { at: 30 * S, op: 'charge', cost: 120, balance: -20, lastFill: 30 * S }, // actual 270 of 150
      { at: 59 * S, op: 'reserve', cost: 1, admitted: false, balance: -20 },
      { at: 60 * S, op: 'reserve', cost: 30, admitted: true, balance: 0, lastFill: 60 * S },
    ],
  },
];

/** The time the shared suite's stores run at (µs): they are built with `nowUs: () => clock.now`. */
export const clock = { now: T0 };

/** Runs a case on a store (running at `clock`) with fresh key `key`; returns mismatches as strings. */
export async function runCase(store: BucketStore, key: string, c: Case): Promise<string[]> {
  const p = c.params ?? P;
  const errors: string[] = [];
  for (const [i, s] of c.steps.entries()) {
    clock.now = T0 + s.at;
    const r = await store.run(key, p, s.op, s.cost ?? 0);
    if (r.balance !== s.balance) errors.push(`step ${i}: balance ${r.balance}, expected ${s.balance}`);
    if (s.lastFill !== undefined && r.lastFillUs !== T0 + s.lastFill) {
      errors.push(`step ${i}: lastFill ${r.lastFillUs - T0}, expected ${s.lastFill}`);
    }
    if (s.admitted !== undefined && r.admitted !== s.admitted) errors.push(`step ${i}: admitted ${r.admitted}, expected ${s.admitted}`);
    if (s.op !== 'reserve' && r.admitted !== undefined) errors.push(`step ${i}: admitted set on ${s.op}`);
    if (r.nowUs !== T0 + s.at) errors.push(`step ${i}: now ${r.nowUs - T0}, expected ${s.at}`);
  }
  return errors;
}
