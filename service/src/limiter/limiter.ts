import type { ChargeField } from '../config/rules';
import { DEFAULT_MAX_UPDATE_TOKENS, DEFAULT_REQUEST_WINDOW_MS, DEFAULT_RESERVATION_TTL_MS } from '../config/env';
import { silentLogger, type Logger } from '../log';
import type { Metrics } from '../metrics';
import { randomUUID } from 'node:crypto';
import { retryAfterSeconds, type BucketOp, type BucketResult } from '../bucket/math';
import type { RunExtra } from '../bucket/reservation';
import { StoreError, type BucketStore } from '../store/types';
import type { CompiledRule, RuleSet } from './ruleset';

export interface CheckResult {
  allow: boolean;
  description: string;
  /** Checks with reserve=N > 0, when allowed: N if a ruled key was reserved, else 0. */
  reserved?: number;
  /** With reserved > 0: names the reservation; an update's refund needs it. */
  reservation_id?: string;
  /** The deciding key: the first limited one, else the ruled key with the lowest remaining. */
  key?: string;
  limit?: number;
  remaining?: number;
  retry_after_seconds?: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface UpdateOptions {
  /**
   * Tokens reserved at the check (deducted then); with a live `reservationId` of the key the
   * update charges usage − min(reserved, what that reservation deducted), else usage in full.
   */
  reserved?: number;
  /** The check's reservation_id. */
  reservationId?: string;
  /** Applied at most once per key within the request window. */
  requestId?: string;
  /** The usage is the plugin's estimate (counted in a metric). */
  estimated?: boolean;
  /**
   * Called once the update is applied, with what each key newly charged was charged (its count
   * minus the refund of its reservation), in key order; not called when no key was charged
   * (no key has a rule, or every ruled key already had this request_id).
   */
  onApplied?: (charges: AppliedCharge[]) => void;
}

/** One key's charge by an applied update (negative: the reservation's refund exceeded the usage). */
export interface AppliedCharge {
  key: string;
  rule: string;
  charge: number;
}

export interface BucketView {
  key: string;
  rule: null | {
    index: number;
    rate_limit_key_regex: string;
    redis_expired_seconds: number;
    fill_interval_second: number;
    tokens_per_fill: number;
    max_tokens: number;
    charge: ChargeField;
  };
  balance?: number;
  last_fill_unix_ms?: number;
  retry_after_seconds?: number;
}

export interface LimiterOptions {
  /** How long a reservation can be settled by an update (default DEFAULT_RESERVATION_TTL_MS, 1 h). */
  reservationTtlMs?: number;
  /** How long a request_id is remembered (default DEFAULT_REQUEST_WINDOW_MS, 10 min). */
  requestWindowMs?: number;
  /**
   * Migration only: honour `reserved_tokens` in an update that has no `reservation_id` (the
   * behaviour before reservation ids, for plugins that do not send the id yet). Reopens self-credit.
   */
  acceptRefundsWithoutReservationId?: boolean;
  /**
   * MAX_UPDATE_TOKENS: the most one update charges a key, and the most one check reserves
   * (default DEFAULT_MAX_UPDATE_TOKENS). A forged report then costs a key no more than one request could.
   */
  maxUpdateTokens?: number;
  /** Hears about capped charges (a warning at most every CAP_LOG_INTERVAL_MS). */
  logger?: Logger;
}

/** At most one "charge capped" line per this period: a flood of forged reports must not flood the log. */
const CAP_LOG_INTERVAL_MS = 10_000;

/** Applies the rules to keys, on top of a store. Rules can be swapped at any time (reload). */
export class Limiter {
  private readonly reservationTtlMs: number;
  private readonly requestWindowMs: number;
  private readonly legacyRefunds: boolean;
  private readonly maxUpdateTokens: number;
  private readonly logger: Logger;
  private lastCapLog = 0;

  constructor(
    private ruleSet: RuleSet,
    readonly store: BucketStore,
    private readonly metrics: Metrics,
    opts: LimiterOptions = {},
  ) {
    this.reservationTtlMs = opts.reservationTtlMs ?? DEFAULT_RESERVATION_TTL_MS;
    this.requestWindowMs = opts.requestWindowMs ?? DEFAULT_REQUEST_WINDOW_MS;
    this.legacyRefunds = opts.acceptRefundsWithoutReservationId ?? false;
    this.maxUpdateTokens = opts.maxUpdateTokens ?? DEFAULT_MAX_UPDATE_TOKENS;
    this.logger = opts.logger ?? silentLogger;
  }

