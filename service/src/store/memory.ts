import { applyBucket, type BucketOp, type BucketParams, type BucketResult } from '../limiter/bucket';
import type { BucketStore } from './types';

interface Entry {
  balance: number;
  lastFillUs: number;
  expiresAtMs: number;
}

export interface MemoryStoreOptions {
  /** Clock in microseconds. Default: wall clock with sub-millisecond precision. */
  nowUs?: () => number;
  /** Bound on the number of records; the least recently written are dropped first. */
  maxKeys?: number;
  /** Period of the expiry sweep in ms (0 disables it). */
  sweepIntervalMs?: number;
}

export const wallClockUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);

/** Embedded in-memory store: the default when no Redis is configured (single replica). */
export class MemoryStore implements BucketStore {
  readonly kind = 'memory';
  private readonly map = new Map<string, Entry>();
  private readonly clock: () => number;
  private readonly maxKeys: number;
  private readonly timer?: NodeJS.Timeout;

  constructor(opts: MemoryStoreOptions = {}) {
    this.clock = opts.nowUs ?? wallClockUs;
    this.maxKeys = opts.maxKeys ?? 100_000;
    const sweep = opts.sweepIntervalMs ?? 30_000;
    if (sweep > 0) {
      this.timer = setInterval(() => this.sweep(), sweep);
      this.timer.unref();
    }
  }

  get size(): number {
    return this.map.size;
  }

  async run(key: string, p: BucketParams, op: BucketOp, cost: number, nowUs?: number): Promise<BucketResult> {
    const now = nowUs ?? this.clock();
    let e = this.map.get(key);
    if (e && e.expiresAtMs <= now / 1000) {
      this.map.delete(key);
      e = undefined;
    }
    const r = applyBucket(e, p, now, op, cost);
    if (r.write) {
      if (e) this.map.delete(key); // re-insert: Map order = least recently written first
      else if (this.map.size >= this.maxKeys) this.evictOldest();
      this.map.set(key, { balance: r.balance, lastFillUs: r.lastFillUs, expiresAtMs: now / 1000 + r.ttlMs });
    }
    const out: BucketResult = { balance: r.balance, lastFillUs: r.lastFillUs, nowUs: r.nowUs };
    if (op === 'reserve') out.admitted = r.admitted;
    return out;
  }

  /** Remaining lifetime of a record in ms at `nowUs` (-2 when absent, as Redis PTTL). */
  ttlMs(key: string, nowUs: number = this.clock()): number {
    const e = this.map.get(key);
    if (!e || e.expiresAtMs <= nowUs / 1000) return -2;
    return Math.round(e.expiresAtMs - nowUs / 1000);
  }

  /** Drops expired records; returns how many. */
  sweep(nowUs: number = this.clock()): number {
    const nowMs = nowUs / 1000;
    let n = 0;
    for (const [k, e] of this.map) {
      if (e.expiresAtMs <= nowMs) {
        this.map.delete(k);
        n++;
      }
    }
    return n;
  }

  private evictOldest(): void {
    const first = this.map.keys().next();
    if (!first.done) this.map.delete(first.value);
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.map.clear();
  }
}
