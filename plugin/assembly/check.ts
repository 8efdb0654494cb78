// The check call to the rate-limit service and the reading of its reply.
//   GET /ratelimit?ratelimit_keys=<URL-encoded JSON array>   ->   200 {"allow": bool, "description": string,
//   optional "limit", "remaining", "retry_after_seconds"}.
// With reserve on: GET /ratelimit?ratelimit_keys=...&reserve=N; an admitting service that
// deducted N says so with "reserved": N and "reservation_id" (the reference service ignores
// the parameter and sends neither: then nothing was reserved).
//
// Which replies mean what: 200 with a JSON decision decides. A 4xx whose body is a JSON
// object is the service refusing this request (our service's errors are JSON): the request
// is refused, never let through. Anything else (no reply, timeout, 5xx, a 4xx without a
// JSON body such as the reference service's empty 400 on a Redis failure) means the service
// is unavailable, and failOpen decides.

import { ByteBuf } from "./bytes";
import { Config } from "./config";
import { HostBytes, httpCall, BUFFER_HTTP_CALL_RESPONSE_BODY } from "./abi";
import { appendUrlEncoded } from "./encode";
import { keysJson, serviceHeaders, callStatus } from "./service-call";
import { parseJson, J_OBJ, J_BOOL, J_STR, J_NUM } from "./json";

export const CHECK_PATH = "/ratelimit?ratelimit_keys=";
const MAX_REPLY_BYTES = 65536;

export const ALLOW = 0;
export const DENY = 1;
export const FAIL = 2; // the service is unavailable: failOpen decides
export const REFUSED = 3; // the service refused the request (4xx, JSON): refuse it

export class Decision {
  outcome: i32 = FAIL;
  description: ByteBuf = new ByteBuf(0);
  limit: f64 = -1;
  remaining: f64 = -1;
  retryAfter: f64 = -1;
  reserved: i64 = 0; // tokens the service deducted up front (allow only)
  reservationId: ByteBuf | null = null; // names that reservation in the report
  reason: string = ""; // why the check failed, for logs
}

/** Dispatches the check (reserve >= 0: with &reserve=N); returns the call token, -1 if the host refused it. */
export function dispatchCheck(cfg: Config, keys: ByteBuf[], reserve: i64 = -1): i64 {
  const path = ByteBuf.fromString(CHECK_PATH);
  appendUrlEncoded(path, keysJson(keys));
  if (reserve >= 0) {
    path.appendString("&reserve=");
    path.appendU64(<u64>reserve);
  }
  return httpCall(cfg.cluster, serviceHeaders(cfg, "GET", path), new ByteBuf(0), cfg.timeoutMs);
}

const hb = new HostBytes();

/** Reads the check reply (call it before switching the effective context). */
export function readDecision(nHeaders: u32, bodySize: u32): Decision {
  const d = new Decision();
  if (nHeaders == 0) {
    d.reason = "no reply (timeout, reset or unknown cluster)";
    return d;
  }
  const status = callStatus(nHeaders);
  if (status != 200) {
    d.reason = "status " + status.toString();
    if (status >= 400 && status < 500 && replyIsJsonObject(bodySize)) d.outcome = REFUSED;
    return d;
  }
  if (bodySize == 0 || bodySize > <u32>MAX_REPLY_BYTES) {
    d.reason = "body size " + bodySize.toString();
    return d;
  }
  if (!hb.buffer(BUFFER_HTTP_CALL_RESPONSE_BODY, 0, bodySize)) {
    d.reason = "body unreadable";
    return d;
  }
  const body = hb.toBuf();
  const v = parseJson(body);
  if (v === null || v.kind != J_OBJ) {
    d.reason = "body is not a JSON object";
    return d;
  }
  const allow = v.get("allow");
  if (allow === null || allow.kind != J_BOOL) {
    d.reason = 'no boolean "allow"';
    return d;
  }
  const desc = v.get("description");
  if (desc !== null && desc.kind == J_STR) d.description = <ByteBuf>desc.s;
  let n = v.get("limit");
  if (n !== null && n.kind == J_NUM && n.n >= 0) d.limit = n.n;
  n = v.get("remaining");
  if (n !== null && n.kind == J_NUM) d.remaining = n.n < 0 ? 0 : n.n;
  n = v.get("retry_after_seconds");
  if (n !== null && n.kind == J_NUM && n.n >= 0) d.retryAfter = n.n;
  if (allow.b) {
    n = v.get("reserved");
    if (n !== null && n.kind == J_NUM && n.n >= 0 && n.n <= 1e15) d.reserved = <i64>Math.floor(n.n);
    const id = v.get("reservation_id");
    if (id !== null && id.kind == J_STR && id.s !== null && (<ByteBuf>id.s).length <= 256) d.reservationId = id.s;
  }
  d.outcome = allow.b ? ALLOW : DENY;
  return d;
}

/** Whether the call's reply body is a JSON object (read after the status, same effective context). */
function replyIsJsonObject(bodySize: u32): bool {
  if (bodySize < 2 || bodySize > <u32>MAX_REPLY_BYTES) return false;
  if (!hb.buffer(BUFFER_HTTP_CALL_RESPONSE_BODY, 0, bodySize)) return false;
  const v = parseJson(hb.toBuf());
  return v !== null && v.kind == J_OBJ;
}
