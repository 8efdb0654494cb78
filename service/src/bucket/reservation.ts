/**
 * The reservation and idempotency rules, TypeScript edition (the embedded store runs them
 * through runBucket). The Redis edition is the same steps in the Lua script (./lua.ts); both
 * must agree (test/bucket-shared.test.ts runs the same random walks against both).
 *
 * Around one bucket op on a key, in the same atomic step:
 * - 'charge' with a request id already applied to this key (within its window): nothing
 *   changes; the result says `duplicate` (and `refunded: 0` when a reservation id came too).
 * - 'charge' with a reservation id: the key's live reservation under that id, if any, is
 *   settled: min(claimed, its amount) is refunded (deducted from the cost) and the
 *   reservation deleted, so a refund happens once. None live: `refunded: 0`.
 * - 'reserve' admitted with a reservation id: what was deducted is added to the reservation
 *   under that id (amounts add up: a key listed twice in one check reserves twice), which
 *   lives `reservationTtlMs`.
 * - 'charge' with a request id, applied: the id is remembered for `requestWindowMs`.
 */
import { applyBucket, type BucketApplied, type BucketOp, type BucketParams, type BucketState } from './math';

/** Reservation and idempotency inputs of one bucket op (see the rules above). */
export interface RunExtra {
  /** 'reserve': the reservation to add to; 'charge': the reservation to settle. */
  reservationId?: string;
  /** 'charge' with reservationId: the refund asked for (the update's reserved_tokens). */
  claimed?: number;
  /** Required with reservationId on 'reserve'. */
  reservationTtlMs?: number;
  /** 'charge': applied at most once per key within requestWindowMs. */
  requestId?: string;
  /** Required with requestId on 'charge'. */
  requestWindowMs?: number;
}

/** A key's reservation and request-id records, as a store keeps them. */
export interface KeyRecords {
  /** The amount a live reservation holds, or undefined. */
  reservation(id: string): number | undefined;
  setReservation(id: string, amount: number, ttlMs: number): void;
  deleteReservation(id: string): void;
  /** Whether the request id was applied within its window. */
  applied(requestId: string): boolean;
  markApplied(requestId: string, windowMs: number): void;
}

/** reservationTtlMs of a 'reserve' with a reservation id (no default here: the limiter's setting decides). */
export function reservationTtlMs(extra: RunExtra): number {
  if (extra.reservationTtlMs === undefined) throw new TypeError('RunExtra: reservationId on reserve needs reservationTtlMs');
  return extra.reservationTtlMs;
}

/** requestWindowMs of a 'charge' with a request id (no default here: the limiter's setting decides). */
export function requestWindowMs(extra: RunExtra): number {
  if (extra.requestWindowMs === undefined) throw new TypeError('RunExtra: requestId on charge needs requestWindowMs');
  return extra.requestWindowMs;
}

/** One bucket op with the rules above; `records` is read and written only when `extra` asks for it. */
export function runBucket(
  state: BucketState | undefined,
  p: BucketParams,
  nowUs: number,
  op: BucketOp,
  cost: number,
  extra: RunExtra | undefined,
  records: KeyRecords,
): BucketApplied {
  const requestId = op === 'charge' ? extra?.requestId : undefined;
  if (requestId !== undefined && records.applied(requestId)) {
    const r: BucketApplied = { ...applyBucket(state, p, nowUs, 'check', 0), duplicate: true };
    if (extra!.reservationId !== undefined) r.refunded = 0;
    return r;
  }
  let refunded: number | undefined;
  if (op === 'charge' && extra?.reservationId !== undefined) {
    const amount = records.reservation(extra.reservationId);
    refunded = 0;
    if (amount !== undefined) {
      refunded = Math.min(extra.claimed ?? 0, amount);
      records.deleteReservation(extra.reservationId);
    }
    cost = cost - refunded;
  }
  const r = applyBucket(state, p, nowUs, op, cost);
  if (r.write) {
    if (op === 'reserve' && extra?.reservationId !== undefined) {
      const held = records.reservation(extra.reservationId) ?? 0;
      records.setReservation(extra.reservationId, held + r.deducted!, reservationTtlMs(extra));
    }
    if (requestId !== undefined) records.markApplied(requestId, requestWindowMs(extra!));
  }
  if (refunded !== undefined) r.refunded = refunded;
  return r;
}
