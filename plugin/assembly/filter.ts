// The HTTP filter, in the order a request flows through it (and the module that does each step):
//
//   1. request headers  -> match? (match.ts: host, path, route, cluster) -> render keys (keys.ts)
//                          -> check call (check.ts); the request waits for the reply
//   2. check reply      -> (the root forwards it, calls.ts hands it back to the stream)
//                          allow: continue | deny: rejectStatus | refused (4xx): 403 |
//                          service unavailable: failOpen decides (reply.ts: the local replies)
//   3. request body     -> read as it passes, bounded by maxRequestBodyBytes (request-body.ts):
//                          a prompt estimate, and stream_options.include_usage added to streaming
//                          OpenAI-style requests (includeStreamUsage)
//   4. response         -> scan the body for usage as it passes, never delaying it (usage.ts)
//   5. response end     -> a UsageReport: the usage read from the response, or, when it has none,
//                          estimated (token-estimate.ts) from the prompt and the text delivered
//   6. report           -> POST to the service from the root context (root.ts, report.ts); a failed
//                          report waits in the root's outbox and is retried on the tick (outbox.ts)
//
// With reserve.enabled, or keys that read the request body, the check moves to the end of the
// body: request headers continue (Envoy only hands a filter the body after they do), the body
// is held and read (step 3 first), the keys are rendered, its cost is estimated and the check
// (with reserve: &reserve=N) goes out; the request stays paused until the reply. With reserve
// the report then carries the reservation, and the service charges the difference.

import { ByteBuf, parseDecimal, endsWithStr } from "./bytes";
import * as abi from "./abi";
import { Config, UPGRADES_REFUSE } from "./config";
import { Root, LOG_REFUSED } from "./root";
import { PendingCall } from "./calls";
import { RequestView, requestHeader } from "./request";
import { requestMatches, MATCH_YES, MATCH_BAD_HOST } from "./match";
import { renderKeys, resolveEarly } from "./keys";
import { dispatchCheck, readDecision, Decision, ALLOW, DENY, REFUSED } from "./check";
import {
  sendLimited,
  sendCheckFailed,
  sendCheckRefused,
  sendMissingKey,
  sendBadHost,
  addBudgetHeaders,
  sendCompressedRefused,
  sendUpgradeRefused,
  sendAmbiguousBody,
} from "./reply";
import { UsageScanner } from "./usage";
import { JValue } from "./json";
import { readRequestBody } from "./request-body";
import { lengthTokens, tokensFor, MAX_ESTIMATE } from "./token-estimate";
import { UsageReport } from "./report";
import { metrics, inc } from "./metrics";

// Filter return codes (Proxy-Wasm).
export const CONTINUE = 0;
export const STOP_ITERATION = 1;
export const STOP_AND_BUFFER = 1; // data: keep buffering in Envoy (the body is read at its end)
export const STOP_AND_WATERMARK = 2; // data: buffer with flow control instead of 413
export const STOP_NO_BUFFER = 3; // data: after a local response

const PH_CHECKING = 0;
const PH_ALLOWED = 1; // also: check failed and failOpen
const PH_REJECTED = 2; // we sent a local response
const PH_BUFFERING = 3; // reserve or body keys: collecting the request body, no check yet

// What starting a check did.
const START_PENDING = 0;
const START_ALLOWED = 1; // host refused the call, failOpen
const START_REJECTED = 2; // host refused the call, 503 sent

const ACCEPT_ENCODING = ByteBuf.fromString("accept-encoding");
const CONTENT_TYPE = ByteBuf.fromString("content-type");
const CONTENT_ENCODING = ByteBuf.fromString("content-encoding");
const CONTENT_LENGTH = ByteBuf.fromString("content-length");
const STATUS = ByteBuf.fromString(":status");
const UPGRADE = ByteBuf.fromString("upgrade");

// ---- 1. request headers ---------------------------------------------------------------

