// Local responses the plugin sends instead of forwarding the request.
//
// Two body forms (`rejectBody`): "openai" (default), the error object OpenAI-compatible
// APIs send, which every OpenAI SDK turns into an exception whose message is ours:
//   {"error":{"message":"...","type":"...","param":null,"code":"..."}}   application/json
// and "text", the vendor's plain-text body (the description alone, as the seed's curl shows).
// A limited reply whose wait is longer than noRetryAboveSeconds also says
// `x-should-retry: false`: the OpenAI SDKs honour it before `retry-after`, so a caller gets
// the error at once instead of an SDK silently sleeping for minutes.

import { ByteBuf } from "./bytes";
import { Config, BODY_TEXT } from "./config";
import { HeaderList, sendLocalResponse, replaceHeader, MAP_RESPONSE_HEADERS } from "./abi";
import { Decision } from "./check";
import { appendJsonString } from "./encode";

const MAX_HEADER_NUMBER: f64 = 1e15;

function number(v: f64, roundUp: bool): ByteBuf {
  const b = new ByteBuf(20);
  const x = v > MAX_HEADER_NUMBER ? MAX_HEADER_NUMBER : v;
  b.appendU64(<u64>(roundUp ? Math.ceil(x) : Math.floor(x)));
  return b;
}

/** Sends `message` in the configured form. type/code: the OpenAI error object's fields. */
function send(cfg: Config, status: u32, details: string, message: ByteBuf, type: string, code: string, h: HeaderList): void {
  if (cfg.rejectBody == BODY_TEXT) {
    h.add("content-type", ByteBuf.fromString("text/plain; charset=utf-8"));
    sendLocalResponse(status, details, message, h);
    return;
  }
  const b = ByteBuf.fromString('{"error":{"message":');
  appendJsonString(b, message);
  b.appendString(',"type":"');
  b.appendString(type);
  b.appendString('","param":null,"code":"');
  b.appendString(code);
  b.appendString('"}}');
  h.add("content-type", ByteBuf.fromString("application/json"));
  sendLocalResponse(status, details, b, h);
}

/** The service said no: rejectStatus with its description and any numbers it gave. */
export function sendLimited(cfg: Config, d: Decision): void {
  const h = new HeaderList();
  if (d.retryAfter >= 0) {
    h.add("retry-after", number(d.retryAfter, true));
    if (d.retryAfter > <f64>cfg.noRetryAboveSeconds) h.add("x-should-retry", ByteBuf.fromString("false"));
  }
  if (d.limit >= 0) h.add("x-ratelimit-limit-tokens", number(d.limit, false));
  if (d.remaining >= 0) h.add("x-ratelimit-remaining-tokens", number(d.remaining, false));
  let desc = ByteBuf.fromString("rate limited");
  if (d.description.length > 0) desc = safeBody(d.description);
  if (cfg.rejectBody == BODY_TEXT) {
    send(cfg, cfg.rejectStatus, "llm_token_rate_limited", desc, "", "", h);
    return;
  }
  // For people reading an SDK's exception: the limit and when it refills, when the service said.
  let m = desc;
  if (d.limit >= 0 || d.retryAfter >= 0) {
    m = ByteBuf.fromRaw(desc.ptr(), desc.length);
    m.appendString(" (");
    if (d.limit >= 0) {
      m.appendString("limit ");
      m.appendBuf(number(d.limit, false));
      m.appendString(" tokens");
      if (d.retryAfter >= 0) m.appendString("; ");
    }
    if (d.retryAfter >= 0) {
      m.appendString("enough tokens again in ");
      m.appendBuf(number(d.retryAfter, true));
      m.appendString(" s");
    }
    m.appendString(")");
  }
  send(cfg, cfg.rejectStatus, "llm_token_rate_limited", m, "tokens", "rate_limit_exceeded", h);
}

