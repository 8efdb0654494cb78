import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
  readonly requestDuration: Histogram<'route' | 'status'>;
  readonly configReloads: Counter<'result'>;

  constructor(defaultMetrics = false) {
    const registers = [this.registry];
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
      help: 'New keys refused by the embedded store because every record holds a balance below full, by operation (check: denied; update: 503).',
      labelNames: ['op'],
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
}