// Matched streams by context id.
const streams = new Map<u32, MatchedStream>();

// The request view, reused by every onRequestHeaders (reset first): nothing allocated for it per request.
const view = new RequestView();

export function onRequestHeaders(id: u32, root: Root, endOfStream: bool): i32 {
  const cfg = root.config;
  if (cfg === null) return CONTINUE;
  const req = view;
  req.reset();
  const m = requestMatches(cfg, req);
  if (m != MATCH_YES) {
    req.reset();
    if (m == MATCH_BAD_HOST) {
      inc(metrics.badHost);
      sendBadHost(cfg);
      return STOP_ITERATION;
    }
    return CONTINUE;
  }
  // A WebSocket session's frames are not an LLM response the plugin can charge (a 101 generated
  // nothing, to it): refused unless the operator lets upgrades through unmetered.
  if (cfg.upgrades == UPGRADES_REFUSE && isUpgrade(req)) {
    req.reset();
    sendUpgradeRefused(cfg);
    return STOP_ITERATION;
  }
  // A compressed body cannot be read: its estimate would be its compressed length (a 200,000-
  // character prompt in 718 bytes) and include_usage could not be added. Envoy's decompressor
  // filter in front of the plugin removes the content-encoding (plugin/README.md).
  const enc = requestHeader(CONTENT_ENCODING);
  const compressedRequest = enc !== null && !isIdentity(<ByteBuf>enc);
  if (compressedRequest && !cfg.allowCompressedRequests) {
    req.reset();
    sendCompressedRefused(cfg, <ByteBuf>enc);
    return STOP_ITERATION;
  }

  // Keys that read the body are rendered at its end, and the check waits for them.
  const deferKeys = cfg.keysNeedBody && !endOfStream;
  let keys: ByteBuf[] = [];
  if (!deferKeys) {
    const rk = renderKeys(cfg, req);
    if (rk.missing !== null) {
      denyMissingKey(cfg, <string>rk.missing);
      return STOP_ITERATION;
    }
    if (rk.keys.length == 0) return CONTINUE; // every key skipped: nothing to limit on
    keys = rk.keys;
  }

  const s = new MatchedStream(id, root, cfg);
  s.keys = keys;
  s.deferKeys = deferKeys;
  if (deferKeys) s.early = resolveEarly(cfg, req);
  s.reserveMode = cfg.reserve;
  s.compressedRequest = compressedRequest;
  streams.set(id, s);
  // Ask upstream for an uncompressed reply so the usage can be read.
  abi.removeHeader(abi.MAP_REQUEST_HEADERS, ACCEPT_ENCODING);

  if (!endOfStream) s.prepareBodyRead(req);

  if (s.reserveMode && endOfStream) {
    // No body (GET): check now, reserving the default completion.
    s.completionEst = cfg.estimate.defaultCompletionTokens;
    return headersStatus(s.startCheck(s.reservation()));
  }
  if (s.reserveMode || deferKeys) {
    // Headers continue: Envoy only hands us the body after they do. The body is held
    // (StopIterationAndBuffer) until the check at its end has been answered.
    s.phase = PH_BUFFERING;
    return CONTINUE;
  }
  // Pause the request until the check is answered (or go on at once if the host refused
  // the call and failOpen says so).
  return headersStatus(s.startCheck(-1));
}

/** An upgrade (Upgrade: websocket; Envoy presents HTTP/2's extended CONNECT the same way) or a CONNECT. */
function isUpgrade(req: RequestView): bool {
  const u = requestHeader(UPGRADE);
  if (u !== null && u.length > 0) return true;
  const m = req.method();
  return m !== null && m.eqStr("CONNECT");
}