  /** A charge or reservation above MAX_UPDATE_TOKENS: counted, and logged by rule (keys may identify users). */
  private capped(rule: string, op: 'update' | 'reserve', asked: number): void {
    this.metrics.cappedCharges.inc({ rule, op });
    const now = Date.now();
    if (now - this.lastCapLog < CAP_LOG_INTERVAL_MS) return;
    this.lastCapLog = now;
    this.logger.warn('charge above MAX_UPDATE_TOKENS: the cap was charged instead (a forged or runaway report?)', {
      rule,
      op,
      tokens: asked,
      max_update_tokens: this.maxUpdateTokens,
    });
  }

  /** What the embedded store says about a new key at its bound: refused, or made room by forgiving another. */
  private storeNotes(res: BucketResult, op: 'check' | 'update'): void {
    if (res.storeFull) this.metrics.storeFull.inc({ op });
    if (res.forgiven) this.metrics.storeForgiven.inc(res.forgiven);
  }

  get rules(): RuleSet {
    return this.ruleSet;
  }

  setRules(rs: RuleSet): void {
    this.ruleSet = rs;
  }

  /**
   * Check. With `reserve` > 0, also reserves: see reserveCheck. 0 (the default) is the
   * reference check, consuming nothing.
   */
  async check(keys: readonly string[], reserve = 0): Promise<CheckResult> {
    if (reserve > 0) return this.reserveCheck(keys, reserve);
    const n = keys.length;
    const { rules, pending } = this.runPerKey(keys, 'check', 0);
    let results: (BucketResult | null)[];
    try {
      // eslint-disable-next-line @typescript-eslint/await-thenable -- null for a key without a rule, a promise otherwise
      results = await Promise.all(pending);
    } catch (err) {
      this.metrics.storeErrors.inc({ op: 'check' });
      throw err;
    }
    for (let i = 0; i < n; i++) {
      const r = rules[i];
      const res = results[i];
      if (!r || !res) {
        this.metrics.decisions.inc({ rule: '', result: 'unruled' });
        continue;
      }
      this.storeNotes(res, 'check');
      if (res.balance <= 0) {
        // Count the remaining keys as not evaluated: the first limited key decides.
        return this.limited(keys[i], r, res, 1);
      }
      this.metrics.decisions.inc({ rule: r.regexSource, result: 'allowed' });
    }
    return allowed(keys, rules, results, {});
  }

  /** The refusal for the deciding key; `need` is the balance that would admit (1 without a reservation). */
  private limited(key: string, r: CompiledRule, res: BucketResult, need: number): CheckResult {
    this.metrics.decisions.inc({ rule: r.regexSource, result: 'limited' });
    return {
      allow: false,
      description: `${key} is being rate-limited`,
      key,
      limit: r.maxTokens,
      remaining: Math.max(res.balance, 0),
      retry_after_seconds: retryAfterSeconds(res, r.params, need),
    };
  }

  /** Starts one store step per key that has a rule (in parallel); null where no rule applies. */
  private runPerKey(keys: readonly string[], op: BucketOp, cost: number, extra?: RunExtra) {
    const rs = this.ruleSet;
    const rules: (CompiledRule | null)[] = new Array(keys.length);
    const pending: (Promise<BucketResult> | null)[] = new Array(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const r = rs.match(keys[i]);
      rules[i] = r;
      pending[i] = r ? this.store.run(keys[i], r.params, op, cost, extra) : null;
    }
    return { rules, pending };
  }

