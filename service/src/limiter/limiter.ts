import type { ChargeField } from '../config/rules';
import type { Metrics } from '../metrics';
import type { BucketStore } from '../store/types';
import { retryAfterSeconds, type BucketResult } from './bucket';
import type { CompiledRule, RuleSet } from './ruleset';

export interface CheckResult {
  allow: boolean;
  description: string;
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

  async check(keys: readonly string[]): Promise<CheckResult> {
    const rs = this.ruleSet;
    const n = keys.length;
    const rules: (CompiledRule | null)[] = new Array(n);
    const pending: (Promise<BucketResult> | null)[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const r = rs.match(keys[i]);
      rules[i] = r;
      pending[i] = r ? this.store.run(keys[i], r.params, 'check', 0) : null;
    }
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
        this.metrics.decisions.inc({ rule: r.regexSource, result: 'limited' });
        // Count the remaining keys as not evaluated: the first limited key decides.
        return {
          allow: false,
          description: `${keys[i]} is being rate-limited`,
          key: keys[i],
          limit: r.maxTokens,
          remaining: 0,
          retry_after_seconds: retryAfterSeconds(res, r.params),
        };
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

  /** Charges each ruled key; keys without a rule are ignored. Returns the number charged. */
  async update(keys: readonly string[], usage: Usage): Promise<number> {
    const rs = this.ruleSet;
    const ops: Promise<BucketResult>[] = [];
    const charged: [CompiledRule, number][] = [];
    for (const key of keys) {
      const r = rs.match(key);
      if (!r) continue;
      const cost = usage[r.charge];
      ops.push(this.store.run(key, r.params, 'charge', cost));
      charged.push([r, cost]);
    }
    try {
      await Promise.all(ops);
    } catch (err) {
      this.metrics.storeErrors.inc({ op: 'update' });
      throw err;
    }
    for (const [r, cost] of charged) this.metrics.tokensCharged.inc({ rule: r.regexSource }, cost);
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