/** A content-encoding that leaves the body as it is: "identity" or empty. */
function isIdentity(v: ByteBuf): bool {
  let a = 0,
    b = v.length;
  while (a < b && (v.at(a) == 0x20 || v.at(a) == 0x09)) a++;
  while (b > a && (v.at(b - 1) == 0x20 || v.at(b - 1) == 0x09)) b--;
  return b == a || v.slice(a, b).lower().eqStr("identity");
}

function denyMissingKey(cfg: Config, template: string): void {
  inc(metrics.missingKeyDenied);
  sendMissingKey(cfg, template);
}

/** State of one matched request; unmatched requests never get one. */
export class MatchedStream {
  id: u32;
  root: Root;
  config: Config;
  keys: ByteBuf[] = [];
  phase: i32 = PH_CHECKING;
  ended: bool = false;
  finished: bool = false;
  reserveMode: bool = false;
  deferKeys: bool = false; // keys read the body: rendered at its end, before the check
  early: Array<Array<ByteBuf | null>> | null = null; // their other placeholders, read at the headers

  // request body (step 3)
  readBody: bool = false; // the body is read as it passes
  bodyDone: bool = false;
  mayRewrite: bool = false; // includeStreamUsage applies to this request's API
  contentLength: i64 = -1;
  bodySeen: u32 = 0; // request body bytes buffered so far
  compressedRequest: bool = false; // a content-encoding, allowed by allowCompressedRequests: never parsed
  overBound: bool = false; // the body passed maxRequestBodyBytes: counted, not read
  passed: i64 = 0; // then: its bytes so far (buffered at the bound, and every chunk after)
  promptEst: i64 = 0;
  completionEst: i64 = 0;
  bodyJson: JValue | null = null; // the parsed body, kept only until deferred keys are rendered
  model: ByteBuf | null = null; // the body's "model", reported with the usage

  // check (step 2)
  reserved: i64 = 0; // what the service said it reserved
  reservationId: ByteBuf | null = null;
  limit: f64 = -1; // the service's limit and balance for the key closest to its limit
  remaining: f64 = -1;

  // response (steps 4, 5)
  sawResponse: bool = false;
  status: i32 = 0; // response :status
  compressed: bool = false;
  compressedBytes: i64 = 0;
  scanner: UsageScanner | null = null;

  constructor(id: u32, root: Root, config: Config) {
    this.id = id;
    this.root = root;
    this.config = config;
  }

  /** Decides, at the request headers, whether and how the body will be read. */
  prepareBodyRead(req: RequestView): void {
    const cfg = this.config;
    this.readBody = cfg.reserve || cfg.estimateMissingUsage || cfg.includeStreamUsage || cfg.keysNeedBody;
    if (!this.readBody) return;
    const cl = requestHeader(CONTENT_LENGTH);
    if (cl !== null) this.contentLength = parseDecimal(cl, 1e15 as i64);
    if (cfg.includeStreamUsage) {
      // Anthropic's Messages API streams usage anyway and rejects unknown fields.
      const p = req.path();
      this.mayRewrite = !this.compressedRequest && (p === null || !endsWithStr(p, "/messages"));
      // The body may change length: let Envoy frame it (chunked / recomputed).
      if (this.mayRewrite) abi.removeHeader(abi.MAP_REQUEST_HEADERS, CONTENT_LENGTH);
    }
  }

  /** Sends the check (reserve >= 0: with a reservation). */
  startCheck(reserve: i64): i32 {
    const cfg = this.config;
    const token = dispatchCheck(cfg, this.keys, reserve);
    if (token < 0) {
      this.root.callRefused();
      if (cfg.failOpen) {
        inc(metrics.failOpen);
        this.phase = PH_ALLOWED;
        return START_ALLOWED;
      }
      inc(metrics.failClosed);
      this.phase = PH_REJECTED;
      sendCheckFailed(cfg);
      return START_REJECTED;
    }
    this.root.callDispatched();
    this.phase = PH_CHECKING;
    const call = new CheckCall(this, reserve >= 0);
    this.root.calls.set(<u32>token, call);
    return START_PENDING;
  }

