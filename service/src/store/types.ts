import type { BucketOp, BucketParams, BucketResult } from '../bucket/math';
import type { RunExtra } from '../bucket/reservation';

/**
 * A place where bucket records live. Every store runs the same bucket semantics (../bucket/math.ts)
 * and reservation and idempotency rules (../bucket/reservation.ts).
 */
export interface BucketStore {
  readonly kind: string;
  /** Runs one bucket op atomically on `key` (with its reservation and request-id records), at the store's clock (set at construction). */
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

/** A failure of the backing store (maps to 503). */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly cause?: unknown,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}
