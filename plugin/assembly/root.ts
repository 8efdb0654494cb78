// Per-plugin-configuration state (one per root context): the configuration, the calls its
// streams made (a reply is routed back to whoever made the call, as the Rust SDK's dispatcher
// does), usage reports and their retries, and what an operator must be told.

import { ByteBuf } from "./bytes";
import * as abi from "./abi";
import { Config, parseConfig } from "./config";
import { readDecision, callStatus, Decision, ALLOW } from "./check";
import { Usage, reportBody, dispatchReport, nextRequestId } from "./report";
import { Outbox, QueuedReport, TICK_MS } from "./outbox";
import { metrics, inc, setGauge, defineMetricsOnce } from "./metrics";
import { streamOf, PH_CHECKING } from "./filter";

export const CALL_CHECK = 0;
export const CALL_REPORT = 1;

// Errors an operator must see, logged at most once per LOG_EVERY_MS per kind and root.
const LOG_EVERY_MS: i64 = 10000;
export const LOG_UNREACHABLE = 0;
export const LOG_REFUSED = 1;
export const LOG_DROPPED = 2;

/** Per-plugin-configuration state (one per root context). */
export class Root {
  id: u32;
  config: Config | null = null;
  calls: Map<u32, PendingCall> = new Map();
  outbox: Outbox = new Outbox();
  unreachable: bool = false;
  lastLog: StaticArray<i64> = new StaticArray<i64>(3);
  constructor(id: u32) { this.id = id; }

  configure(raw: ByteBuf): bool {
    defineMetricsOnce();
    let res = parseConfig(raw);
    if (res.config === null) {
      abi.log(abi.LOG_ERROR, "llm-token-ratelimit: invalid pluginConfig: " + res.error);
      return false;
    }
    let cfg = <Config>res.config;
    this.config = cfg;
    if (cfg.maxQueuedReports > 0) abi.setTickPeriod(TICK_MS);
    abi.log(abi.LOG_INFO, "llm-token-ratelimit: configured: " + cfg.matches.length.toString() + " match rule(s), " +
      cfg.keys.length.toString() + " key template(s), service cluster " + cfg.cluster.display() +
      ", failOpen " + cfg.failOpen.toString() + ", estimateMissingUsage " + cfg.estimateMissingUsage.toString() +
      ", includeStreamUsage " + cfg.includeStreamUsage.toString() + ", maxRequestBodyBytes " + cfg.maxRequestBodyBytes.toString() +
      reserveSummary(cfg));
    return true;
  }

  track(token: u32, kind: i32, streamId: u32): PendingCall {
    let pc = new PendingCall(kind, streamId);
    this.calls.set(token, pc);
    return pc;
  }

  /** The host refused a call to the service cluster (unknown cluster, bad argument): say so, loudly but rarely. */
  callRefused(): void {
    if (!this.unreachable) { this.unreachable = true; setGauge(metrics.serviceUnreachable, 1); }
    let cfg = this.config;
    if (cfg !== null) this.logRarely(LOG_UNREACHABLE, abi.LOG_ERROR, "cannot call the rate-limit service: Envoy refused a call to cluster " +
      cfg.cluster.display() + " (does the cluster exist?)");
  }

  callDispatched(): void {
    if (this.unreachable) { this.unreachable = false; setGauge(metrics.serviceUnreachable, 0); }
  }

  logRarely(kind: i32, level: i32, msg: string): void {
    let now = abi.nowMs();
    if (this.lastLog[kind] != 0 && now - this.lastLog[kind] < LOG_EVERY_MS) return;
    this.lastLog[kind] = now == 0 ? 1 : now;
    abi.log(level, "llm-token-ratelimit: " + msg);
  }

  // ---- 2. check reply (and report replies): routed to whoever made the call -------------

