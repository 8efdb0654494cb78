// Thin layer over the Proxy-Wasm ABI 0.2.x host functions.
//
// Why not the SDK's wrappers: @solo-io/proxy-runtime builds debug-log strings on every
// call (even when the log level would drop them), throws on non-Ok results (an AS throw
// is an abort, which traps the VM), and copies host buffers into fresh ArrayBuffers.
// Here host data is read in place (pointer + length) and every result is checked.
// Only functions Envoy provides under ABI 0.2.0 are imported (never
// proxy_clear_route_cache or proxy_get_log_level: a module importing them fails to load).

import { free } from "@solo-io/proxy-runtime/malloc";
import { ByteBuf } from "./bytes";

// @ts-ignore: decorator
@external("env", "proxy_log")
declare function proxy_log(level: i32, ptr: usize, size: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_property")
declare function proxy_get_property(pathPtr: usize, pathSize: usize, retPtr: usize, retSize: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(typ: i32, keyPtr: usize, keySize: usize, retPtr: usize, retSize: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_replace_header_map_value")
declare function proxy_replace_header_map_value(typ: i32, keyPtr: usize, keySize: usize, valuePtr: usize, valueSize: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_remove_header_map_value")
declare function proxy_remove_header_map_value(typ: i32, keyPtr: usize, keySize: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_buffer_bytes")
declare function proxy_get_buffer_bytes(typ: i32, start: u32, length: u32, retPtr: usize, retSize: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: i32, start: u32, length: u32, dataPtr: usize, dataSize: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_continue_stream")
declare function proxy_continue_stream(streamType: i32): u32;
// @ts-ignore: decorator
@external("env", "proxy_send_local_response")
declare function proxy_send_local_response(status: u32, detailsPtr: usize, detailsSize: usize, bodyPtr: usize, bodySize: usize,
  headersPtr: usize, headersSize: usize, grpcStatus: i32): u32;
// @ts-ignore: decorator
@external("env", "proxy_http_call")
declare function proxy_http_call(clusterPtr: usize, clusterSize: usize, headersPtr: usize, headersSize: usize,
  bodyPtr: usize, bodySize: usize, trailersPtr: usize, trailersSize: usize, timeoutMs: u32, tokenPtr: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_set_effective_context")
declare function proxy_set_effective_context(contextId: u32): u32;
// @ts-ignore: decorator
@external("env", "proxy_define_metric")
declare function proxy_define_metric(typ: i32, namePtr: usize, nameSize: usize, retId: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_increment_metric")
declare function proxy_increment_metric(id: u32, offset: i64): u32;
// @ts-ignore: decorator
@external("env", "proxy_record_metric")
declare function proxy_record_metric(id: u32, value: u64): u32;
// @ts-ignore: decorator
@external("env", "proxy_get_current_time_nanoseconds")
declare function proxy_get_current_time_nanoseconds(retPtr: usize): u32;
// @ts-ignore: decorator
@external("env", "proxy_set_tick_period_milliseconds")
declare function proxy_set_tick_period_milliseconds(period: u32): u32;
// Envoy (proxy-wasm-cpp-host) provides WASI's random_get under both WASI module names.
// @ts-ignore: decorator
@external("wasi_unstable", "random_get")
declare function wasi_random_get(ptr: usize, len: usize): u16;

export const OK: u32 = 0;

export const LOG_TRACE = 0;
export const LOG_DEBUG = 1;
export const LOG_INFO = 2;
export const LOG_WARN = 3;
export const LOG_ERROR = 4;
export const LOG_CRITICAL = 5;

export const MAP_REQUEST_HEADERS = 0;
export const MAP_RESPONSE_HEADERS = 2;
export const MAP_HTTP_CALL_RESPONSE_HEADERS = 6;

export const BUFFER_REQUEST_BODY = 0;
export const BUFFER_RESPONSE_BODY = 1;
export const BUFFER_HTTP_CALL_RESPONSE_BODY = 4;
export const BUFFER_PLUGIN_CONFIGURATION = 7;

export const STREAM_REQUEST = 0;

// Return slots the host writes a (pointer, size) pair or a u32 into. Static memory: no allocation.
const SLOT: usize = memory.data(16, 8);

/**
 * A host-allocated byte range (the host called our `malloc`). Read it in place with
 * load<u8>, then release() it exactly once. ptr == 0 means empty / not found.
 */
export class HostBytes {
  ptr: usize = 0;
  len: i32 = 0;

  private take(result: u32): bool {
    if (result != OK) { this.ptr = 0; this.len = 0; return false; }
    this.ptr = load<u32>(SLOT);
    this.len = <i32>load<u32>(SLOT + 4);
    if (this.ptr == 0) this.len = 0;
    return true;
  }

  /** Frees the host-allocated block (allocated via our exported malloc). */
  release(): void {
    if (this.ptr != 0) free(this.ptr);
    this.ptr = 0;
    this.len = 0;
  }

  header(map: i32, name: ByteBuf): bool {
    return this.take(proxy_get_header_map_value(map, name.ptr(), name.length, SLOT, SLOT + 4));
  }

  /** `path` holds NUL-separated segments, e.g. "source\0address". */
  property(path: ByteBuf): bool {
    return this.take(proxy_get_property(path.ptr(), path.length, SLOT, SLOT + 4));
  }

  buffer(typ: i32, start: u32, length: u32): bool {
    return this.take(proxy_get_buffer_bytes(typ, start, length, SLOT, SLOT + 4));
  }

  /** Copies the bytes out (for values that must outlive this call), then releases. */
  toBuf(): ByteBuf {
    let b = new ByteBuf(this.len);
    b.appendRaw(this.ptr, this.len);
    this.release();
    return b;
  }
}

/** Sets header `name` (lower case) to `value`, replacing any value it had. */
export function replaceHeader(map: i32, name: ByteBuf, value: ByteBuf): void {
  proxy_replace_header_map_value(map, name.ptr(), name.length, value.ptr(), value.length);
}

export function removeHeader(map: i32, name: ByteBuf): void {
  proxy_remove_header_map_value(map, name.ptr(), name.length);
}

/** Replaces bytes [start, start+length) of a buffer (Envoy: start 0 and length = size replaces it all). */
export function setBuffer(typ: i32, start: u32, length: u32, data: ByteBuf): u32 {
  return proxy_set_buffer_bytes(typ, start, length, data.ptr(), data.length);
}

export function continueRequest(): u32 {
  return proxy_continue_stream(STREAM_REQUEST);
}

export function setEffectiveContext(id: u32): u32 {
  return proxy_set_effective_context(id);
}

/** Header list in the ABI wire format: u32 count, (u32 keyLen, u32 valLen)*, then key\0 value\0 ... */
export class HeaderList {
  names: ByteBuf[] = [];
  values: ByteBuf[] = [];

  add(name: string, value: ByteBuf): HeaderList {
    this.names.push(ByteBuf.fromString(name));
    this.values.push(value);
    return this;
  }

  serialize(): ByteBuf {
    let n = this.names.length;
    let out = new ByteBuf(64);
    out.appendU32LE(<u32>n);
    for (let i = 0; i < n; i++) {
      out.appendU32LE(<u32>this.names[i].length);
      out.appendU32LE(<u32>this.values[i].length);
    }
    for (let i = 0; i < n; i++) {
      out.appendBuf(this.names[i]); out.push(0);
      out.appendBuf(this.values[i]); out.push(0);
    }
    return out;
  }
}

export function sendLocalResponse(status: u32, details: string, body: ByteBuf, headers: HeaderList): u32 {
  let d = ByteBuf.fromString(details);
  let h = headers.serialize();
  return proxy_send_local_response(status, d.ptr(), d.length, body.ptr(), body.length, h.ptr(), h.length, -1);
}

/** Dispatches an HTTP call; returns the token, or -1 when the host refused the call. */
export function httpCall(cluster: ByteBuf, headers: HeaderList, body: ByteBuf, timeoutMs: u32): i64 {
  let h = headers.serialize();
  let t = new HeaderList().serialize();
  store<u32>(SLOT + 8, 0);
  let r = proxy_http_call(cluster.ptr(), cluster.length, h.ptr(), h.length, body.ptr(), body.length,
    t.ptr(), t.length, timeoutMs, SLOT + 8);
  if (r != OK) return -1;
  return <i64>load<u32>(SLOT + 8);
}

const METRIC_COUNTER = 0;
const METRIC_GAUGE = 1;

function defineMetric(typ: i32, name: string): u32 {
  let n = ByteBuf.fromString(name);
  store<u32>(SLOT + 12, 0);
  if (proxy_define_metric(typ, n.ptr(), n.length, SLOT + 12) != OK) return 0xffffffff;
  return load<u32>(SLOT + 12);
}

export function defineCounter(name: string): u32 { return defineMetric(METRIC_COUNTER, name); }
export function defineGauge(name: string): u32 { return defineMetric(METRIC_GAUGE, name); }

export function incrementCounter(id: u32, by: i64 = 1): void {
  if (id != 0xffffffff) proxy_increment_metric(id, by);
}

export function recordGauge(id: u32, value: u64): void {
  if (id != 0xffffffff) proxy_record_metric(id, value);
}

/** Host wall clock in milliseconds (0 if the host cannot tell). */
export function nowMs(): i64 {
  store<u64>(SLOT, 0);
  if (proxy_get_current_time_nanoseconds(SLOT) != OK) return 0;
  return <i64>(load<u64>(SLOT) / 1000000);
}

/** Calls proxy_on_tick on the current root context every `ms` milliseconds (0 stops it). */
export function setTickPeriod(ms: u32): void {
  proxy_set_tick_period_milliseconds(ms);
}

/** `n` random bytes from the host (false if it has none to give). */
export function randomBytes(out: ByteBuf, n: i32): bool {
  out.reserve(n);
  if (wasi_random_get(out.ptr() + <usize>out.length, <usize>n) != 0) return false;
  out.length += n;
  return true;
}

export function log(level: i32, msg: string): void {
  let b = String.UTF8.encode(msg);
  proxy_log(level, changetype<usize>(b), b.byteLength);
}
