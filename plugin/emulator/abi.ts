/** The Proxy-Wasm ABI 0.2.x numbers the emulator shares with the plugin. */

export const WasmResult = { Ok: 0, NotFound: 1, BadArgument: 2, InvalidMemoryAccess: 6, Empty: 7, Unimplemented: 12 };
export const FilterHeadersStatus = { Continue: 0, StopIteration: 1 };
export const FilterDataStatus = { Continue: 0, StopIterationAndBuffer: 1, StopIterationAndWatermark: 2, StopIterationNoBuffer: 3 };
export const LogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 };

/** The `type` argument of the header-map host calls. */
export const HEADER_MAP = { requestHeaders: 0, requestTrailers: 1, responseHeaders: 2, responseTrailers: 3, callHeaders: 6, callTrailers: 7 };
/** The `type` argument of the buffer host calls. */
export const BUFFER = { requestBody: 0, responseBody: 1, callBody: 4, vmConfig: 6, pluginConfig: 7 };
