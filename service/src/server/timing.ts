/** The request-duration metric (llmrl_request_duration_seconds) and the debug access log, for both ports. */
import type { Logger } from '../log';
import type { Metrics } from '../metrics';

export class RequestTimer {
  /** One histogram child per (route, status): no label hashing per request. */
  private readonly children = new Map<string, { observe(v: number): void }>();

  constructor(
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    /** Log every request at debug level (method, route, status, duration; never bodies or query strings: keys may identify users). */
    private readonly accessLog: boolean,
  ) {}

  /** A start time for observe(). */
  static start(): bigint {
    return process.hrtime.bigint();
  }

  observe(method: string | undefined, route: string, status: number, start: bigint): void {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const id = `${route} ${status}`;
    let child = this.children.get(id);
    if (!child) this.children.set(id, (child = this.metrics.requestDuration.labels(route, String(status))));
    child.observe(seconds);
    if (this.accessLog) this.logger.debug('request', { method, route, status, ms: Math.round(seconds * 1e6) / 1e3 });
  }
}
