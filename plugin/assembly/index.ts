// Proxy-Wasm entry points (ABI 0.2.0) of the LLM token rate-limit filter.
//
// The SDK's context registry (@solo-io/proxy-runtime exports.ts) is replaced by this
// small one: the SDK's builds several debug-log strings on every context creation
// (costly on requests the plugin does not even handle), throws when plugin_root_id has
// no registered factory, and switches into the origin stream on http-call replies even
// when that stream is gone. Here every root id is accepted — "" (Istio, WasmPlugin
// without pluginName), "llm-token-ratelimit", or any other — and unmatched requests
// allocate nothing per stream (see primaryId below).

import { proc_exit } from "bindings/wasi_unstable";
import { ByteBuf } from "./bytes";
import * as abi from "./abi";
import { parseConfig } from "./config";
import { Root } from "./root";
import { onRequestHeaders, onRequestData, onRequestTrailers, onResponseHeaders, onResponseBody,
  onResponseTrailers, onStreamEnd, onStreamDelete, CONTINUE } from "./filter";

import { __collect } from "rt/index-full";

export { malloc } from "@solo-io/proxy-runtime/malloc";

// The "full" runtime frees acyclic garbage at once but only buffers objects of possibly
// cyclic types (parsed JSON trees, maps) until __collect runs, and nothing runs it for
// us: without these calls every matched request would leak a few hundred bytes.
function collectGarbage(): void { __collect(); }

/** AssemblyScript's abort (see --use abort=abort_proc_exit): log, then trap. */
// @ts-ignore: decorator
@global
export function abort_proc_exit(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let m = "llm-token-ratelimit: abort: ";
  if (message !== null) m += message;
  if (fileName !== null) m += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  abi.log(abi.LOG_CRITICAL, m);
  proc_exit(255);
}

const roots = new Map<u32, Root>();
// The first root context is the "primary" one. Its streams (with one plugin configuration
// per VM: all streams) are not recorded anywhere; only streams of other roots get an entry
// in streamRoot. So an unmatched request costs no map insert or delete.
let primaryId: u32 = 0;
let primary: Root | null = null; // null before the first root and after it is deleted
let hadPrimary = false;
const streamRoot = new Map<u32, u32>(); // stream context id -> root context id, other roots only

function addRoot(id: u32): void {
  if (roots.has(id)) return;
  let r = new Root(id);
  roots.set(id, r);
  if (!hadPrimary) { hadPrimary = true; primaryId = id; primary = r; }
}

function rootOf(streamId: u32): Root | null {
  if (streamRoot.size == 0 || !streamRoot.has(streamId)) return primary;
  let r = streamRoot.get(streamId);
  if (!roots.has(r)) return null;
  return roots.get(r);
}

export function proxy_abi_version_0_2_0(): void {}

export function proxy_on_context_create(id: u32, rootId: u32): void {
  if (rootId == 0) addRoot(id);
  else if (!hadPrimary || rootId != primaryId) streamRoot.set(id, rootId);
}

export function proxy_on_vm_start(rootId: u32, size: u32): u32 { return 1; }
const configBytes = new abi.HostBytes();

function readConfig(size: u32): ByteBuf | null {
  if (size == 0) return new ByteBuf(0);
  if (!configBytes.buffer(abi.BUFFER_PLUGIN_CONFIGURATION, 0, size)) return null;
  return configBytes.toBuf();
}

/** Same checks as proxy_on_configure, without applying the configuration. */
export function proxy_validate_configuration(rootId: u32, size: u32): u32 {
  let raw = readConfig(size);
  let ok = raw !== null && parseConfig(<ByteBuf>raw).config !== null;
  collectGarbage();
  return ok ? 1 : 0;
}

export function proxy_on_configure(rootId: u32, size: u32): u32 {
  addRoot(rootId);
  let raw = readConfig(size);
  if (raw === null) {
    abi.log(abi.LOG_ERROR, "llm-token-ratelimit: cannot read pluginConfig");
    return 0;
  }
  let ok = roots.get(rootId).configure(<ByteBuf>raw);
  collectGarbage();
  return ok ? 1 : 0;
}

export function proxy_on_tick(rootId: u32): void {
  if (roots.has(rootId)) roots.get(rootId).onTick();
  collectGarbage();
}
export function proxy_on_queue_ready(rootId: u32, token: u32): void {}

export function proxy_on_request_headers(id: u32, nHeaders: u32, endOfStream: u32): i32 {
  let root = rootOf(id);
  if (root === null) return CONTINUE;
  return onRequestHeaders(id, root, endOfStream != 0);
}

export function proxy_on_request_body(id: u32, size: u32, endOfStream: u32): i32 {
  return onRequestData(id, size, endOfStream != 0);
}

export function proxy_on_request_trailers(id: u32, n: u32): i32 {
  return onRequestTrailers(id);
}

export function proxy_on_response_headers(id: u32, nHeaders: u32, endOfStream: u32): i32 {
  onResponseHeaders(id, endOfStream != 0);
  return CONTINUE;
}

export function proxy_on_response_body(id: u32, size: u32, endOfStream: u32): i32 {
  // Always pass the chunk on at once: the scan never delays the client.
  onResponseBody(id, size, endOfStream != 0);
  return CONTINUE;
}

export function proxy_on_response_trailers(id: u32, n: u32): i32 {
  onResponseTrailers(id);
  return CONTINUE;
}

// Every call is made from a root context, and its reply comes back to it; the root forwards it
// to deliverReply (calls.ts), which hands it to whoever made the call (a stream's check, a report).
export function proxy_on_http_call_response(rootId: u32, token: u32, nHeaders: u32, bodySize: u32, nTrailers: u32): void {
  if (roots.has(rootId)) roots.get(rootId).onCallResponse(token, nHeaders, bodySize);
  collectGarbage();
}

// Envoy calls proxy_on_done when any stream is destroyed (completed, reset or
// abandoned), and for a root context when its plugin is removed; proxy_on_delete comes
// right after it (Envoy's Context::onDestroy: onDone(); onDelete(); a root: onDelete once
// onDone returned true). So all the cleanup happens here, and neither proxy_on_delete nor
// proxy_on_log is exported: Envoy skips callbacks a module does not export, which saves
// two VM calls on every request.
export function proxy_on_done(id: u32): u32 {
  onStreamEnd(id);
  if (onStreamDelete(id)) collectGarbage();
  if (streamRoot.size > 0) streamRoot.delete(id);
  // With only the primary root alive, any other id is a stream: no lookup.
  if (id == primaryId || primary === null || roots.size > 1) {
    if (roots.has(id)) roots.get(id).close();
    if (roots.delete(id) && id == primaryId) primary = null;
  }
  return 1;
}
