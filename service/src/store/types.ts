import type { BucketOp, BucketParams, BucketResult } from '../limiter/bucket';

/** A place where bucket records live. Every store runs the same bucket semantics. */
export interface BucketStore {
  readonly kind: string;
  /**
   * Runs one bucket op atomically on `key`. `nowUs` overrides the store's clock (tests only).
   */
  run(key: string, p: BucketParams, op: BucketOp, cost: number, nowUs?: number): Promise<BucketResult>;
  /** Resolves when the store is reachable. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** A failure of the backing store (maps to 503). */
export class StoreError extends Error {
  constructor(message: string, readonly cause?: unknown) {
    super(message);
    this.name = 'StoreError';
  }
}
