// The usage report, sent after the response ends. Dispatched as a plugin HTTP call:
// Envoy attaches those to the root context, so the client never waits for it and the
// call survives the end of the stream. One attempt; failures are counted, not retried.
//   POST /update_ratelimit_record
//   {"ratelimit_keys":[...],"prompt_tokens":N,"completion_tokens":N,"total_tokens":N}
// plus, in reserve mode, "reserved_tokens":R when the check reserved R > 0 (the service
// charges actual - R) and "estimated":true when the usage is our estimate.

import { ByteBuf } from "./bytes";
import { Config } from "./config";
import { HeaderList, httpCall } from "./abi";
import { keysJson } from "./check";

export const REPORT_PATH = "/update_ratelimit_record";

export function reportBody(keys: ByteBuf[], prompt: i64, completion: i64, total: i64, reserved: i64 = 0, estimated: bool = false): ByteBuf {
  let b = ByteBuf.fromString("{\"ratelimit_keys\":");
  b.appendBuf(keysJson(keys));
  b.appendString(",\"prompt_tokens\":");
  b.appendU64(<u64>prompt);
  b.appendString(",\"completion_tokens\":");
  b.appendU64(<u64>completion);
  b.appendString(",\"total_tokens\":");
  b.appendU64(<u64>total);
  if (reserved > 0) {
    b.appendString(",\"reserved_tokens\":");
    b.appendU64(<u64>reserved);
  }
  if (estimated) b.appendString(",\"estimated\":true");
  b.push(0x7d);
  return b;
}

/** Returns the call token, -1 if the host refused the call. */
export function dispatchReport(cfg: Config, body: ByteBuf): i64 {
  let headers = new HeaderList()
    .add(":method", ByteBuf.fromString("POST"))
    .add(":path", ByteBuf.fromString(REPORT_PATH))
    .add(":authority", cfg.authority)
    .add("content-type", ByteBuf.fromString("application/json"));
  return httpCall(cfg.cluster, headers, body, cfg.timeoutMs);
}
