/** What both ports' handlers are built from. */
import type { Limiter } from '../limiter/limiter';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { UsageRecorder } from '../usage';
import type { Authenticator } from './auth';

export interface HttpDeps {
  limiter: Limiter;
  metrics: Metrics;
  logger: Logger;
  /** Bearer tokens for the protocol routes; undefined = open (as the reference). */
  auth?: Authenticator;
  /** Bearer tokens for /buckets on the admin port; undefined = /buckets disabled (403). */
  adminAuth?: Authenticator;
  /** Usage records (USAGE_RECORDS): one line per applied update. */
  usage?: UsageRecorder;
  /** What /metrics serves (default: `metrics.registry`); the cluster primary serves its workers' metrics, aggregated. */
  metricsSource?: { contentType: string; metrics(): Promise<string> };
}
