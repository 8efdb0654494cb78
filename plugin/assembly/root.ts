// Per-plugin-configuration state (one per root context): the configuration, usage reports and
// their retries, and what an operator must be told. The calls its streams and itself made wait
// in `calls` for their replies, which deliverReply (calls.ts) hands to whoever made the call.

import { ByteBuf } from "./bytes";
import * as abi from "./abi";
import { Config, parseConfig } from "./config";
import { callStatus } from "./service-call";
import { UsageReport, reportBody, dispatchReport, nextRequestId } from "./report";
import { Outbox, QueuedReport, TICK_MS } from "./outbox";
import { metrics, inc, setGauge, defineMetricsOnce } from "./metrics";
import { PendingCall, deliverReply } from "./calls";

// Errors an operator must see, logged at most once per LOG_EVERY_MS per kind and root.
const LOG_EVERY_MS: i64 = 10000;
export const LOG_UNREACHABLE = 0;
export const LOG_REFUSED = 1;
export const LOG_DROPPED = 2;

/** Per-plugin-configuration state (one per root context). */
export class Root {
  id: u32;
  config: Config | null = null;
  calls: Map<u32, PendingCall> = new Map(); // calls in flight, by token
  outbox: Outbox = new Outbox();
  unreachable: bool = false;
  lastLog: StaticArray<i64> = new StaticArray<i64>(3);
  constructor(id: u32) {
    this.id = id;
  }

  configure(raw: ByteBuf): bool {
    defineMetricsOnce();
    const res = parseConfig(raw);
    if (res.config === null) {
      abi.log(abi.LOG_ERROR, "llm-token-ratelimit: invalid pluginConfig: " + res.error);
      return false;
    }
    const cfg = <Config>res.config;
    this.config = cfg;
    if (cfg.maxQueuedReports > 0) abi.setTickPeriod(TICK_MS);
    abi.log(
      abi.LOG_INFO,
      "llm-token-ratelimit: configured: " +
        cfg.matches.length.toString() +
        " match rule(s), " +
        cfg.keys.length.toString() +
        " key template(s), service cluster " +
        cfg.cluster.display() +
        ", failOpen " +
        cfg.failOpen.toString() +
        ", estimateMissingUsage " +
        cfg.estimateMissingUsage.toString() +
        ", includeStreamUsage " +
        cfg.includeStreamUsage.toString() +
        ", maxRequestBodyBytes " +
        cfg.maxRequestBodyBytes.toString() +
        reserveSummary(cfg),
    );
    return true;
  }

  /** The host refused a call to the service cluster (unknown cluster, bad argument): say so, loudly but rarely. */
  callRefused(): void {
    if (!this.unreachable) {
      this.unreachable = true;
      setGauge(metrics.serviceUnreachable, 1);
    }
    const cfg = this.config;
    if (cfg !== null)
      this.logRarely(
        LOG_UNREACHABLE,
        abi.LOG_ERROR,
        "cannot call the rate-limit service: Envoy refused a call to cluster " + cfg.cluster.display() + " (does the cluster exist?)",
      );
  }

  callDispatched(): void {
    if (this.unreachable) {
      this.unreachable = false;
      setGauge(metrics.serviceUnreachable, 0);
    }
  }

  /** proxy_on_http_call_response: a check's or a report's reply, for whoever made the call. */
  onCallResponse(token: u32, nHeaders: u32, bodySize: u32): void {
    deliverReply(this.calls, token, nHeaders, bodySize);
  }

  logRarely(kind: i32, level: i32, msg: string): void {
    const now = abi.nowMs();
    if (this.lastLog[kind] != 0 && now - this.lastLog[kind] < LOG_EVERY_MS) return;
    this.lastLog[kind] = now == 0 ? 1 : now;
    abi.log(level, "llm-token-ratelimit: " + msg);
  }

  // ---- 6. report ------------------------------------------------------------------------