  // ---- 2. check reply (CheckCall hands it over) ------------------------------------------

  onCheckReply(d: Decision): void {
    if (d.outcome == ALLOW) {
      inc(metrics.allowed);
      this.phase = PH_ALLOWED;
      this.reserved = d.reserved;
      this.reservationId = d.reservationId;
      this.limit = d.limit;
      this.remaining = d.remaining;
      abi.continueRequest();
    } else if (d.outcome == DENY) {
      inc(metrics.limited);
      this.phase = PH_REJECTED;
      sendLimited(this.config, d);
    } else if (d.outcome == REFUSED) {
      // Something in this request made the service refuse it: never a reason to let it through.
      inc(metrics.checkRefused);
      this.root.logRarely(LOG_REFUSED, abi.LOG_WARN, "rate-limit service refused a check: " + d.reason);
      this.phase = PH_REJECTED;
      sendCheckRefused(this.config);
    } else {
      abi.log(abi.LOG_DEBUG, "llm-token-ratelimit: check failed: " + d.reason);
      this.checkFailed();
    }
  }

  checkFailed(): void {
    if (this.config.failOpen) {
      inc(metrics.failOpen);
      this.phase = PH_ALLOWED;
      abi.continueRequest();
    } else {
      inc(metrics.failClosed);
      this.phase = PH_REJECTED;
      sendCheckFailed(this.config);
    }
  }

  // ---- 3. request body ------------------------------------------------------------------

  onRequestBody(size: u32, endOfStream: bool): i32 {
    if (this.phase == PH_BUFFERING) return this.onBufferedBody(size, endOfStream);
    // While the check is pending, hold the body: returning Continue would also
    // release the paused headers and bypass the check.
    // Past the bound every chunk is counted as it passes: a body trickled without content-length
    // costs what the same body with one does. (The check sent at the bound may still be pending:
    // the chunks it holds are not handed to this filter again, so they are counted now.)
    if (this.overBound && (this.phase == PH_ALLOWED || this.phase == PH_CHECKING)) {
      this.countPassed(<i64>size);
      return this.phase == PH_CHECKING ? STOP_AND_WATERMARK : CONTINUE;
    }
    if (this.phase == PH_CHECKING) return STOP_AND_WATERMARK;
    if (this.phase != PH_ALLOWED || !this.readBody || this.bodyDone) return CONTINUE;
    this.bodySeen = size;
    if (!endOfStream) {
      if (<i64>size <= <i64>this.config.maxRequestBodyBytes) return STOP_AND_BUFFER;
      this.estimateFromLength(size);
      return CONTINUE;
    }
    if (!this.readBufferedBody(size)) return STOP_NO_BUFFER;
    return CONTINUE;
  }

  onRequestTrailers(): i32 {
    if (this.phase == PH_BUFFERING) {
      if (!this.readBufferedBody(this.bodySeen)) return STOP_ITERATION;
      return headersStatus(this.checkAfterBody());
    }
    if (this.phase == PH_CHECKING) return STOP_ITERATION;
    if (this.phase == PH_ALLOWED && this.readBody && !this.bodyDone) {
      if (!this.readBufferedBody(this.bodySeen)) return STOP_ITERATION;
      // Pause, then resume at once (Envoy resumes after this callback returns): continuing
      // from here lost the held body when trailers were added by a filter in front (Envoy's
      // decompressor adds its byte counts as request trailers) while the check was pending.
      abi.continueRequest();
      return STOP_ITERATION;
    }
    return CONTINUE;
  }

