// The HTTP filter, top to bottom:
//   request headers -> match? -> render keys -> pause + check call
//   check reply     -> continue | rejectStatus | fail open / 503
//   response        -> scan body for usage as it passes -> report when the response ends
//
// With reserve.enabled the check moves to the end of the request body: request headers
// continue (the body callbacks only come after they do), the body is buffered in Envoy up
// to reserve.maxBodyBytes, its cost is estimated (estimate.ts) and the check carries
// &reserve=N; the request stays paused until the reply. The report then carries
// reserved_tokens, and a response without usage is charged an estimate.

import { ByteBuf } from "./bytes";
import * as abi from "./abi";
import { Config, parseConfig } from "./config";
import { RequestView } from "./request";
import { requestMatches } from "./match";
import { renderKeys } from "./keys";
import { dispatchCheck, readDecision, callStatus, Decision, ALLOW, DENY } from "./check";
import { sendLimited, sendCheckFailed, sendMissingKey } from "./reply";
import { UsageScanner } from "./usage";
import { estimateRequest, lengthTokens, tokensFor, MAX_ESTIMATE } from "./estimate";
import { requestHeader } from "./request";
import { reportBody, dispatchReport } from "./report";
import { metrics, inc, defineMetricsOnce } from "./metrics";

// Filter return codes (Proxy-Wasm).
export const CONTINUE = 0;
export const STOP_ITERATION = 1;
export const STOP_AND_BUFFER = 1;    // data: keep buffering in Envoy (reserve: the body is read at its end)
export const STOP_AND_WATERMARK = 2; // data: buffer with flow control instead of 413
export const STOP_NO_BUFFER = 3;     // data: after a local response

const PH_CHECKING = 0;
const PH_ALLOWED = 1;   // also: check failed and failOpen
const PH_REJECTED = 2;  // we sent a local response
const PH_BUFFERING = 3; // reserve: collecting the request body, no check yet

// What starting a check did.
const START_PENDING = 0;
const START_ALLOWED = 1;  // host refused the call, failOpen
const START_REJECTED = 2; // host refused the call, 503 sent

const ACCEPT_ENCODING = ByteBuf.fromString("accept-encoding");
const CONTENT_TYPE = ByteBuf.fromString("content-type");
const CONTENT_ENCODING = ByteBuf.fromString("content-encoding");
const CONTENT_LENGTH = ByteBuf.fromString("content-length");
const STATUS = ByteBuf.fromString(":status");

const CALL_CHECK = 0;
const CALL_REPORT = 1;

class PendingCall {
  kind: i32;
  streamId: u32;
  keys: ByteBuf[] | null = null; // reserve-mode checks: to refund a reservation the stream can no longer use
  constructor(kind: i32, streamId: u32) { this.kind = kind; this.streamId = streamId; }
}

