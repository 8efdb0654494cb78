// The calls to the rate-limit service that wait for a reply, and who gets each reply.
//
// Envoy attaches every call the plugin makes to the root context and hands the reply to it
// (proxy_on_http_call_response). Each root keeps its calls in flight by token (Root.calls);
// like the proxy-wasm SDKs' dispatchers, deliverReply is the one place that routes a reply
// back to whoever made the call: a stream gets its check's reply, a root its report's. Each
// kind of call is a PendingCall that knows its owner, so this module knows neither streams nor
// roots and imports run one way (filter.ts, root.ts -> calls.ts).

/** A call in flight; its onReply is the owner's handler. */
export abstract class PendingCall {
  /** The reply (nHeaders == 0: no reply: timeout, reset or unknown cluster). Runs with the root context effective. */
  abstract onReply(nHeaders: u32, bodySize: u32): void;
}

/** Hands the reply to the call's owner, once (the call leaves `calls`); unknown tokens are ignored. */
export function deliverReply(calls: Map<u32, PendingCall>, token: u32, nHeaders: u32, bodySize: u32): void {
  if (!calls.has(token)) return;
  const call = calls.get(token);
  calls.delete(token);
  call.onReply(nHeaders, bodySize);
}