  report(keys: ByteBuf[], u: UsageReport): void {
    const id = nextRequestId();
    const r = new QueuedReport(reportBody(keys, u, id));
    if (u.model !== null) r.bare = reportBody(keys, u, id, false);
    this.send(r);
  }

  send(r: QueuedReport): void {
    const cfg = this.config;
    if (cfg === null) return;
    const token = dispatchReport(cfg, r.body);
    if (token < 0) {
      this.callRefused();
      this.failed(r);
      return;
    }
    this.callDispatched();
    inc(metrics.reportsSent);
    this.calls.set(<u32>token, new ReportCall(this, r));
  }

  onReportReply(r: QueuedReport, nHeaders: u32): void {
    const status = callStatus(nHeaders);
    if (status >= 200 && status < 300) return;
    // No reply, a timeout, a 5xx or 429: the service may take it later. Another 4xx: it never will.
    if (status == 0 || status >= 500 || status == 429) {
      this.failed(r);
      return;
    }
    inc(metrics.reportFailures);
    // Refused as a bad request: maybe for a label (model), never a reason to lose the counts.
    // Sent once more without the labels (same request_id: applied once).
    const bare = r.bare;
    if (status == 400 && bare !== null) {
      this.logRarely(LOG_DROPPED, abi.LOG_WARN, "usage report refused by the rate-limit service (status 400), sent again without its model");
      const again = new QueuedReport(bare);
      inc(metrics.reportsRetried);
      this.send(again);
      return;
    }
    inc(metrics.reportsDropped);
    this.logRarely(LOG_DROPPED, abi.LOG_WARN, "usage report refused by the rate-limit service (status " + status.toString() + "), dropped");
  }

  failed(r: QueuedReport): void {
    inc(metrics.reportFailures);
    const cfg = this.config;
    if (cfg !== null && this.outbox.retryLater(r, abi.nowMs(), cfg.maxQueuedReports)) return;
    inc(metrics.reportsDropped);
    this.logRarely(LOG_DROPPED, abi.LOG_WARN, "usage report dropped: retry queue full (maxQueuedReports)");
  }

  /**
   * The plugin configuration is going away: replies to its calls, if any still come, go to
   * nobody (a new, empty table; the calls refer back to this root, so keeping them would also
   * keep a reference cycle), and what still waits in the queue is lost, and says so.
   */
  close(): void {
    this.calls = new Map();
    this.dropQueued();
  }

  dropQueued(): void {
    const n = this.outbox.size;
    if (n == 0) return;
    inc(metrics.reportsDropped, <i64>n);
    abi.log(abi.LOG_WARN, "llm-token-ratelimit: " + n.toString() + " usage report(s) still queued were dropped with the configuration");
  }

  /** proxy_on_tick: send the reports whose retry time has come. */
  onTick(): void {
    if (this.outbox.size == 0) return;
    const due = this.outbox.takeDue(abi.nowMs());
    for (let i = 0; i < due.length; i++) {
      inc(metrics.reportsRetried);
      this.send(due[i]);
    }
  }
}

/** A usage report in flight: its reply goes to the root that sent it (to retry it if it failed). */
class ReportCall extends PendingCall {
  root: Root;
  report: QueuedReport;
  constructor(root: Root, report: QueuedReport) {
    super();
    this.root = root;
    this.report = report;
  }

  onReply(nHeaders: u32, bodySize: u32): void {
    this.root.onReportReply(this.report, nHeaders);
  }
}

function reserveSummary(cfg: Config): string {
  if (!cfg.reserve) return ", reserve off";
  const r = cfg.estimate;
  return (
    ", reserve on (charsPerToken " +
    r.charsPerToken.toString() +
    ", cjkCharsPerToken " +
    r.cjkCharsPerToken.toString() +
    ", defaultCompletionTokens " +
    r.defaultCompletionTokens.toString() +
    ")"
  );
}