/** Per-plugin-configuration state (one per root context). */
export class Root {
  id: u32;
  config: Config | null = null;
  calls: Map<u32, PendingCall> = new Map();
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
    abi.log(abi.LOG_INFO, "llm-token-ratelimit: configured: " + cfg.matches.length.toString() + " match rule(s), " +
      cfg.keys.length.toString() + " key template(s), service cluster " + cfg.cluster.display() +
      ", failOpen " + cfg.failOpen.toString() + reserveSummary(cfg));
    return true;
  }

  /** HTTP call replies for this root: checks and reports. */
  onCallResponse(token: u32, nHeaders: u32, bodySize: u32): void {
    if (!this.calls.has(token)) return;
    let call = this.calls.get(token);
    this.calls.delete(token);
    if (call.kind == CALL_REPORT) {
      if (callStatus(nHeaders) != 200) inc(metrics.reportFailures);
      return;
    }
    // Read the reply while the root context is effective, before touching the stream.
    let d = readDecision(nHeaders, bodySize);
    if (!streams.has(call.streamId)) { this.refundUnused(call, d); return; } // the stream is gone: touch nothing of it
    let s = streams.get(call.streamId);
    if (s.ended || s.phase != PH_CHECKING) { this.refundUnused(call, d); return; }
    if (abi.setEffectiveContext(s.id) != abi.OK) { this.refundUnused(call, d); return; }
    let cfg = s.config;
    if (d.outcome == ALLOW) {
      inc(metrics.allowed);
      s.phase = PH_ALLOWED;
      s.reserved = d.reserved;
      abi.continueRequest();
    } else if (d.outcome == DENY) {
      inc(metrics.limited);
      s.phase = PH_REJECTED;
      sendLimited(cfg.rejectStatus, d);
    } else {
      abi.log(abi.LOG_DEBUG, "llm-token-ratelimit: check failed: " + d.reason);
      s.checkFailed();
    }
  }

  /** A reservation granted after its stream ended (client gone while the check was pending): give it all back. */
  refundUnused(call: PendingCall, d: Decision): void {
    let keys = call.keys;
    let cfg = this.config;
    if (d.outcome != ALLOW || d.reserved <= 0 || keys === null || cfg === null) return;
    this.report(cfg, keys, 0, 0, 0, d.reserved, false, call.streamId);
  }

  report(cfg: Config, keys: ByteBuf[], p: i64, c: i64, t: i64, reserved: i64, estimated: bool, streamId: u32): void {
    let body = reportBody(keys, p, c, t, reserved, estimated);
    let token = dispatchReport(cfg, body);
    if (token < 0) { inc(metrics.reportFailures); return; }
    inc(metrics.reportsSent);
    this.track(<u32>token, CALL_REPORT, streamId);
  }

  track(token: u32, kind: i32, streamId: u32): PendingCall {
    let pc = new PendingCall(kind, streamId);
    this.calls.set(token, pc);
    return pc;
  }
}

/** State of one matched request; unmatched requests never get one. */
export class Stream {
  id: u32;
  root: Root;
  config: Config;
  keys: ByteBuf[] = [];
  phase: i32 = PH_CHECKING;
  ended: bool = false;
  scanner: UsageScanner | null = null;
  sawResponse: bool = false;
  compressed: bool = false;
  finished: bool = false;

  // reserve mode
  reserveMode: bool = false;
  mayRewrite: bool = false;     // includeStreamUsage applies to this request's API
  contentLength: i64 = -1;
  bodySeen: u32 = 0;            // request body bytes buffered so far
  promptEst: i64 = 0;
  completionEst: i64 = 0;
  reserved: i64 = 0;            // what the service said it reserved
  status: i32 = 0;              // response :status

  constructor(id: u32, root: Root, config: Config) { this.id = id; this.root = root; this.config = config; }

  /** Sends the check (reserve >= 0: with a reservation). */
  startCheck(reserve: i64): i32 {
    let cfg = this.config;
    let token = dispatchCheck(cfg, this.keys, reserve);
    if (token < 0) {
      abi.log(abi.LOG_DEBUG, "llm-token-ratelimit: check call refused by host");
      if (cfg.failOpen) { inc(metrics.failOpen); this.phase = PH_ALLOWED; return START_ALLOWED; }
      inc(metrics.failClosed);
      this.phase = PH_REJECTED;
      sendCheckFailed();
      return START_REJECTED;
    }
    this.phase = PH_CHECKING;
    let pc = this.root.track(<u32>token, CALL_CHECK, this.id);
    if (reserve >= 0) pc.keys = this.keys;
    return START_PENDING;
  }

  /** Reserve mode: a request body callback while buffering. */
  onBufferedBody(size: u32, endOfStream: bool): i32 {
    let rc = this.config.reserve;
    this.bodySeen = size;
    if (!endOfStream) {
      if (<i64>size <= <i64>rc.maxBodyBytes) return STOP_AND_BUFFER;
      // Over the bound: decide now from the length (Envoy would answer 413 if we kept buffering).
      this.estimateFromLength(size);
      return dataStatus(this.startCheck(this.reservation()), STOP_AND_WATERMARK);
    }
    this.estimateBody(size);
    return dataStatus(this.startCheck(this.reservation()), STOP_AND_BUFFER);
  }

