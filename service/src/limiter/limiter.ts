import type { ChargeField } from '../config/rules';
import type { Metrics } from '../metrics';
import type { BucketStore } from '../store/types';
import { retryAfterSeconds, type BucketOp, type BucketResult } from './bucket';
import type { CompiledRule, RuleSet } from './ruleset';

export interface CheckResult {
  allow: boolean;
  description: string;
  /** Checks with reserve=N > 0, when allowed: N if a ruled key was reserved, else 0. */
  reserved?: number;
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
  /** Tokens reserved at the check (deducted then); the update charges usage − reserved. */
  reserved?: number;
  /** The usage is the plugin's estimate (counted in a metric). */
  estimated?: boolean;
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

/** Applies the rules to keys, on top of a store. Rules can be swapped at any time (reload). */
export class Limiter {
  constructor(
    private ruleSet: RuleSet,
    readonly store: BucketStore,
    private readonly metrics: Metrics,
  ) {}

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
      results = await Promise.all(pending);
    } catch (err) {
      this.metrics.storeErrors.inc({ op: 'check' });
      throw err;
    }
    let best = -1;
    for (let i = 0; i < n; i++) {
      const r = rules[i];
      const res = results[i];
      if (!r || !res) {
        this.metrics.decisions.inc({ rule: '', result: 'unruled' });
        continue;
      }
      if (res.balance <= 0) {
        // Count the remaining keys as not evaluated: the first limited key decides.
        return this.limited(keys[i], r, res, 1);
      }
      this.metrics.decisions.inc({ rule: r.regexSource, result: 'allowed' });
      if (best < 0 || res.balance < results[best]!.balance) best = i;
    }
    if (best < 0) return { allow: true, description: 'ok' };
    return {
      allow: true,
      description: 'ok',
      key: keys[best],
      limit: rules[best]!.maxTokens,
      remaining: results[best]!.balance,
    };
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
  private runPerKey(keys: readonly string[], op: BucketOp, cost: number) {
    const rs = this.ruleSet;
    const rules: (CompiledRule | null)[] = new Array(keys.length);
    const pending: (Promise<BucketResult> | null)[] = new Array(keys.length);
    for (let i = 0; i < keys.length; i++) {
      const r = rs.match(keys[i]);
      rules[i] = r;
      pending[i] = r ? this.store.run(keys[i], r.params, op, cost) : null;
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
  private async reserveCheck(keys: readonly string[], n: number): Promise<CheckResult> {
    const count = keys.length;
    const { rules, pending } = this.runPerKey(keys, 'reserve', n);
    const settled = await Promise.allSettled(pending);
    let failure: unknown;
    let refused = -1;
    const admitted: number[] = [];
    for (let i = 0; i < count; i++) {
      const s = settled[i];
      if (s.status === 'rejected') {
        failure ??= s.reason;
      } else if (s.value) {
        if (s.value.admitted) admitted.push(i);
        else if (refused < 0) refused = i;
      }
    }
    if (failure !== undefined || refused >= 0) {
      await this.rollback(keys, rules, admitted, n);
      if (failure !== undefined) {
        this.metrics.storeErrors.inc({ op: 'check' });
        throw failure;
      }
    }
    let best = -1;
    for (let i = 0; i < count; i++) {
      const r = rules[i];
      const res = (settled[i] as PromiseFulfilledResult<BucketResult | null>).value;
      if (!r || !res) {
        this.metrics.decisions.inc({ rule: '', result: 'unruled' });
        continue;
      }
      if (i === refused) return this.limited(keys[i], r, res, Math.min(n, r.maxTokens));
      this.metrics.decisions.inc({ rule: r.regexSource, result: 'allowed' });
      if (refused < 0) this.metrics.tokensReserved.inc({ rule: r.regexSource }, n);
      if (best < 0 || res.balance < (settled[best] as PromiseFulfilledResult<BucketResult>).value.balance) best = i;
    }
    if (best < 0) return { allow: true, description: 'ok', reserved: 0 };
    return {
      allow: true,
      description: 'ok',
      reserved: n,
      key: keys[best],
      limit: rules[best]!.maxTokens,
      remaining: (settled[best] as PromiseFulfilledResult<BucketResult>).value.balance,
    };
  }

  /** Gives back the reservations of `n` made on keys[i] for i in `admitted` (best effort). */
  private async rollback(keys: readonly string[], rules: (CompiledRule | null)[], admitted: number[], n: number): Promise<void> {
    if (admitted.length === 0) return;
    const results = await Promise.allSettled(admitted.map((i) => this.store.run(keys[i], rules[i]!.params, 'charge', -n)));
    results.forEach((res, j) => {
      // A failed rollback leaves the reservation spent: recovered by the normal refill.
      if (res.status === 'rejected') this.metrics.storeErrors.inc({ op: 'rollback' });
      else this.metrics.tokensRefunded.inc({ rule: rules[admitted[j]]!.regexSource, reason: 'rollback' }, n);
    });
  }

  /**
   * Charges each ruled key its rule's `charge` count minus `opts.reserved` (the tokens
   * reserved at the check): negative is a refund, capped at max_tokens. Keys without a rule
   * are ignored. Returns the number of keys charged.
   */
  async update(keys: readonly string[], usage: Usage, opts: UpdateOptions = {}): Promise<number> {
    const rs = this.ruleSet;
    const reserved = opts.reserved ?? 0;
    const ops: Promise<BucketResult>[] = [];
    const charged: [CompiledRule, number][] = [];
    for (const key of keys) {
      const r = rs.match(key);
      if (!r) continue;
      const cost = usage[r.charge];
      ops.push(this.store.run(key, r.params, 'charge', cost - reserved));
      charged.push([r, cost]);
    }
    try {
      await Promise.all(ops);
    } catch (err) {
      this.metrics.storeErrors.inc({ op: 'update' });
      throw err;
    }
    for (const [r, cost] of charged) {
      const rule = r.regexSource;
      this.metrics.tokensCharged.inc({ rule }, cost);
      if (reserved > cost) this.metrics.tokensRefunded.inc({ rule, reason: 'report' }, reserved - cost);
      else if (reserved > 0 && cost > reserved) this.metrics.tokensToppedUp.inc({ rule }, cost - reserved);
      if (opts.estimated) this.metrics.estimatedReports.inc({ rule });
    }
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
