// Envoy counters (Envoy shows them with its "wasmcustom." prefix, e.g.
// wasmcustom.llm_ratelimit.requests_allowed). Defined once per VM.

import { defineCounter, defineGauge, incrementCounter, recordGauge } from "./abi";

export const PREFIX = "llm_ratelimit.";

export class Metrics {
  allowed: u32 = 0; // check answered allow
  limited: u32 = 0; // check answered deny -> rejectStatus
  failOpen: u32 = 0; // check failed, request let through (failOpen)
  failClosed: u32 = 0; // check failed, request answered 503
  missingKeyDenied: u32 = 0; // a key placeholder had no value and onMissingKey is deny
  reportsSent: u32 = 0; // usage report dispatched
  reportFailures: u32 = 0; // usage report refused, failed or answered non-200
  usageNotFound: u32 = 0; // response ended without a usage object
  compressedSkipped: u32 = 0; // response had a content-encoding we do not decode
  usageTooLarge: u32 = 0; // a usage object exceeded maxBufferBytes and was dropped
  usageEstimated: u32 = 0; // no usage in the response, an estimate was reported
  bodyOverLimit: u32 = 0; // request body above maxRequestBodyBytes, estimated from its length
  checkRefused: u32 = 0; // the service refused the check (4xx, JSON): request refused
  badHost: u32 = 0; // malformed Host refused by host matching
  reportsRetried: u32 = 0; // a failed report sent again
  reportsDropped: u32 = 0; // a report given up (retry queue full, or refused by the service)
  serviceUnreachable: u32 = 0; // gauge: 1 while the host refuses calls to the service cluster (e.g. unknown cluster)

  define(): void {
    this.allowed = defineCounter(PREFIX + "requests_allowed");
    this.limited = defineCounter(PREFIX + "requests_limited");
    this.failOpen = defineCounter(PREFIX + "check_failed_open");
    this.failClosed = defineCounter(PREFIX + "check_failed_closed");
    this.missingKeyDenied = defineCounter(PREFIX + "missing_key_denied");
    this.reportsSent = defineCounter(PREFIX + "reports_sent");
    this.reportFailures = defineCounter(PREFIX + "report_failures");
    this.usageNotFound = defineCounter(PREFIX + "usage_not_found");
    this.compressedSkipped = defineCounter(PREFIX + "compressed_skipped");
    this.usageTooLarge = defineCounter(PREFIX + "usage_too_large");
    this.usageEstimated = defineCounter(PREFIX + "usage_estimated");
    this.bodyOverLimit = defineCounter(PREFIX + "request_body_over_limit");
    this.checkRefused = defineCounter(PREFIX + "check_refused");
    this.badHost = defineCounter(PREFIX + "bad_host_refused");
    this.reportsRetried = defineCounter(PREFIX + "reports_retried");
    this.reportsDropped = defineCounter(PREFIX + "reports_dropped");
    this.serviceUnreachable = defineGauge(PREFIX + "service_unreachable");
  }
}

export const metrics = new Metrics();
let defined = false;

export function defineMetricsOnce(): void {
  if (defined) return;
  defined = true;
  metrics.define();
}

export function inc(id: u32, by: i64 = 1): void {
  incrementCounter(id, by);
}

export function setGauge(id: u32, v: u64): void {
  recordGauge(id, v);
}