  /** Reserve mode or keys from the body: a request body callback while buffering, before the check. */
  onBufferedBody(size: u32, endOfStream: bool): i32 {
    this.bodySeen = size;
    if (!endOfStream) {
      if (<i64>size <= <i64>this.config.maxRequestBodyBytes) return STOP_AND_BUFFER;
      // Over the bound: decide now from the length (Envoy would answer 413 if we kept buffering).
      this.estimateFromLength(size);
      return dataStatus(this.checkAfterBody(), STOP_AND_WATERMARK);
    }
    if (!this.readBufferedBody(size)) return STOP_NO_BUFFER;
    return dataStatus(this.checkAfterBody(), STOP_AND_BUFFER);
  }

  /** The body is read (or passed the bound): render the keys that waited for it, then check. */
  checkAfterBody(): i32 {
    if (this.deferKeys) {
      const req = view;
      req.reset();
      req.body = this.bodyJson; // null when not JSON or over the bound: body fields are missing
      const rk = renderKeys(this.config, req, this.early);
      req.reset();
      this.bodyJson = null;
      this.early = null;
      if (rk.missing !== null) {
        this.phase = PH_REJECTED;
        denyMissingKey(this.config, <string>rk.missing);
        return START_REJECTED;
      }
      this.keys = rk.keys;
      if (rk.keys.length == 0) {
        this.phase = PH_ALLOWED;
        return START_ALLOWED;
      } // every key skipped
    }
    return this.startCheck(this.reserveMode ? this.reservation() : -1);
  }

  reservation(): i64 {
    let n = this.promptEst + this.completionEst;
    if (n > MAX_ESTIMATE) n = MAX_ESTIMATE;
    return n;
  }

  /** The body passed the bound with `size` bytes buffered: estimated from its length from now on. */
  estimateFromLength(size: u32): void {
    inc(metrics.bodyOverLimit);
    this.bodyDone = true;
    this.overBound = true;
    this.passed = <i64>size;
    this.promptFromLength(this.passed);
    this.completionEst = this.config.estimate.defaultCompletionTokens;
  }

  /** A chunk after the bound (`n` bytes; an upper bound of its characters). */
  countPassed(n: i64): void {
    this.passed += n;
    this.promptFromLength(this.passed);
  }

  /**
   * The prompt of a body not read, from its length: `n` bytes, or its content-length if larger.
   * A compressed body (allowCompressedRequests) holds more than its bytes: at least a body of
   * maxRequestBodyBytes is charged.
   */
  promptFromLength(n: i64): void {
    if (this.contentLength > n) n = this.contentLength;
    if (this.compressedRequest && n < <i64>this.config.maxRequestBodyBytes) n = <i64>this.config.maxRequestBodyBytes;
    this.promptEst = lengthTokens(n, this.config.estimate);
  }

  /**
   * The whole body is buffered (size bytes): read it (request-body.ts), and rewrite it if
   * includeStreamUsage applies. False: it was refused (a field it reads is ambiguous), a local
   * reply is sent.
   */
  readBufferedBody(size: u32): bool {
    const cfg = this.config;
    const est = cfg.estimate;
    if (<i64>size > <i64>cfg.maxRequestBodyBytes) {
      this.estimateFromLength(size);
      return true;
    }
    this.bodyDone = true;
    if (this.compressedRequest) {
      this.promptFromLength(<i64>size);
      this.completionEst = est.defaultCompletionTokens;
      return true;
    }
    if (size == 0 || !bodyChunk.buffer(abi.BUFFER_REQUEST_BODY, 0, size)) {
      this.promptEst = lengthTokens(<i64>size, est);
      this.completionEst = est.defaultCompletionTokens;
      return true;
    }
    const body = bodyChunk.toBuf();
    const e = readRequestBody(body, est, this.mayRewrite, cfg.bodyPaths);
    const amb = e.ambiguous;
    if (amb !== null) {
      this.bodyJson = null;
      this.phase = PH_REJECTED;
      sendAmbiguousBody(cfg, amb);
      return false;
    }
    this.promptEst = e.prompt;
    this.completionEst = e.completion;
    this.model = e.model;
    if (this.deferKeys) this.bodyJson = e.json;
    const nb = e.rewritten;
    if (nb !== null) abi.setBuffer(abi.BUFFER_REQUEST_BODY, 0, size, nb);
    return true;
  }

