// The HTTP filter, top to bottom:
//   request headers -> match? -> render keys -> pause + check call
//   check reply     -> continue | rejectStatus | fail open / 503
//   response        -> scan body for usage as it passes -> report when the response ends

import { ByteBuf } from "./bytes";
import * as abi from "./abi";
import { Config, parseConfig } from "./config";
import { RequestView } from "./request";
import { requestMatches } from "./match";
import { renderKeys } from "./keys";
import { dispatchCheck, readDecision, callStatus, ALLOW, DENY } from "./check";
import { sendLimited, sendCheckFailed, sendMissingKey } from "./reply";
import { UsageScanner } from "./usage";
import { reportBody, dispatchReport } from "./report";
import { metrics, inc, defineMetricsOnce } from "./metrics";

// Filter return codes (Proxy-Wasm).
export const CONTINUE = 0;
export const STOP_ITERATION = 1;
export const STOP_AND_WATERMARK = 2; // data: buffer with flow control instead of 413

const PH_CHECKING = 0;
const PH_ALLOWED = 1;   // also: check failed and failOpen
const PH_REJECTED = 2;  // we sent a local response

const ACCEPT_ENCODING = ByteBuf.fromString("accept-encoding");
const CONTENT_TYPE = ByteBuf.fromString("content-type");
const CONTENT_ENCODING = ByteBuf.fromString("content-encoding");

const CALL_CHECK = 0;
const CALL_REPORT = 1;

class PendingCall {
  kind: i32;
  streamId: u32;
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
      ", failOpen " + cfg.failOpen.toString());
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
    if (!streams.has(call.streamId)) return; // the stream is gone: touch nothing of it
    let s = streams.get(call.streamId);
    if (s.ended || s.phase != PH_CHECKING) return;
    if (abi.setEffectiveContext(s.id) != abi.OK) return;
    let cfg = s.config;
    if (d.outcome == ALLOW) {
      inc(metrics.allowed);
      s.phase = PH_ALLOWED;
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

  track(token: u32, kind: i32, streamId: u32): void {
    this.calls.set(token, new PendingCall(kind, streamId));
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

  constructor(id: u32, root: Root, config: Config) { this.id = id; this.root = root; this.config = config; }

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
    let enc = responseHeader(CONTENT_ENCODING);
    if (enc !== null && enc.length > 0 && !enc.lower().eqStr("identity")) {
      this.compressed = true;
      inc(metrics.compressedSkipped);
    } else {
      let ct = responseHeader(CONTENT_TYPE);
      let sse = ct !== null && startsWithLower(ct, "text/event-stream");
      this.scanner = new UsageScanner(sse, this.config.maxBufferBytes);
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
}

const bodyChunk = new abi.HostBytes();
const headerValue = new abi.HostBytes();

function responseHeader(name: ByteBuf): ByteBuf | null {
  if (!headerValue.header(abi.MAP_RESPONSE_HEADERS, name)) return null;
  return headerValue.toBuf();
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

export function onRequestHeaders(id: u32, root: Root): i32 {
  let cfg = root.config;
  if (cfg === null) return CONTINUE;
  let req = new RequestView();
  if (!requestMatches(cfg, req)) return CONTINUE;

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

  let token = dispatchCheck(cfg, s.keys);
  if (token < 0) {
    abi.log(abi.LOG_DEBUG, "llm-token-ratelimit: check call refused by host");
    if (cfg.failOpen) { inc(metrics.failOpen); s.phase = PH_ALLOWED; return CONTINUE; }
    inc(metrics.failClosed);
    s.phase = PH_REJECTED;
    sendCheckFailed();
    return STOP_ITERATION;
  }
  root.track(<u32>token, CALL_CHECK, id);
  return STOP_ITERATION;
}

export function onRequestData(id: u32): i32 {
  // While the check is pending, hold the body: returning Continue would also
  // release the paused headers and bypass the check.
  if (streams.has(id) && streams.get(id).phase == PH_CHECKING) return STOP_AND_WATERMARK;
  return CONTINUE;
}

export function onRequestTrailers(id: u32): i32 {
  if (streams.has(id) && streams.get(id).phase == PH_CHECKING) return STOP_ITERATION;
  return CONTINUE;
}

export function onResponseHeaders(id: u32, endOfStream: bool): void {
  if (streams.has(id)) streams.get(id).onResponseHeaders(endOfStream);
}

export function onResponseBody(id: u32, size: u32, endOfStream: bool): void {
  if (streams.has(id)) streams.get(id).onResponseBody(size, endOfStream);
}

export function onResponseTrailers(id: u32): void {
  if (streams.has(id)) streams.get(id).finish();
}

/** proxy_on_done: the stream is over, whatever happened. */
export function onStreamEnd(id: u32): void {
  if (!streams.has(id)) return;
  let s = streams.get(id);
  s.ended = true;
  s.finish();
}

/** Forgets a stream; true if it was a matched one. */
export function onStreamDelete(id: u32): bool {
  return streams.delete(id);
}
