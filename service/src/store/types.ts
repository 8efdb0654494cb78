import type { BucketOp, BucketParams, BucketResult } from '../limiter/bucket';

/** A place where bucket records live. Every store runs the same bucket semantics. */
export interface BucketStore {
  readonly kind: string;
  /** Runs one bucket op atomically on `key`, at the store's clock (set at construction). */
  run(key: string, p: BucketParams, op: BucketOp, cost: number, extra?: RunExtra): Promise<BucketResult>;
  /** Resolves when the store is reachable. */
  ping(): Promise<void>;
  /**
   * Calls `listener` whenever the store's connection goes up (true) or down (false), and once
   * at once with the current state. Stores without a connection (the embedded one) omit it.
   * Cluster workers report it to the primary, so that one worker's probe speaks for all.
   */
  onAvailability?(listener: (up: boolean) => void): void;
  close(): Promise<void>;
}

/** Reservation and idempotency records kept next to a key's bucket, in the same atomic step. */
export interface RunExtra {
  /**
   * 'reserve' (admitted): adds what was deducted to the reservation under this id (created
   * for `reservationTtlMs`). 'charge': settles the live reservation with this id (if any): a refund
   * of min(`claimed`, its amount) is credited in the same step and the reservation is deleted.
   */
  reservationId?: string;
  /** 'charge' with reservationId: the refund asked for (the update's reserved_tokens). */
  claimed?: number;
  reservationTtlMs?: number;
  /** 'charge': applied at most once per key within `requestWindowMs`; a repeat changes nothing. */
  requestId?: string;
  requestWindowMs?: number;
}

/** A failure of the backing store (maps to 503). */
export class StoreError extends Error {
  constructor(message: string, readonly cause?: unknown) {
    super(message);
    this.name = 'StoreError';
  }
}
