// What every call to the rate-limit service shares (the check, check.ts, and the usage
// report, report.ts): the headers, which are only what the plugin writes and never the
// client's; the keys as a JSON array; and the status of the reply.

import { ByteBuf, parseDecimal } from "./bytes";
import { Config } from "./config";
import { HeaderList, HostBytes, MAP_HTTP_CALL_RESPONSE_HEADERS } from "./abi";
import { appendJsonString } from "./encode";

/** ["k1","k2"] */
export function keysJson(keys: ByteBuf[]): ByteBuf {
  const out = new ByteBuf(64);
  out.push(0x5b);
  for (let i = 0; i < keys.length; i++) {
    if (i > 0) out.push(0x2c);
    appendJsonString(out, keys[i]);
  }
  out.push(0x5d);
  return out;
}

/**
 * Headers of a call to the service: only what the plugin writes, never the client's (its
 * Authorization header or body are never forwarded).
 */
export function serviceHeaders(cfg: Config, method: string, path: ByteBuf): HeaderList {
  // :authority is required: without it Envoy fails the call with BAD_ARGUMENT.
  const h = new HeaderList().add(":method", ByteBuf.fromString(method)).add(":path", path).add(":authority", cfg.authority);
  const token = cfg.token;
  if (token !== null) {
    const v = ByteBuf.fromString("Bearer ");
    v.appendBuf(token);
    h.add("authorization", v);
  }
  return h;
}

const hb = new HostBytes();
const STATUS = ByteBuf.fromString(":status");

/** Status code of the http-call response, or 0 (read it while the root context is effective). */
export function callStatus(nHeaders: u32): i32 {
  if (nHeaders == 0) return 0;
  if (!hb.header(MAP_HTTP_CALL_RESPONSE_HEADERS, STATUS)) return 0;
  const v = parseDecimal(hb.toBuf(), 999);
  return v < 0 ? 0 : <i32>v;
}
