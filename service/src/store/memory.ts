import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { applyBucket, type BucketOp, type BucketParams, type BucketResult } from '../bucket/math';
import { runBucket, type KeyRecords, type RunExtra } from '../bucket/reservation';
import type { BucketStore } from './types';

interface Entry {
  balance: number;
  lastFillUs: number;
  expiresAtMs: number;
  /** The rule's parameters at the last write (to tell whether the bucket has refilled to full). */
  p: BucketParams;
}

export interface MemoryStoreOptions {
  /** Clock in microseconds. Default: wall clock with sub-millisecond precision. */
  nowUs?: () => number;
  /**
   * Bound on the number of records. At the bound, a new key takes the place of a record that
   * carries no information (expired, or refilled to a full bucket), else of the least spent one
   * with a positive balance (its key gets back what it spent: no more than a new key gets);
   * when every record examined is at or below zero, the new key is refused (checks deny it,
   * updates fail) rather than a debt or an exhausted bucket forgotten.
   */
  maxKeys?: number;
  /** Period of the expiry sweep in ms (0 disables it). */
  sweepIntervalMs?: number;
  /** Called when a new key is refused because the store is full (for a metric and a log). */
  onFull?: () => void;
}

/** Records examined per attempt to find one to drop at the bound. */
const EVICTION_SCAN = 1000;

export const wallClockUs = (): number => Math.round((performance.timeOrigin + performance.now()) * 1000);

/** Records with one lifetime each, oldest first (insertion order = expiry order). */
class AuxRecords<V> {
  readonly map = new Map<string, { v: V; expMs: number }>();
  constructor(private readonly max: number) {}
  get(k: string, nowMs: number): V | undefined {
    const e = this.map.get(k);
    if (!e || e.expMs <= nowMs) return undefined;
    return e.v;
  }
  set(k: string, v: V, ttlMs: number, nowMs: number): void {
    this.prune(nowMs);
    // Past the bound the oldest go first: a lost reservation forfeits its refund, a lost
    // request id its deduplication; neither forgives a debt.
    while (this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    this.map.delete(k);
    this.map.set(k, { v, expMs: nowMs + ttlMs });
  }
  delete(k: string): void {
    this.map.delete(k);
  }
  prune(nowMs: number): void {
    for (const [k, e] of this.map) {
      if (e.expMs > nowMs) break;
      this.map.delete(k);
    }
  }
}

/** One key's reservation and request-id records at one time, for runBucket (one object, aimed at each run's key). */
class MemoryKeyRecords implements KeyRecords {
  key = '';
  nowMs = 0;
  constructor(
    private readonly reservations: AuxRecords<number>,
    private readonly requests: AuxRecords<true>,
  ) {}
  private id(x: string): string {
    return `${this.key}\u0000${x}`;
  }
  reservation(id: string): number | undefined {
    return this.reservations.get(this.id(id), this.nowMs);
  }
  setReservation(id: string, amount: number, ttlMs: number): void {
    this.reservations.set(this.id(id), amount, ttlMs, this.nowMs);
  }
  deleteReservation(id: string): void {
    this.reservations.delete(this.id(id));
  }
  applied(requestId: string): boolean {
    return this.requests.get(this.id(requestId), this.nowMs) !== undefined;
  }
  markApplied(requestId: string, windowMs: number): void {
    this.requests.set(this.id(requestId), true, windowMs, this.nowMs);
  }
}

/** Snapshot file format (version 1): absolute wall-clock times, so it survives a restart. */
interface Snapshot {
  version: 1;
  savedAtMs: number;
  /** key, balance, lastFillUs, expiresAtMs, maxTokens, tokensPerFill, fillIntervalUs, ttlSeconds, maxDebt */
  records: [string, number, number, number, number, number, number, number, number][];
  /** key\0id, amount, expMs */
  reservations: [string, number, number][];
  /** key\0id, expMs */
  requests: [string, number][];
}

export class SnapshotError extends Error {}

/** Embedded in-memory store: the default when no Redis is configured (single replica). */
export class MemoryStore implements BucketStore {
  readonly kind = 'memory';
  private readonly map = new Map<string, Entry>();
  private readonly clock: () => number;
  private readonly maxKeys: number;
  private readonly timer?: NodeJS.Timeout;
  private readonly reservations: AuxRecords<number>;
  private readonly requests: AuxRecords<true>;
  private readonly records: MemoryKeyRecords;
  private cursor?: Iterator<[string, Entry]>;
  private readonly onFull?: () => void;