  /**
   * Check with a reservation of `n` tokens. Per ruled key, in one atomic store step: refill;
   * admit iff balance > 0 and balance >= min(n, max_tokens); if admitted deduct n. The keys
   * run in parallel; all must admit. If any refuses (or the store fails on any), the
   * reservations made on the others are given back (a capped refund) before replying, so a
   * refused request leaves nothing reserved. This is not atomic across keys (they may live
   * in different Redis Cluster slots): for a moment a concurrent request can see a balance
   * lowered by a reservation that is then rolled back.
   */
  private async reserveCheck(keys: readonly string[], asked: number): Promise<CheckResult> {
    const count = keys.length;
    const n = Math.min(asked, this.maxUpdateTokens);
    const extra: RunExtra = { reservationId: randomUUID(), reservationTtlMs: this.reservationTtlMs };
    const { rules, pending } = this.runPerKey(keys, 'reserve', n, extra);
    // eslint-disable-next-line @typescript-eslint/await-thenable -- null for a key without a rule, a promise otherwise
    const settled = await Promise.allSettled(pending);
    let failure: unknown;
    let refused = -1;
    const admitted: number[] = [];
    for (let i = 0; i < count; i++) {
      const s = settled[i];
      if (s.status === 'rejected') {
        failure ??= s.reason;
      } else if (s.value) {
        this.storeNotes(s.value, 'check');
        if (s.value.admitted) admitted.push(i);
        else if (refused < 0) refused = i;
      }
    }
    if (failure !== undefined || refused >= 0) {
      await this.rollback(keys, rules, admitted, n, extra.reservationId!);
      if (failure !== undefined) {
        this.metrics.storeErrors.inc({ op: 'check' });
        throw failure;
      }
    }
    const results = settled.map((x) => (x.status === 'fulfilled' ? x.value : null));
    for (let i = 0; i < count; i++) {
      const r = rules[i];
      const res = results[i];
      if (!r || !res) {
        this.metrics.decisions.inc({ rule: '', result: 'unruled' });
        continue;
      }
      if (i === refused) return this.limited(keys[i], r, res, Math.min(n, r.maxTokens));
      this.metrics.decisions.inc({ rule: r.regexSource, result: 'allowed' });
      if (refused < 0) this.metrics.tokensReserved.inc({ rule: r.regexSource }, n);
      if (refused < 0 && asked > n) this.capped(r.regexSource, 'reserve', asked);
    }
    return allowed(keys, rules, results, { reserved: n, reservation_id: extra.reservationId });
  }

  /** Gives back the reservations of `n` made on keys[i] for i in `admitted` (best effort). */
  private async rollback(keys: readonly string[], rules: (CompiledRule | null)[], admitted: number[], n: number, id: string): Promise<void> {
    if (admitted.length === 0) return;
    // Settles the reservation with no usage: gives back what it deducted, and deletes it. A key
    // admitted several times (listed twice) holds them all under the id: settled once, for all.
    const times = new Map<string, number>();
    for (const i of admitted) times.set(keys[i], (times.get(keys[i]) ?? 0) + 1);
    const once = admitted.filter((i, j) => admitted.findIndex((k) => keys[k] === keys[i]) === j);
    const results = await Promise.allSettled(
      once.map((i) => this.store.run(keys[i], rules[i]!.params, 'charge', 0, { reservationId: id, claimed: n * times.get(keys[i])! })),
    );
    results.forEach((res, j) => {
      // A failed rollback leaves the reservation spent: recovered by the normal refill.
      if (res.status === 'rejected') this.metrics.storeErrors.inc({ op: 'rollback' });
      else this.metrics.tokensRefunded.inc({ rule: rules[once[j]]!.regexSource, reason: 'rollback' }, n * times.get(keys[once[j]])!);
    });
  }

