import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface MetricsOptions {
  /** Process metrics (process_*, nodejs_*). */
  defaultMetrics?: boolean;
  /** Keys shown in llmrl_top_key_tokens (0: the metric stays empty). Default 20, at most MAX_TOP_KEYS. */
  topKeys?: number;
  /** Interval over which keys' spend is summed, in ms (default 60 000); the gauge shows the last completed one. */
  topKeysIntervalMs?: number;
  /** Clock of the intervals (tests). */
  now?: () => number;
}

/** Hard bounds of llmrl_top_key_tokens: label sets shown, and keys tracked within one interval. */
export const MAX_TOP_KEYS = 100;
export const TOP_KEYS_TRACKED = 10_000;

/**
 * Spend per key over fixed wall-clock intervals (aligned, so every worker agrees on them), the
 * top N of the last completed interval exposed as a gauge: bounded cardinality (N label sets).
 * At most TOP_KEYS_TRACKED keys are summed per interval; later new keys of that interval are
 * not counted (llmrl_top_keys_untracked_total).
 */
class TopKeys {
  private current = new Map<string, { rule: string; tokens: number }>();
  private start: number;
  constructor(
    private readonly gauge: Gauge<'key' | 'rule'>,
    private readonly untracked: Counter<string>,
    private readonly n: number,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.start = this.slot(now());
  }
  private slot(t: number): number {
    return t - (t % this.intervalMs);
  }
  /** Closes the interval when its end has passed: the gauge then shows its top N. */
  roll(): void {
    const s = this.slot(this.now());
    if (s === this.start) return;
    // An interval with no traffic in between shows nothing.
    const last = s - this.start === this.intervalMs ? this.current : new Map();
    this.gauge.reset();
    [...last.entries()]
      .sort((a, b) => b[1].tokens - a[1].tokens)
      .slice(0, this.n)
      .forEach(([key, v]) => this.gauge.set({ key, rule: v.rule }, v.tokens));
    this.current = new Map();
    this.start = s;
  }
  add(key: string, rule: string, tokens: number): void {
    if (this.n === 0) return;
    this.roll();
    const e = this.current.get(key);
    if (e) e.tokens += tokens;
    else if (this.current.size < TOP_KEYS_TRACKED) this.current.set(key, { rule, tokens });
    else this.untracked.inc();
  }
}

/** Prometheus metrics, on a registry per service instance (tests create several). */
export class Metrics {
  readonly registry = new Registry();
  readonly decisions: Counter<'rule' | 'result'>;
  readonly tokensCharged: Counter<'rule'>;
  readonly storeErrors: Counter<'op'>;
  readonly tokensReserved: Counter<'rule'>;
  readonly tokensRefunded: Counter<'rule' | 'reason'>;
  readonly tokensToppedUp: Counter<'rule'>;
  readonly estimatedReports: Counter<'rule'>;
  readonly refundsRefused: Counter<'rule'>;
  readonly unverifiedRefunds: Counter<'rule'>;
  readonly duplicateUpdates: Counter<'rule'>;
  readonly storeFull: Counter<'op'>;
  readonly storeForgiven: Counter;
  readonly cappedCharges: Counter<'rule' | 'op'>;
  readonly metadataErrors: Counter<'field'>;
  readonly requestDuration: Histogram<'route' | 'status'>;
  readonly configReloads: Counter<'result'>;
  readonly topKeyTokens: Gauge<'key' | 'rule'>;
  private readonly topKeys: TopKeys;