  constructor(opts: MemoryStoreOptions = {}) {
    this.clock = opts.nowUs ?? wallClockUs;
    this.maxKeys = opts.maxKeys ?? 100_000;
    this.onFull = opts.onFull;
    this.reservations = new AuxRecords(this.maxKeys * 10);
    this.requests = new AuxRecords(this.maxKeys * 10);
    this.records = new MemoryKeyRecords(this.reservations, this.requests);
    const sweep = opts.sweepIntervalMs ?? 30_000;
    if (sweep > 0) {
      this.timer = setInterval(() => this.sweep(), sweep);
      this.timer.unref();
    }
  }

  get size(): number {
    return this.map.size;
  }

  async run(key: string, p: BucketParams, op: BucketOp, cost: number, extra?: RunExtra): Promise<BucketResult> {
    const now = this.clock();
    const nowMs = now / 1000;
    let e = this.map.get(key);
    if (e && e.expiresAtMs <= nowMs) {
      this.map.delete(key);
      e = undefined;
    }
    let forgiven = 0;
    if (!e && this.map.size >= this.maxKeys) {
      forgiven = this.makeRoom(now);
      if (forgiven < 0) {
        // Full of balances at or below zero: refuse the new key (nothing is written).
        this.onFull?.();
        const out: BucketResult = { balance: 0, lastFillUs: now, nowUs: now, storeFull: true };
        if (op === 'reserve') out.admitted = false;
        return out;
      }
    }
    const records = this.records;
    records.key = key;
    records.nowMs = nowMs;
    const r = runBucket(e, p, now, op, cost, extra, records);
    if (r.write) {
      if (e) this.map.delete(key); // re-insert: Map order = least recently written first
      this.map.set(key, { balance: r.balance, lastFillUs: r.lastFillUs, expiresAtMs: nowMs + r.ttlMs, p });
    }
    const out: BucketResult = { balance: r.balance, lastFillUs: r.lastFillUs, nowUs: r.nowUs };
    if (op === 'reserve') out.admitted = r.admitted;
    if (r.refunded !== undefined) out.refunded = r.refunded;
    if (r.duplicate) out.duplicate = true;
    if (forgiven > 0) out.forgiven = forgiven;
    return out;
  }

  /**
   * At the bound: drops one record, looking at up to EVICTION_SCAN records from a cursor that
   * goes round the map (least recently written first). The first one that carries no
   * information (expired, or refilled to a full bucket) goes at once: returns 0. Else the one
   * with a positive balance closest to full goes: returns what its key gets back. A flood of new
   * keys that each spend a little then makes room for the next newcomer, and no key gets more
   * than a new key would. -1 when every record examined is at or below zero: a debt, or an
   * exhausted bucket that is refusing its key, must not be forgotten.
   */
  private makeRoom(nowUs: number): number {
    const nowMs = nowUs / 1000;
    let restarted = false;
    let spent: string | undefined;
    let leastShortfall = Infinity;
    for (let i = 0; i < EVICTION_SCAN; i++) {
      this.cursor ??= this.map.entries();
      const next = this.cursor.next();
      if (next.done) {
        this.cursor = undefined;
        if (restarted) break;
        restarted = true;
        continue;
      }
      const [k, e] = next.value;
      const balance = e.expiresAtMs <= nowMs ? e.p.maxTokens : applyBucket(e, e.p, nowUs, 'check', 0).balance;
      const shortfall = e.p.maxTokens - balance;
      if (shortfall <= 0) {
        this.map.delete(k);
        return 0;
      }
      if (balance > 0 && shortfall < leastShortfall) {
        spent = k;
        leastShortfall = shortfall;
      }
    }
    if (spent === undefined) return -1;
    this.map.delete(spent);
    return leastShortfall;
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
    this.reservations.prune(nowMs);
    this.requests.prune(nowMs);
    return n;
  }

