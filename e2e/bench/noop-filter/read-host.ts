// The no-op filter (index.ts) plus one thing: each request's `:authority` is read from the host and
// dropped. That read is the least any filter that matches on the host must do (a host call, during
// which the host calls back into the module's malloc), so this module's cost is the floor for the
// plugin's pass-through path: the Envoy benchmark compares the plugin with it.

export {
  malloc, proxy_abi_version_0_2_0, proxy_on_context_create, proxy_on_vm_start, proxy_validate_configuration,
  proxy_on_configure, proxy_on_tick, proxy_on_queue_ready, proxy_on_request_body, proxy_on_request_trailers,
  proxy_on_response_headers, proxy_on_response_body, proxy_on_response_trailers, proxy_on_http_call_response,
  proxy_on_done,
} from "./index";

// @ts-ignore: decorator
@external("env", "proxy_get_header_map_value")
declare function proxy_get_header_map_value(map: i32, keyPtr: usize, keyLen: usize, valuePtrPtr: usize, valueLenPtr: usize): u32;

const AUTHORITY = String.UTF8.encode(":authority");
const SLOT = new ArrayBuffer(8); // the host writes the value's pointer and length here

export function proxy_on_request_headers(id: u32, nHeaders: u32, endOfStream: u32): i32 {
  let slot = changetype<usize>(SLOT);
  if (proxy_get_header_map_value(0, changetype<usize>(AUTHORITY), AUTHORITY.byteLength, slot, slot + 4) == 0) {
    let value = load<u32>(slot);
    if (value != 0) __release(value); // the block our malloc handed the host
  }
  return 0;
}
