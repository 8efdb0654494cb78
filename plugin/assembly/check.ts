// The check call to the rate-limit service and the reading of its reply.
//   GET /ratelimit?ratelimit_keys=<URL-encoded JSON array>   ->   200 {"allow": bool, "description": string,
//   optional "limit", "remaining", "retry_after_seconds"}. Anything else is a failed check.
// With reserve on: GET /ratelimit?ratelimit_keys=...&reserve=N; an admitting service that
// deducted N says so with "reserved": N (the reference service ignores the parameter and
// never sends "reserved": then nothing was reserved).

import { ByteBuf } from "./bytes";
import { Config } from "./config";
import { HeaderList, HostBytes, httpCall, MAP_HTTP_CALL_RESPONSE_HEADERS, BUFFER_HTTP_CALL_RESPONSE_BODY } from "./abi";
import { appendJsonString, appendUrlEncoded } from "./encode";
import { parseJson, J_OBJ, J_BOOL, J_STR, J_NUM } from "./json";

export const CHECK_PATH = "/ratelimit?ratelimit_keys=";
const MAX_REPLY_BYTES = 65536;

export const ALLOW = 0;
export const DENY = 1;
export const FAIL = 2;

export class Decision {
  outcome: i32 = FAIL;
  description: ByteBuf = new ByteBuf(0);
  limit: f64 = -1;
  remaining: f64 = -1;
  retryAfter: f64 = -1;
  reserved: i64 = 0;   // tokens the service deducted up front (allow only)
  reason: string = ""; // why the check failed, for logs
}

/** ["k1","k2"] */
export function keysJson(keys: ByteBuf[]): ByteBuf {
  let out = new ByteBuf(64);
  out.push(0x5b);
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) out.push(0x2c);
    appendJsonString(out, keys[i]);
  }
  out.push(0x5d);
  return out;
}

/** Dispatches the check (reserve >= 0: with &reserve=N); returns the call token, -1 if the host refused it. */
export function dispatchCheck(cfg: Config, keys: ByteBuf[], reserve: i64 = -1): i64 {
  let path = ByteBuf.fromString(CHECK_PATH);
  appendUrlEncoded(path, keysJson(keys));
  if (reserve >= 0) {
    path.appendString("&reserve=");
    path.appendU64(<u64>reserve);
  }
  // :authority is required: without it Envoy fails the call with BAD_ARGUMENT.
  // Never forward the client's Authorization header or body.
  let headers = new HeaderList()
    .add(":method", ByteBuf.fromString("GET"))
    .add(":path", path)
    .add(":authority", cfg.authority);
  return httpCall(cfg.cluster, headers, new ByteBuf(0), cfg.timeoutMs);
}

const hb = new HostBytes();
const STATUS = ByteBuf.fromString(":status");

/** Status code of the http-call response, or 0. */
export function callStatus(nHeaders: u32): i32 {
  if (nHeaders == 0) return 0;
  if (!hb.header(MAP_HTTP_CALL_RESPONSE_HEADERS, STATUS)) return 0;
  let v = 0;
  let ok = hb.len > 0 && hb.len <= 3;
  for (let i = 0; ok && i < hb.len; i++) {
    let c = <i32>load<u8>(hb.ptr + <usize>i);
    if (c < 0x30 || c > 0x39) ok = false; else v = v * 10 + (c - 0x30);
  }
  hb.release();
  return ok ? v : 0;
}

/** Reads the check reply (call it before switching the effective context). */
export function readDecision(nHeaders: u32, bodySize: u32): Decision {
  let d = new Decision();
  if (nHeaders == 0) { d.reason = "no reply (timeout, reset or unknown cluster)"; return d; }
  let status = callStatus(nHeaders);
  if (status != 200) { d.reason = "status " + status.toString(); return d; }
  if (bodySize == 0 || bodySize > <u32>MAX_REPLY_BYTES) { d.reason = "body size " + bodySize.toString(); return d; }
  if (!hb.buffer(BUFFER_HTTP_CALL_RESPONSE_BODY, 0, bodySize)) { d.reason = "body unreadable"; return d; }
  let body = hb.toBuf();
  let v = parseJson(body);
  if (v === null || v.kind != J_OBJ) { d.reason = "body is not a JSON object"; return d; }
  let allow = v.get("allow");
  if (allow === null || allow.kind != J_BOOL) { d.reason = "no boolean \"allow\""; return d; }
  let desc = v.get("description");
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
  }
  d.outcome = allow.b ? ALLOW : DENY;
  return d;
}
