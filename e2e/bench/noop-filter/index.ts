// A Proxy-Wasm filter that does nothing: the same callbacks as plugin/assembly/index.ts, each
// returning at once. The Envoy benchmark runs it beside the plugin so that what Envoy's Wasm host
// costs per request (a context per stream, one V8 call per callback) is told apart from what the
// plugin's own code costs. Envoy calls only the callbacks a module exports, so the bench refuses to
// run if this module's proxy_* exports differ from the plugin's. Built at bench time (AssemblyScript
// 0.17, like the plugin).

export { malloc } from "@solo-io/proxy-runtime/malloc";

export function proxy_abi_version_0_2_0(): void {}
export function proxy_on_context_create(id: u32, rootId: u32): void {}
export function proxy_on_vm_start(rootId: u32, size: u32): u32 {
  return 1;
}
export function proxy_validate_configuration(rootId: u32, size: u32): u32 {
  return 1;
}
export function proxy_on_configure(rootId: u32, size: u32): u32 {
  return 1;
}
export function proxy_on_tick(rootId: u32): void {}
export function proxy_on_queue_ready(rootId: u32, token: u32): void {}
export function proxy_on_request_headers(id: u32, nHeaders: u32, endOfStream: u32): i32 {
  return 0;
}
export function proxy_on_request_body(id: u32, size: u32, endOfStream: u32): i32 {
  return 0;
}
export function proxy_on_request_trailers(id: u32, n: u32): i32 {
  return 0;
}
export function proxy_on_response_headers(id: u32, nHeaders: u32, endOfStream: u32): i32 {
  return 0;
}
export function proxy_on_response_body(id: u32, size: u32, endOfStream: u32): i32 {
  return 0;
}
export function proxy_on_response_trailers(id: u32, n: u32): i32 {
  return 0;
}
export function proxy_on_http_call_response(rootId: u32, token: u32, nHeaders: u32, bodySize: u32, nTrailers: u32): void {}
export function proxy_on_done(id: u32): u32 {
  return 1;
}