  /** Reserve mode: trailers end a body we were still buffering. */
  onBufferedTrailers(): i32 {
    this.estimateBody(this.bodySeen);
    let r = this.startCheck(this.reservation());
    if (r == START_ALLOWED) return CONTINUE;
    return STOP_ITERATION;
  }

  reservation(): i64 {
    let n = this.promptEst + this.completionEst;
    if (n > MAX_ESTIMATE) n = MAX_ESTIMATE;
    return n;
  }

  estimateFromLength(size: u32): void {
    inc(metrics.bodyOverLimit);
    let rc = this.config.reserve;
    let n = <i64>size;
    if (this.contentLength > n) n = this.contentLength;
    this.promptEst = lengthTokens(n, rc);
    this.completionEst = rc.defaultCompletionTokens;
  }

  /** The whole body is buffered (size bytes): estimate it, and rewrite it if includeStreamUsage applies. */
  estimateBody(size: u32): void {
    let rc = this.config.reserve;
    if (<i64>size > <i64>rc.maxBodyBytes) { this.estimateFromLength(size); return; }
    if (size == 0 || !bodyChunk.buffer(abi.BUFFER_REQUEST_BODY, 0, size)) {
      this.promptEst = lengthTokens(<i64>size, rc);
      this.completionEst = rc.defaultCompletionTokens;
      return;
    }
    let body = bodyChunk.toBuf();
    let e = estimateRequest(body, rc, this.mayRewrite);
    this.promptEst = e.prompt;
    this.completionEst = e.completion;
    let nb = e.rewritten;
    if (nb !== null) abi.setBuffer(abi.BUFFER_REQUEST_BODY, 0, size, nb);
  }

  checkFailed(): void {
    if (this.config.failOpen) {
      inc(metrics.failOpen);
      this.phase = PH_ALLOWED;
      abi.continueRequest();
    } else {
      inc(metrics.failClosed);
      this.phase = PH_REJECTED;
      sendCheckFailed();
    }
  }

  onResponseHeaders(endOfStream: bool): void {
    if (this.phase != PH_ALLOWED || this.sawResponse) return;
    this.sawResponse = true;
    if (this.reserveMode) this.status = responseStatus();
    let enc = responseHeader(CONTENT_ENCODING);
    if (enc !== null && enc.length > 0 && !enc.lower().eqStr("identity")) {
      this.compressed = true;
      inc(metrics.compressedSkipped);
    } else {
      let ct = responseHeader(CONTENT_TYPE);
      let sse = ct !== null && startsWithLower(ct, "text/event-stream");
      this.scanner = new UsageScanner(sse, this.config.maxBufferBytes, this.reserveMode);
    }
    if (endOfStream) this.finish();
  }

  onResponseBody(size: u32, endOfStream: bool): void {
    let sc = this.scanner;
    if (sc !== null && !this.finished && size > 0) {
      if (bodyChunk.buffer(abi.BUFFER_RESPONSE_BODY, 0, size)) {
        sc.feed(bodyChunk.ptr, bodyChunk.len);
        bodyChunk.release();
      }
    }
    if (endOfStream) this.finish();
  }