  constructor(options: boolean | MetricsOptions = false) {
    const o: MetricsOptions = typeof options === 'boolean' ? { defaultMetrics: options } : options;
    const defaultMetrics = o.defaultMetrics ?? false;
    const registers = [this.registry];
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- prom-client calls collect() with the gauge as `this`
    const self = this;
    this.topKeyTokens = new Gauge({
      name: 'llmrl_top_key_tokens',
      help: 'Tokens charged per key (the rule charge count of the usage, as in llmrl_tokens_charged_total) in the last completed interval (TOP_KEYS_INTERVAL_SECONDS), for the TOP_KEYS keys that spent most; at most that many label sets.',
      labelNames: ['key', 'rule'],
      registers,
      collect() {
        self.topKeys.roll();
      },
    });
    const untracked = new Counter({
      name: 'llmrl_top_keys_untracked_total',
      help: `Charges not summed for llmrl_top_key_tokens because ${TOP_KEYS_TRACKED} keys were already tracked in that interval.`,
      registers,
    });
    this.topKeys = new TopKeys(this.topKeyTokens, untracked, Math.min(o.topKeys ?? 20, MAX_TOP_KEYS), o.topKeysIntervalMs ?? 60_000, o.now);
    this.decisions = new Counter({
      name: 'llmrl_decisions_total',
      help: 'Rate-limit decisions per key checked, by rule (regex) and result (allowed|limited|unruled).',
      labelNames: ['rule', 'result'],
      registers,
    });
    this.tokensCharged = new Counter({
      name: 'llmrl_tokens_charged_total',
      help: 'Tokens charged to buckets, by rule (regex).',
      labelNames: ['rule'],
      registers,
    });
    this.tokensReserved = new Counter({
      name: 'llmrl_tokens_reserved_total',
      help: 'Tokens reserved by admitted checks with reserve=N, by rule (regex).',
      labelNames: ['rule'],
      registers,
    });
    this.tokensRefunded = new Counter({
      name: 'llmrl_tokens_refunded_total',
      help: 'Reserved tokens given back, by rule and reason: report (usage below the reservation), rollback (the request was refused on another key, or the store failed).',
      labelNames: ['rule', 'reason'],
      registers,
    });
    this.tokensToppedUp = new Counter({
      name: 'llmrl_tokens_topped_up_total',
      help: 'Tokens charged by reports beyond their reservation (usage above the estimate), by rule.',
      labelNames: ['rule'],
      registers,
    });
    this.estimatedReports = new Counter({
      name: 'llmrl_estimated_reports_total',
      help: 'Updates flagged "estimated": true (usage estimated by the plugin), per ruled key, by rule.',
      labelNames: ['rule'],
      registers,
    });
    this.refundsRefused = new Counter({
      name: 'llmrl_refunds_refused_total',
      help: 'Updates with reserved_tokens > 0 but no live reservation of the key under their reservation_id (charged in full), per ruled key, by rule.',
      labelNames: ['rule'],
      registers,
    });
    this.unverifiedRefunds = new Counter({
      name: 'llmrl_unverified_refunds_total',
      help: 'Updates refunded reserved_tokens without a reservation_id (ACCEPT_REFUNDS_WITHOUT_RESERVATION_ID=true, migration only), per ruled key, by rule.',
      labelNames: ['rule'],
      registers,
    });
    this.duplicateUpdates = new Counter({
      name: 'llmrl_duplicate_updates_total',
      help: 'Updates whose request_id was already applied to the key (nothing changed), per ruled key, by rule.',
      labelNames: ['rule'],
      registers,
    });
    this.storeFull = new Counter({
      name: 'llmrl_store_full_total',
      help: 'New keys refused by the embedded store at MEMORY_MAX_KEYS because every record examined is at or below zero (a debt or an exhausted bucket), by operation (check: denied; update: 503).',
      labelNames: ['op'],
      registers,
    });
    this.storeForgiven = new Counter({
      name: 'llmrl_store_forgiven_tokens_total',
      help: 'Embedded store at MEMORY_MAX_KEYS: tokens given back to keys whose partly spent record was dropped to make room for a new key (none while a full bucket can go).',
      registers,
    });
    this.cappedCharges = new Counter({
      name: 'llmrl_capped_charges_total',
      help: 'Charges above MAX_UPDATE_TOKENS for one key, charged the cap instead, by rule and operation (update: a report; reserve: a check with reserve=N).',
      labelNames: ['rule', 'op'],
      registers,
    });
    this.metadataErrors = new Counter({
      name: 'llmrl_update_metadata_errors_total',
      help: 'Updates with a bad field that is not a count (model, request_id, reservation_id, estimated), charged without it, by field.',
      labelNames: ['field'],
      registers,
    });
    this.storeErrors = new Counter({
      name: 'llmrl_store_errors_total',
      help: 'Store (Redis) errors, by operation.',
      labelNames: ['op'],
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'llmrl_request_duration_seconds',
      help: 'HTTP request latency, by route and status.',
      labelNames: ['route', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.configReloads = new Counter({
      name: 'llmrl_config_reloads_total',
      help: 'Rule reloads, by result (ok|error).',
      labelNames: ['result'],
      registers,
    });
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }

  /** A key's charge by an applied update, for llmrl_top_key_tokens. */
  spend(key: string, rule: string, tokens: number): void {
    this.topKeys.add(key, rule, tokens);
  }
}
