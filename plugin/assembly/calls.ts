// The calls to the rate-limit service that wait for a reply, by token, and who gets each reply.
//
// Envoy attaches every call the plugin makes to the root context and hands the reply to it
// (proxy_on_http_call_response). Like the proxy-wasm SDKs' dispatchers, this table is the one
// place that routes a reply back to whoever made the call: a stream gets its check's reply, a
// root its report's. Each kind of call is a PendingCall that knows its owner, so this module
// knows neither streams nor roots and imports run one way (filter.ts, root.ts -> calls.ts).

/** A call in flight; its onReply is the owner's handler. */
export abstract class PendingCall {
  /** The reply (nHeaders == 0: no reply: timeout, reset or unknown cluster). Runs with the root context effective. */
  abstract onReply(nHeaders: u32, bodySize: u32): void;
}

/** One root context's calls in flight. */
export class Calls {
  private pending: Map<u32, PendingCall> = new Map();

  track(token: u32, call: PendingCall): void {
    this.pending.set(token, call);
  }

  /** Hands the reply to the call's owner, once; unknown tokens are ignored. */
  deliver(token: u32, nHeaders: u32, bodySize: u32): void {
    if (!this.pending.has(token)) return;
    let call = this.pending.get(token);
    this.pending.delete(token);
    call.onReply(nHeaders, bodySize);
  }

  /**
   * The root context is going away: replies to its calls (if any still come) go to nobody.
   * Calls refer to their root, so this also frees what would otherwise be a cycle.
   */
  clear(): void {
    this.pending = new Map();
  }
}