  /** The response is over (or the stream ended): report what is known, once. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.reserveMode) { this.finishReserved(); return; }
    if (this.phase != PH_ALLOWED || !this.sawResponse || this.compressed) return;
    let sc = this.scanner;
    if (sc === null) return;
    if (sc.tooLarge > 0) inc(metrics.usageTooLarge);
    if (!sc.found()) { inc(metrics.usageNotFound); return; }
    let body = reportBody(this.keys, sc.promptTokens(), sc.completionTokens(), sc.totalTokens());
    let token = dispatchReport(this.config, body);
    if (token < 0) { inc(metrics.reportFailures); return; }
    inc(metrics.reportsSent);
    this.root.track(<u32>token, CALL_REPORT, this.id);
  }

  /**
   * Reserve mode: actual usage (+ reserved_tokens); an upstream error without usage refunds the
   * reservation; otherwise (no usage: client abort, upstream omitted it) an estimate, marked
   * estimated. A compressed response we cannot read leaves the reservation as the charge.
   */
  finishReserved(): void {
    if (this.phase != PH_ALLOWED || this.compressed) return;
    let cfg = this.config;
    let sc = this.scanner;
    if (sc !== null) {
      if (sc.tooLarge > 0) inc(metrics.usageTooLarge);
      if (sc.found()) {
        this.root.report(cfg, this.keys, sc.promptTokens(), sc.completionTokens(), sc.totalTokens(), this.reserved, false, this.id);
        return;
      }
    }
    if (this.sawResponse) inc(metrics.usageNotFound);
    if (this.status >= 400) {
      if (this.reserved > 0) this.root.report(cfg, this.keys, 0, 0, 0, this.reserved, false, this.id);
      return;
    }
    let completion: i64 = 0;
    if (sc !== null) completion = tokensFor(sc.text.other, sc.text.cjk, cfg.reserve);
    inc(metrics.usageEstimated);
    this.root.report(cfg, this.keys, this.promptEst, completion, this.promptEst + completion, this.reserved, true, this.id);
  }
}

function reserveSummary(cfg: Config): string {
  let r = cfg.reserve;
  if (!r.enabled) return "";
  let m = ", reserve on (maxBodyBytes " + r.maxBodyBytes.toString() + ", charsPerToken " + r.charsPerToken.toString() +
    ", cjkCharsPerToken " + r.cjkCharsPerToken.toString() + ", defaultCompletionTokens " + r.defaultCompletionTokens.toString() +
    ", includeStreamUsage ";
  if (r.includeStreamUsage) m += "true)"; else m += "false)";
  return m;
}

function dataStatus(start: i32, pending: i32): i32 {
  if (start == START_PENDING) return pending;
  if (start == START_ALLOWED) return CONTINUE;
  return STOP_NO_BUFFER;
}

function responseStatus(): i32 {
  let v = responseHeader(STATUS);
  if (v === null) return 0;
  return <i32>parseDecimal(v, 999);
}

/** Non-negative decimal header value (capped), -1 if not one. */
function parseDecimal(v: ByteBuf, cap: i64): i64 {
  if (v.length == 0 || v.length > 18) return -1;
  let n: i64 = 0;
  for (let i = 0; i < v.length; i++) {
    let c = v.at(i);
    if (c < 0x30 || c > 0x39) return -1;
    n = n * 10 + <i64>(c - 0x30);
  }
  if (n > cap) n = cap;
  return n;
}

const bodyChunk = new abi.HostBytes();
const headerValue = new abi.HostBytes();

function responseHeader(name: ByteBuf): ByteBuf | null {
  if (!headerValue.header(abi.MAP_RESPONSE_HEADERS, name)) return null;
  return headerValue.toBuf();
}

function endsWith(v: ByteBuf, suffix: string): bool {
  let n = suffix.length;
  if (v.length < n) return false;
  for (let i = 0; i < n; i++) if (v.at(v.length - n + i) != suffix.charCodeAt(i)) return false;
  return true;
}

function startsWithLower(v: ByteBuf, prefix: string): bool {
  if (v.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    let c = v.at(i);
    if (c >= 65 && c <= 90) c += 32;
    if (c != prefix.charCodeAt(i)) return false;
  }
  return true;
}

// Matched streams by context id.
export const streams = new Map<u32, Stream>();

/** The matched stream `id`, or null. Unmatched traffic alone leaves the map empty: no lookup then. */
function streamOf(id: u32): Stream | null {
  if (streams.size == 0 || !streams.has(id)) return null;
  return streams.get(id);
}

