// The usage report, sent after the response ends. Dispatched as a plugin HTTP call:
// Envoy attaches those to the root context, so the client never waits for it and the
// call survives the end of the stream. A report that fails is kept and retried (outbox.ts).
//   POST /update_ratelimit_record
//   {"ratelimit_keys":[...],"prompt_tokens":N,"completion_tokens":N,"total_tokens":N,
//    "request_id":"..."}, and "model" when the request body named one (non-empty, <= 128 bytes)
// plus, when known, "cache_read_tokens", "cache_write_tokens", "reasoning_tokens" (parts of
// the counts above, for pricing), "reserved_tokens":R and "reservation_id" when the check
// reserved R > 0 (the service charges actual - R), and "estimated":true when the usage is
// our estimate. The reference service ignores the fields it does not know.

import { ByteBuf, hexDigit } from "./bytes";
import { Config } from "./config";
import { httpCall, randomBytes, nowMs } from "./abi";
import { keysJson, serviceHeaders } from "./service-call";
import { appendJsonString } from "./encode";

export const REPORT_PATH = "/update_ratelimit_record";
/** The service's bound on model (and ids): UTF-8 bytes. */
export const MAX_LABEL_BYTES = 128;

/** What one response cost, as it will be reported. */
export class UsageReport {
  prompt: i64 = 0;
  completion: i64 = 0;
  total: i64 = 0;
  cacheRead: i64 = 0;
  cacheWrite: i64 = 0;
  reasoning: i64 = 0;
  reserved: i64 = 0; // tokens the check reserved for this request
  reservationId: ByteBuf | null = null; // the service's name for that reservation
  estimated: bool = false; // no usage in the response: our estimate
  model: ByteBuf | null = null; // the request's "model", for usage records

  /**
   * A usage that is not final (provisional, or a stream cut before its last usage): charge at
   * least the estimate. The prompt stays the provider's count when it gave one; the completion
   * is at least what was delivered. Marked estimated when the estimate raised it.
   */
  atLeast(promptEst: i64, completionEst: i64): void {
    let raised = false;
    if (this.prompt <= 0 && promptEst > this.prompt) {
      this.prompt = promptEst;
      raised = true;
    }
    if (completionEst > this.completion) {
      this.completion = completionEst;
      raised = true;
    }
    if (!raised) return;
    const sum = this.prompt + this.completion;
    if (sum > this.total) this.total = sum;
    this.estimated = true;
  }

  /** Whether reporting it can change a balance. */
  chargesAnything(): bool {
    return this.total > 0 || this.prompt > 0 || this.completion > 0 || this.reserved > 0;
  }
}

/**
 * The report's body. `withLabels` false leaves out what only labels it (model): a report the
 * service refused for a label is sent again without it (root.ts), never lost for it.
 */
export function reportBody(keys: ByteBuf[], u: UsageReport, requestId: ByteBuf, withLabels: bool = true): ByteBuf {
  const b = ByteBuf.fromString('{"ratelimit_keys":');
  b.appendBuf(keysJson(keys));
  field(b, "prompt_tokens", u.prompt, true);
  field(b, "completion_tokens", u.completion, true);
  field(b, "total_tokens", u.total, true);
  field(b, "cache_read_tokens", u.cacheRead, false);
  field(b, "cache_write_tokens", u.cacheWrite, false);
  field(b, "reasoning_tokens", u.reasoning, false);
  if (u.reserved > 0) {
    field(b, "reserved_tokens", u.reserved, true);
    const rid = u.reservationId;
    if (rid !== null) {
      b.appendString(',"reservation_id":');
      appendJsonString(b, rid);
    }
  }
  if (u.estimated) b.appendString(',"estimated":true');
  const model = u.model;
  // Only a model the service accepts (a non-empty string of at most 128 bytes, service
  // input.ts): {"model":""} must not get the report refused.
  if (withLabels && model !== null && model.length > 0 && model.length <= MAX_LABEL_BYTES) {
    b.appendString(',"model":');
    appendJsonString(b, model);
  }
  b.appendString(',"request_id":');
  appendJsonString(b, requestId);
  b.push(0x7d);
  return b;
}

function field(b: ByteBuf, name: string, v: i64, always: bool): void {
  if (!always && v <= 0) return;
  b.appendString(',"');
  b.appendString(name);
  b.appendString('":');
  b.appendU64(<u64>(v > 0 ? v : 0));
}

/** Returns the call token, -1 if the host refused the call. */
export function dispatchReport(cfg: Config, body: ByteBuf): i64 {
  const headers = serviceHeaders(cfg, "POST", ByteBuf.fromString(REPORT_PATH)).add("content-type", ByteBuf.fromString("application/json"));
  return httpCall(cfg.cluster, headers, body, cfg.timeoutMs);
}

// Report ids: unique per report, so that the service applies a retried report once. A
// random prefix per VM (Envoy runs one VM per worker thread, in every proxy) and a counter.
// Never derived from the request: a client could send the same x-request-id twice and have
// its second request dropped as a duplicate.
let idPrefix: ByteBuf | null = null;
let idCounter: u64 = 0;

export function nextRequestId(): ByteBuf {
  let p = idPrefix;
  if (p === null) {
    const raw = new ByteBuf(16);
    if (!randomBytes(raw, 12)) {
      // No entropy from the host: the clock in ns-ish resolution, which still differs per VM.
      const t = <u64>nowMs();
      for (let i = 0; i < 12; i++) raw.push((<i32>((t >> (<u64>(i % 8) * 8)) & 0xff)) ^ (i * 37));
    }
    p = new ByteBuf(26);
    for (let i = 0; i < raw.length; i++) {
      p.push(hexDigit(raw.at(i) >> 4));
      p.push(hexDigit(raw.at(i)));
    }
    p.push(0x2d);
    idPrefix = p;
  }
  const id = new ByteBuf(p.length + 12);
  id.appendBuf(p);
  idCounter++;
  id.appendU64(idCounter);
  return id;
}