  // ---- 4. response ----------------------------------------------------------------------

  onResponseHeaders(endOfStream: bool): void {
    if (this.phase != PH_ALLOWED || this.sawResponse) return;
    this.sawResponse = true;
    this.status = responseStatus();
    if (this.config.budgetHeaders && (this.limit >= 0 || this.remaining >= 0)) addBudgetHeaders(this.limit, this.remaining);
    const enc = responseHeader(CONTENT_ENCODING);
    if (enc !== null && enc.length > 0 && !enc.lower().eqStr("identity")) {
      this.compressed = true;
      inc(metrics.compressedSkipped);
    } else {
      const cfg = this.config;
      this.scanner = UsageScanner.forContentType(responseHeader(CONTENT_TYPE), cfg.maxBufferBytes, cfg.estimateMissingUsage || this.reserveMode);
    }
    if (endOfStream) this.finish();
  }

  onResponseBody(size: u32, endOfStream: bool): void {
    if (this.compressed) this.compressedBytes += <i64>size;
    const sc = this.scanner;
    if (sc !== null && !this.finished && size > 0) {
      if (bodyChunk.buffer(abi.BUFFER_RESPONSE_BODY, 0, size)) {
        sc.feed(bodyChunk.ptr, bodyChunk.len);
        bodyChunk.release();
      }
    }
    if (endOfStream) this.finish();
  }

  // ---- 5. response end: what it cost ----------------------------------------------------

  /** The response is over (or the stream ended): report what it cost, once. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.phase != PH_ALLOWED || this.keys.length == 0) return;
    const u = this.usageReport();
    if (u !== null && u.chargesAnything()) this.root.report(this.keys, u);
  }

  /**
   * What the response cost: the usage it carries; nothing for an upstream error (a reservation
   * is given back); otherwise (no usage: a stream without include_usage, a client that hung
   * up, an upstream that omits it, a compressed body) an estimate of the prompt plus what was
   * delivered. Null: report nothing (estimates off: a reservation then stays as the charge).
   */
  usageReport(): UsageReport | null {
    const u = new UsageReport();
    u.reserved = this.reserved;
    u.reservationId = this.reservationId;
    u.model = this.model;
    const sc = this.scanner;
    if (sc !== null) {
      if (sc.tooLarge > 0) inc(metrics.usageTooLarge);
      if (sc.found()) {
        u.prompt = sc.promptTokens();
        u.completion = sc.completionTokens();
        u.total = sc.totalTokens();
        u.cacheRead = sc.cacheReadTokens();
        u.cacheWrite = sc.cacheWriteTokens();
        u.reasoning = sc.reasoningTokens();
        // A provisional usage (Anthropic's message_start) or a stream that never completed (a
        // running total): not the final count. At least the estimate of what was delivered.
        if (sc.provisional || this.ended) u.atLeast(this.promptEst, this.deliveredTokens(sc));
        return u;
      }
    }
    if (this.sawResponse && !this.compressed) inc(metrics.usageNotFound);
    // An upstream error (or redirect) generated nothing.
    if (this.sawResponse && (this.status < 200 || this.status >= 300)) return u;
    if (!this.config.estimateMissingUsage) return null;
    let completion: i64 = 0;
    if (sc !== null) completion = this.deliveredTokens(sc);
    // A compressed body we cannot read: about one token per compressed byte (gzip packs
    // ~4 characters per byte; tokens are ~4 characters).
    else if (this.compressed) completion = this.compressedBytes;
    if (completion > MAX_ESTIMATE) completion = MAX_ESTIMATE;
    u.estimated = true;
    u.prompt = this.promptEst;
    u.completion = completion;
    u.total = u.prompt + u.completion;
    if (u.total > 0) inc(metrics.usageEstimated);
    return u;
  }