// The request view, reused by every onRequestHeaders (reset first): nothing allocated for it per request.
const view = new RequestView();

export function onRequestHeaders(id: u32, root: Root, endOfStream: bool): i32 {
  let cfg = root.config;
  if (cfg === null) return CONTINUE;
  let req = view;
  req.reset();
  if (!requestMatches(cfg, req)) { req.reset(); return CONTINUE; }

  let rk = renderKeys(cfg, req);
  let missing = rk.missing;
  if (missing !== null) {
    inc(metrics.missingKeyDenied);
    sendMissingKey(missing);
    return STOP_ITERATION;
  }
  if (rk.keys.length == 0) return CONTINUE; // every key skipped: nothing to limit on

  let s = new Stream(id, root, cfg);
  s.keys = rk.keys;
  streams.set(id, s);
  // Ask upstream for an uncompressed reply so the usage can be read.
  abi.removeHeader(abi.MAP_REQUEST_HEADERS, ACCEPT_ENCODING);

  let rc = cfg.reserve;
  if (rc.enabled) {
    s.reserveMode = true;
    if (endOfStream) {
      // No body (GET): check now, reserving the default completion.
      s.completionEst = rc.defaultCompletionTokens;
      let r = s.startCheck(s.reservation());
      if (r == START_ALLOWED) return CONTINUE;
      return STOP_ITERATION;
    }
    let cl = requestHeader(CONTENT_LENGTH);
    if (cl !== null) s.contentLength = parseDecimal(cl, 1e15 as i64);
    if (rc.includeStreamUsage) {
      // Anthropic's Messages API streams usage anyway and rejects unknown fields.
      let p = req.path();
      s.mayRewrite = p === null || !endsWith(p, "/messages");
      // The body may change length: let Envoy frame it (chunked / recomputed).
      abi.removeHeader(abi.MAP_REQUEST_HEADERS, CONTENT_LENGTH);
    }
    // Headers continue: Envoy only hands us the body after they do. The body is held
    // (StopIterationAndBuffer) until the check at its end has been answered.
    s.phase = PH_BUFFERING;
    return CONTINUE;
  }

  // Pause the request until the check is answered (or go on at once if the host refused
  // the call and failOpen says so).
  if (s.startCheck(-1) == START_ALLOWED) return CONTINUE;
  return STOP_ITERATION;
}

export function onRequestData(id: u32, size: u32, endOfStream: bool): i32 {
  let s = streamOf(id);
  if (s === null) return CONTINUE;
  if (s.phase == PH_BUFFERING) return s.onBufferedBody(size, endOfStream);
  // While the check is pending, hold the body: returning Continue would also
  // release the paused headers and bypass the check.
  if (s.phase == PH_CHECKING) return STOP_AND_WATERMARK;
  return CONTINUE;
}

export function onRequestTrailers(id: u32): i32 {
  let s = streamOf(id);
  if (s === null) return CONTINUE;
  if (s.phase == PH_BUFFERING) return s.onBufferedTrailers();
  if (s.phase == PH_CHECKING) return STOP_ITERATION;
  return CONTINUE;
}

export function onResponseHeaders(id: u32, endOfStream: bool): void {
  let s = streamOf(id);
  if (s !== null) s.onResponseHeaders(endOfStream);
}

export function onResponseBody(id: u32, size: u32, endOfStream: bool): void {
  let s = streamOf(id);
  if (s !== null) s.onResponseBody(size, endOfStream);
}

export function onResponseTrailers(id: u32): void {
  let s = streamOf(id);
  if (s !== null) s.finish();
}

/** proxy_on_done: the stream is over, whatever happened. */
export function onStreamEnd(id: u32): void {
  let s = streamOf(id);
  if (s === null) return;
  s.ended = true;
  s.finish();
}

/** Forgets a stream; true if it was a matched one. */
export function onStreamDelete(id: u32): bool {
  if (streams.size == 0) return false;
  return streams.delete(id);
}
