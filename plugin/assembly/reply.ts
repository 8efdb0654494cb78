// Local responses the plugin sends instead of forwarding the request.

import { ByteBuf } from "./bytes";
import { HeaderList, sendLocalResponse } from "./abi";
import { Decision } from "./check";

const MAX_HEADER_NUMBER: f64 = 1e15;

function number(v: f64, roundUp: bool): ByteBuf {
  let b = new ByteBuf(20);
  let x = v > MAX_HEADER_NUMBER ? MAX_HEADER_NUMBER : v;
  b.appendU64(<u64>(roundUp ? Math.ceil(x) : Math.floor(x)));
  return b;
}

function textHeaders(): HeaderList {
  return new HeaderList().add("content-type", ByteBuf.fromString("text/plain; charset=utf-8"));
}

/** The service said no: rejectStatus with its description and any numbers it gave. */
export function sendLimited(status: u32, d: Decision): void {
  let h = textHeaders();
  if (d.retryAfter >= 0) h.add("retry-after", number(d.retryAfter, true));
  if (d.limit >= 0) h.add("x-ratelimit-limit-tokens", number(d.limit, false));
  if (d.remaining >= 0) h.add("x-ratelimit-remaining-tokens", number(d.remaining, false));
  let body = ByteBuf.fromString("rate limited");
  if (d.description.length > 0) body = safeBody(d.description);
  sendLocalResponse(status, "llm_token_rate_limited", body, h);
}

/** The check failed and failOpen is false. */
export function sendCheckFailed(): void {
  sendLocalResponse(503, "llm_token_rate_limit_check_failed",
    ByteBuf.fromString("rate limit service unavailable"), textHeaders());
}

/** The service refused the check (a 4xx with a JSON body): the request is refused, not let through. */
export function sendCheckRefused(): void {
  sendLocalResponse(403, "llm_token_rate_limit_check_refused",
    ByteBuf.fromString("rate limit check refused for this request"), textHeaders());
}

/** Host matching met a Host that could name another host (userinfo, several values). */
export function sendBadHost(): void {
  sendLocalResponse(400, "llm_token_rate_limit_bad_host", ByteBuf.fromString("invalid Host header"), textHeaders());
}

/** A key placeholder had no value and onMissingKey is "deny". */
export function sendMissingKey(template: string): void {
  let body = ByteBuf.fromString("missing rate limit key attribute: ");
  body.appendString(template);
  sendLocalResponse(403, "llm_token_rate_limit_key_missing", body, textHeaders());
}

/** Response bodies are ours to shape; cap the service's description at 1 KiB. */
function safeBody(b: ByteBuf): ByteBuf {
  if (b.length > 1024) return b.slice(0, 1024);
  return b;
}