  async ping(): Promise<void> {}

  /**
   * Loads a snapshot written by saveSnapshot (a missing file is an empty store: first start).
   * Expired records are skipped. Throws SnapshotError naming the file when it is unreadable.
   */
  loadSnapshot(file: string, nowUs: number = this.clock()): number {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw new SnapshotError(`MEMORY_SNAPSHOT_FILE=${JSON.stringify(file)}: cannot read: ${(e as Error).message}`);
    }
    let snap: Snapshot;
    try {
      snap = JSON.parse(text);
      if (snap.version !== 1 || !Array.isArray(snap.records) || !Array.isArray(snap.reservations) || !Array.isArray(snap.requests)) {
        throw new Error('not a version 1 snapshot');
      }
    } catch (e) {
      throw new SnapshotError(`MEMORY_SNAPSHOT_FILE=${JSON.stringify(file)}: not a snapshot of this service: ${(e as Error).message}`);
    }
    const nowMs = nowUs / 1000;
    let n = 0;
    for (const [k, balance, lastFillUs, expiresAtMs, maxTokens, tokensPerFill, fillIntervalUs, ttlSeconds, maxDebt] of snap.records) {
      if (expiresAtMs <= nowMs) continue;
      this.map.set(k, { balance, lastFillUs, expiresAtMs, p: { maxTokens, tokensPerFill, fillIntervalUs, ttlSeconds, maxDebt } });
      n++;
    }
    for (const [k, amount, expMs] of snap.reservations) if (expMs > nowMs) this.reservations.map.set(k, { v: amount, expMs });
    for (const [k, expMs] of snap.requests) if (expMs > nowMs) this.requests.map.set(k, { v: true, expMs });
    return n;
  }

  private saving?: Promise<void>;

  /** Writes every live record to `file` atomically (a temp file, then rename). One write at a time. */
  saveSnapshot(file: string, nowUs: number = this.clock()): Promise<void> {
    const prev = this.saving ?? Promise.resolve();
    const next = prev.then(async () => {
      const nowMs = nowUs / 1000;
      const snap: Snapshot = { version: 1, savedAtMs: Math.floor(nowMs), records: [], reservations: [], requests: [] };
      for (const [k, e] of this.map) {
        if (e.expiresAtMs <= nowMs) continue;
        const p = e.p;
        snap.records.push([k, e.balance, e.lastFillUs, e.expiresAtMs, p.maxTokens, p.tokensPerFill, p.fillIntervalUs, p.ttlSeconds, p.maxDebt]);
      }
      for (const [k, e] of this.reservations.map) if (e.expMs > nowMs) snap.reservations.push([k, e.v, e.expMs]);
      for (const [k, e] of this.requests.map) if (e.expMs > nowMs) snap.requests.push([k, e.expMs]);
      const tmp = `${file}.tmp-${process.pid}`;
      await writeFile(tmp, JSON.stringify(snap));
      await rename(tmp, file);
    });
    this.saving = next.catch(() => undefined);
    return next;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.snapshotTimer) clearInterval(this.snapshotTimer);
    if (this.snapshotFile) await this.saveSnapshot(this.snapshotFile);
    this.map.clear();
  }

  private snapshotFile?: string;
  private snapshotTimer?: NodeJS.Timeout;

  /**
   * Keeps balances across restarts: loads `file` now, saves it every `everyMs` and on close().
   * `onError` hears about failed periodic saves (the store keeps working).
   */
  persistTo(file: string, everyMs: number, onError: (err: Error) => void): number {
    const n = this.loadSnapshot(file);
    this.snapshotFile = file;
    if (everyMs > 0) {
      this.snapshotTimer = setInterval(() => this.saveSnapshot(file).catch(onError), everyMs);
      this.snapshotTimer.unref();
    }
    return n;
  }
}