  /**
   * Charges each ruled key its rule's `charge` count. With `opts.reservationId` naming a live
   * reservation of the key, min(`opts.reserved`, its amount) is refunded in the same atomic
   * step and the reservation is deleted (a refund happens once); without one, `reserved` is
   * ignored and the count is charged in full. With `opts.requestId`, a key already charged
   * under that id (within the window) is left as it is. Keys without a rule are ignored.
   * Returns the number of ruled keys.
   */
  async update(keys: readonly string[], usage: Usage, opts: UpdateOptions = {}): Promise<number> {
    const rs = this.ruleSet;
    const reserved = opts.reserved ?? 0;
    let extra: RunExtra | undefined;
    if (opts.requestId !== undefined || (opts.reservationId !== undefined && reserved > 0)) {
      extra = { requestWindowMs: this.requestWindowMs };
      if (opts.requestId !== undefined) extra.requestId = opts.requestId;
      if (opts.reservationId !== undefined && reserved > 0) {
        extra.reservationId = opts.reservationId;
        extra.claimed = reserved;
      }
    }
    // Migration mode: an update without reservation_id is refunded its reserved_tokens unverified.
    const unverified = this.legacyRefunds && opts.reservationId === undefined ? reserved : 0;
    const ops: Promise<BucketResult>[] = [];
    const charged: [CompiledRule, number, boolean, string][] = [];
    // A key listed n times reserved n times under one id: its first occurrence settles n × R.
    const seen = extra?.reservationId !== undefined && keys.length > 1 ? new Map<string, number>() : undefined;
    if (seen) for (const k of keys) seen.set(k, (seen.get(k) ?? 0) + 1);
    for (const key of keys) {
      const r = rs.match(key);
      if (!r) continue;
      let cost = usage[r.charge];
      if (cost > this.maxUpdateTokens) {
        this.capped(r.regexSource, 'update', cost);
        cost = this.maxUpdateTokens;
      }
      let x = extra;
      const n = seen?.get(key);
      const later = n === 0;
      if (n !== undefined) {
        // First occurrence: claim for all; later ones (n = 0): the reservation is settled already.
        x = n > 0 ? { ...extra, claimed: reserved * n } : { ...extra, reservationId: undefined, claimed: undefined };
        seen!.set(key, 0);
      }
      ops.push(this.store.run(key, r.params, 'charge', cost - unverified, x));
      charged.push([r, cost, later, key]);
    }
    let results: BucketResult[];
    try {
      results = await Promise.all(ops);
    } catch (err) {
      this.metrics.storeErrors.inc({ op: 'update' });
      throw err;
    }
    let full = false;
    const applied: AppliedCharge[] = [];
    for (let i = 0; i < charged.length; i++) {
      const [r, cost, later, key] = charged[i];
      const res = results[i];
      const rule = r.regexSource;
      this.storeNotes(res, 'update');
      if (res.storeFull) {
        full = true;
        continue;
      }
      if (res.duplicate) {
        this.metrics.duplicateUpdates.inc({ rule });
        continue;
      }
      this.metrics.tokensCharged.inc({ rule }, cost);
      const refunded = unverified || (res.refunded ?? 0);
      if (unverified) this.metrics.unverifiedRefunds.inc({ rule });
      // reserved_tokens without a live reservation of this key: nothing is refunded.
      if (reserved > 0 && refunded === 0 && !later) this.metrics.refundsRefused.inc({ rule });
      if (refunded > cost) this.metrics.tokensRefunded.inc({ rule, reason: 'report' }, refunded - cost);
      else if (refunded > 0 && cost > refunded) this.metrics.tokensToppedUp.inc({ rule }, cost - refunded);
      if (opts.estimated) this.metrics.estimatedReports.inc({ rule });
      applied.push({ key, rule, charge: cost - refunded });
      this.metrics.spend(key, rule, cost);
    }
    if (applied.length > 0 && opts.onApplied) opts.onApplied(applied);
    if (full) throw new StoreError('embedded store full: every record examined is at or below zero: none can be dropped without forgetting a debt');
    return charged.length;
  }

  /** Read-only view of one key's bucket (never writes). */
  async peek(key: string): Promise<BucketView> {
    const r = this.ruleSet.match(key);
    if (!r) return { key, rule: null };
    let res: BucketResult;
    try {
      res = await this.store.run(key, r.params, 'check', 0);
    } catch (err) {
      this.metrics.storeErrors.inc({ op: 'peek' });
      throw err;
    }
    const view: BucketView = {
      key,
      rule: {
        index: r.index,
        rate_limit_key_regex: r.regexSource,
        redis_expired_seconds: r.expiredSeconds,
        fill_interval_second: r.fillIntervalSeconds,
        tokens_per_fill: r.tokensPerFill,
        max_tokens: r.maxTokens,
        charge: r.charge,
      },
      balance: res.balance,
      last_fill_unix_ms: Math.floor(res.lastFillUs / 1000),
    };
    if (res.balance <= 0) view.retry_after_seconds = retryAfterSeconds(res, r.params);
    return view;
  }
}

/**
 * The allowed reply: for the ruled key closest to its limit (the lowest balance), its limit and
 * balance. No key with a rule: the bare reference reply (and nothing was reserved).
 */
function allowed(
  keys: readonly string[],
  rules: (CompiledRule | null)[],
  results: (BucketResult | null)[],
  reservation: { reserved?: number; reservation_id?: string },
): CheckResult {
  let best = -1;
  for (let i = 0; i < keys.length; i++) {
    const res = results[i];
    if (!rules[i] || !res) continue;
    if (best < 0 || res.balance < results[best]!.balance) best = i;
  }
  if (best < 0) return reservation.reserved === undefined ? { allow: true, description: 'ok' } : { allow: true, description: 'ok', reserved: 0 };
  return { allow: true, description: 'ok', ...reservation, key: keys[best], limit: rules[best]!.maxTokens, remaining: results[best]!.balance };
}