/** The check failed and failOpen is false. */
export function sendCheckFailed(cfg: Config): void {
  send(
    cfg,
    503,
    "llm_token_rate_limit_check_failed",
    ByteBuf.fromString("rate limit service unavailable"),
    "service_unavailable",
    "rate_limit_service_unavailable",
    new HeaderList(),
  );
}

/** The service refused the check (a 4xx with a JSON body): the request is refused, not let through. */
export function sendCheckRefused(cfg: Config): void {
  send(
    cfg,
    403,
    "llm_token_rate_limit_check_refused",
    ByteBuf.fromString("rate limit check refused for this request"),
    "permission_denied",
    "rate_limit_check_refused",
    new HeaderList(),
  );
}

/** Host matching met a Host that could name another host (userinfo, several values). */
export function sendBadHost(cfg: Config): void {
  send(cfg, 400, "llm_token_rate_limit_bad_host", ByteBuf.fromString("invalid Host header"), "invalid_request_error", "invalid_host", new HeaderList());
}

/** A key placeholder had no value and onMissingKey is "deny". */
export function sendMissingKey(cfg: Config, template: string): void {
  const body = ByteBuf.fromString("missing rate limit key attribute: ");
  body.appendString(template);
  send(cfg, 403, "llm_token_rate_limit_key_missing", body, "permission_denied", "rate_limit_key_missing", new HeaderList());
}

/**
 * A request body with a content-encoding (gzip, deflate, ...): the plugin cannot read it, so
 * it would be estimated from its compressed length and include_usage could not be added.
 */
export function sendCompressedRefused(cfg: Config, encoding: ByteBuf): void {
  const m = ByteBuf.fromString("compressed request bodies are not accepted on this route (content-encoding: ");
  if (encoding.length > 64) m.appendBuf(encoding.slice(0, 64));
  else m.appendBuf(encoding);
  m.appendString("); send the body uncompressed");
  send(cfg, 415, "llm_token_rate_limit_compressed_request", m, "invalid_request_error", "unsupported_content_encoding", new HeaderList());
}

/** A protocol upgrade (WebSocket) on a matched route: its session would never be charged. */
export function sendUpgradeRefused(cfg: Config): void {
  send(
    cfg,
    403,
    "llm_token_rate_limit_upgrade_refused",
    ByteBuf.fromString('protocol upgrades (WebSocket) are not rate-limited on this route and are refused (plugin setting upgrades: "refuse")'),
    "permission_denied",
    "upgrade_not_allowed",
    new HeaderList(),
  );
}

/** A body field the plugin reads appears more than once, under any spelling (case folded). */
export function sendAmbiguousBody(cfg: Config, field: ByteBuf): void {
  const m = ByteBuf.fromString('request body field "');
  m.appendBuf(field);
  m.appendString('" appears more than once (names differing only in case count as the same)');
  send(cfg, 400, "llm_token_rate_limit_ambiguous_body", m, "invalid_request_error", "duplicate_body_field", new HeaderList());
}

/** Response bodies are ours to shape; cap the service's description at 1 KiB. */
function safeBody(b: ByteBuf): ByteBuf {
  if (b.length > 1024) return b.slice(0, 1024);
  return b;
}

const BUDGET_LIMIT = ByteBuf.fromString("x-llm-ratelimit-limit-tokens");
const BUDGET_REMAINING = ByteBuf.fromString("x-llm-ratelimit-remaining-tokens");

/**
 * On an allowed response: the limit and the balance the check saw (before this request's own
 * cost), of the key closest to its limit. Own header names: the provider's x-ratelimit-* headers
 * (its own limits, which SDKs and LiteLLM read) pass through untouched.
 */
export function addBudgetHeaders(limit: f64, remaining: f64): void {
  if (limit >= 0) replaceHeader(MAP_RESPONSE_HEADERS, BUDGET_LIMIT, number(limit, false));
  if (remaining >= 0) replaceHeader(MAP_RESPONSE_HEADERS, BUDGET_REMAINING, number(remaining, false));
}