  /** Tokens of the text the response delivered, estimated. */
  deliveredTokens(sc: UsageScanner): i64 {
    return tokensFor(sc.text.other, sc.text.cjk, this.config.estimate);
  }
}

/** A stream's check in flight: the reply goes to the stream if it still waits for it. */
class CheckCall extends PendingCall {
  stream: MatchedStream;
  reserving: bool; // the check asked for a reservation: give it back if the stream can no longer use it
  constructor(s: MatchedStream, reserving: bool) {
    super();
    this.stream = s;
    this.reserving = reserving;
  }

  onReply(nHeaders: u32, bodySize: u32): void {
    // Read the reply while the root context is effective, before touching the stream.
    const d = readDecision(nHeaders, bodySize);
    const s = this.stream;
    // The stream is over (proxy_on_done: it is no longer in `streams` either) or past the
    // check: touch nothing of it, only give back a reservation.
    if (s.ended || s.phase != PH_CHECKING || abi.setEffectiveContext(s.id) != abi.OK) {
      this.refundUnused(d);
      return;
    }
    s.onCheckReply(d);
  }

  /** A reservation granted after its stream ended (client gone while the check was pending): give it all back. */
  refundUnused(d: Decision): void {
    if (d.outcome != ALLOW || d.reserved <= 0 || !this.reserving) return;
    const u = new UsageReport();
    u.reserved = d.reserved;
    u.reservationId = d.reservationId;
    const s = this.stream;
    s.root.report(s.keys, u);
  }
}

function headersStatus(start: i32): i32 {
  return start == START_ALLOWED ? CONTINUE : STOP_ITERATION;
}

function dataStatus(start: i32, pending: i32): i32 {
  if (start == START_PENDING) return pending;
  if (start == START_ALLOWED) return CONTINUE;
  return STOP_NO_BUFFER;
}

function responseStatus(): i32 {
  const v = responseHeader(STATUS);
  if (v === null) return 0;
  return <i32>parseDecimal(v, 999);
}

const bodyChunk = new abi.HostBytes();
const headerValue = new abi.HostBytes();

function responseHeader(name: ByteBuf): ByteBuf | null {
  if (!headerValue.header(abi.MAP_RESPONSE_HEADERS, name)) return null;
  return headerValue.toBuf();
}

/** The matched stream `id`, or null. Unmatched traffic alone leaves the map empty: no lookup then. */
export function streamOf(id: u32): MatchedStream | null {
  if (streams.size == 0 || !streams.has(id)) return null;
  return streams.get(id);
}

// ---- entry points for the other callbacks (index.ts) --------------------------------------

export function onRequestData(id: u32, size: u32, endOfStream: bool): i32 {
  const s = streamOf(id);
  if (s === null) return CONTINUE;
  return s.onRequestBody(size, endOfStream);
}

export function onRequestTrailers(id: u32): i32 {
  const s = streamOf(id);
  if (s === null) return CONTINUE;
  return s.onRequestTrailers();
}

export function onResponseHeaders(id: u32, endOfStream: bool): void {
  const s = streamOf(id);
  if (s !== null) s.onResponseHeaders(endOfStream);
}

export function onResponseBody(id: u32, size: u32, endOfStream: bool): void {
  const s = streamOf(id);
  if (s !== null) s.onResponseBody(size, endOfStream);
}

export function onResponseTrailers(id: u32): void {
  const s = streamOf(id);
  if (s !== null) s.finish();
}

/** proxy_on_done: the stream is over, whatever happened (a client that hung up included). */
export function onStreamEnd(id: u32): void {
  const s = streamOf(id);
  if (s === null) return;
  s.ended = true;
  s.finish();
}

/** Forgets a stream; true if it was a matched one. */
export function onStreamDelete(id: u32): bool {
  if (streams.size == 0) return false;
  return streams.delete(id);
}