  onCallResponse(token: u32, nHeaders: u32, bodySize: u32): void {
    if (!this.calls.has(token)) return;
    let call = this.calls.get(token);
    this.calls.delete(token);
    if (call.kind == CALL_REPORT) { this.onReportReply(call, nHeaders); return; }
    // Read the reply while the root context is effective, before touching the stream.
    let d = readDecision(nHeaders, bodySize);
    let s = streamOf(call.streamId);
    // The stream is gone or past the check: touch nothing of it, only give back a reservation.
    if (s === null || s.ended || s.phase != PH_CHECKING || abi.setEffectiveContext(s.id) != abi.OK) {
      this.refundUnused(call, d);
      return;
    }
    s.onCheckReply(d);
  }

  /** A reservation granted after its stream ended (client gone while the check was pending): give it all back. */
  refundUnused(call: PendingCall, d: Decision): void {
    let keys = call.keys;
    if (d.outcome != ALLOW || d.reserved <= 0 || keys === null) return;
    let u = new Usage();
    u.reserved = d.reserved;
    u.reservationId = d.reservationId;
    this.report(keys, u);
  }

  // ---- 6. report ------------------------------------------------------------------------

  report(keys: ByteBuf[], u: Usage): void {
    this.send(new QueuedReport(reportBody(keys, u, nextRequestId())));
  }

  send(r: QueuedReport): void {
    let cfg = this.config;
    if (cfg === null) return;
    let token = dispatchReport(cfg, r.body);
    if (token < 0) {
      this.callRefused();
      this.failed(r);
      return;
    }
    this.callDispatched();
    inc(metrics.reportsSent);
    let pc = this.track(<u32>token, CALL_REPORT, 0);
    pc.report = r;
  }

  onReportReply(call: PendingCall, nHeaders: u32): void {
    let status = callStatus(nHeaders);
    if (status >= 200 && status < 300) return;
    let r = call.report;
    if (r === null) return;
    // No reply, a timeout, a 5xx or 429: the service may take it later. Another 4xx: it never will.
    if (status == 0 || status >= 500 || status == 429) { this.failed(r); return; }
    inc(metrics.reportFailures);
    inc(metrics.reportsDropped);
    this.logRarely(LOG_DROPPED, abi.LOG_WARN, "usage report refused by the rate-limit service (status " + status.toString() + "), dropped");
  }

  failed(r: QueuedReport): void {
    inc(metrics.reportFailures);
    let cfg = this.config;
    if (cfg !== null && this.outbox.retryLater(r, abi.nowMs(), cfg.maxQueuedReports)) return;
    inc(metrics.reportsDropped);
    this.logRarely(LOG_DROPPED, abi.LOG_WARN, "usage report dropped: retry queue full (maxQueuedReports)");
  }

  /** The plugin configuration is going away: what still waits in the queue is lost, and says so. */
  dropQueued(): void {
    let n = this.outbox.size;
    if (n == 0) return;
    inc(metrics.reportsDropped, <i64>n);
    abi.log(abi.LOG_WARN, "llm-token-ratelimit: " + n.toString() + " usage report(s) still queued were dropped with the configuration");
  }

  /** proxy_on_tick: send the reports whose retry time has come. */
  onTick(): void {
    if (this.outbox.size == 0) return;
    let due = this.outbox.takeDue(abi.nowMs());
    for (let i = 0; i < due.length; i++) {
      inc(metrics.reportsRetried);
      this.send(due[i]);
    }
  }
}

export class PendingCall {
  kind: i32;
  streamId: u32;
  keys: ByteBuf[] | null = null;     // reserve-mode checks: to refund a reservation the stream can no longer use
  report: QueuedReport | null = null; // reports: to retry it
  constructor(kind: i32, streamId: u32) { this.kind = kind; this.streamId = streamId; }
}

function reserveSummary(cfg: Config): string {
  let r = cfg.reserve;
  if (!r.enabled) return ", reserve off";
  return ", reserve on (charsPerToken " + r.charsPerToken.toString() + ", cjkCharsPerToken " + r.cjkCharsPerToken.toString() +
    ", defaultCompletionTokens " + r.defaultCompletionTokens.toString() + ")";
}
