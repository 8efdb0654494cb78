/**
 * A Proxy-Wasm (ABI 0.2.x) host emulator for tests and benchmarks: loads a compiled
 * plugin with Node's WebAssembly, implements the host functions it imports, and records
 * what the plugin did (http calls, local responses, continues, metrics, logs) so tests can
 * assert on it. Modelled on the Go SDK's proxytest and the Rust proxy-wasm test framework.
 *
 * Fidelity notes (matching Envoy where it matters to the plugin):
 *  - proxy_http_call fails with BadArgument when :method, :path or :authority is missing,
 *    or when `clusters` is given and the cluster is not in it.
 *  - proxy_set_effective_context fails with BadArgument for a context that was deleted.
 *  - header names are matched case-insensitively; request/response body buffers hold the
 *    current chunk only (what Envoy exposes when the plugin returns Continue). Request body:
 *    after StopIterationAndBuffer the next callback sees everything buffered so far plus the
 *    new chunk, and its size (Envoy >= 1.32, envoyproxy/envoy#36411); data held by a Stop*
 *    status goes upstream on Continue or proxy_continue_stream (see upstreamRequestBody).
 *    proxy_set_buffer_bytes follows Envoy: start 0 replaces `length` bytes at the front,
 *    start >= size appends, anything else is BadArgument.
 *  - wasi proc_exit (AssemblyScript abort) and any wasm RuntimeError become a Trap; the
 *    instance is then dead, like a VM Envoy would mark as failed.
 */
import * as fs from 'fs';

export class Trap extends Error {
  constructor(message: string) {
    super(`wasm trap: ${message}`);
    this.name = 'Trap';
  }
}

export type HeaderList = [string, string][];

export const WasmResult = { Ok: 0, NotFound: 1, BadArgument: 2, InvalidMemoryAccess: 6, Empty: 7, Unimplemented: 12 };
export const FilterHeadersStatus = { Continue: 0, StopIteration: 1 };
export const FilterDataStatus = { Continue: 0, StopIterationAndBuffer: 1, StopIterationAndWatermark: 2, StopIterationNoBuffer: 3 };
export const LogLevel = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 };

export interface HttpCall {
  token: number;
  rootId: number;
  /** The context that was effective when the call was made. */
  contextId: number;
  cluster: string;
  headers: HeaderList;
  body: Buffer;
  timeoutMs: number;
  answered: boolean;
}

export interface LocalResponse {
  status: number;
  details: string;
  body: Buffer;
  headers: HeaderList;
}

export interface CallReply {
  status?: number;
  headers?: HeaderList;
  body?: string | Buffer;
}

export interface HostOptions {
  /** Known clusters; if given, calls to any other cluster are refused like Envoy does. */
  clusters?: string[];
  /** Envoy attributes by dotted path, e.g. "source.address". */
  properties?: Record<string, string | Buffer>;
  /** Record log lines at or above this level (default trace: everything). */
  logLevel?: number;
  /** First http-call token to issue (default 1); 0 checks a plugin does not treat 0 as "no call". */
  firstToken?: number;
  /** Measure time spent in host functions (hostNs), so benchmarks can subtract it. */
  timeHostCalls?: boolean;
  /** The host clock in ms (default Date.now); tests that need time to pass set host.nowMs. */
  nowMs?: number;
}

const HEADER_MAP = { requestHeaders: 0, requestTrailers: 1, responseHeaders: 2, responseTrailers: 3, callHeaders: 6, callTrailers: 7 };
const BUFFER = { requestBody: 0, responseBody: 1, callBody: 4, vmConfig: 6, pluginConfig: 7 };

class ContextState {
  id: number;
  rootId: number;
  alive = true;
  maps = new Map<number, HeaderList>();
  buffers = new Map<number, Buffer>();
  continued: number[] = [];
  localResponse: LocalResponse | null = null;
  /** Request body held by Envoy (not yet upstream). */
  heldBody: Buffer = Buffer.alloc(0);
  /** The plugin's last request-body status was StopIterationAndBuffer. */
  bufferingBody = false;
  /** Request body that went upstream, in order. */
  forwardedBody: Buffer[] = [];
  constructor(id: number, rootId: number) {
    this.id = id;
    this.rootId = rootId;
  }
}

let moduleCache = new Map<string, WebAssembly.Module>();

/** plugin/build/plugin.wasm, from the sources (emulator/) or the compiled bench (build/bench-js/emulator/). */
export function defaultWasmPath(): string {
  const path = require('path');
  if (process.env.PLUGIN_WASM) return path.resolve(process.env.PLUGIN_WASM);
  const fromBuild = path.resolve(__dirname, '..', '..', 'plugin.wasm');
  if (path.basename(path.resolve(__dirname, '..')) === 'bench-js') return fromBuild;
  return path.resolve(__dirname, '..', 'build', 'plugin.wasm');
}

/** Compiles (once per path) the plugin module; a clear error if it was not built. */
export function loadModule(path = defaultWasmPath()): WebAssembly.Module {
  let m = moduleCache.get(path);
  if (m) return m;
  if (!fs.existsSync(path)) {
    throw new Error(`${path} not found: build the plugin first (run \`make plugin\`)`);
  }
  m = new WebAssembly.Module(fs.readFileSync(path));
  moduleCache.set(path, m);
  return m;
}

export class ProxyWasmHost {
  readonly module: WebAssembly.Module;
  readonly instance: WebAssembly.Instance;
  private exports: any;
  readonly options: HostOptions;

  logs: { level: number; message: string }[] = [];
  metrics = new Map<string, { id: number; type: number; value: bigint }>();
  private metricById = new Map<number, string>();
  httpCalls: HttpCall[] = [];
  private callsByToken = new Map<number, HttpCall>();
  private pending = new Map<number, HttpCall>();
  properties = new Map<string, Buffer>();
  contexts = new Map<number, ContextState>();
  trapped: Trap | null = null;
  /** Host calls made by the plugin, by import name (for cost accounting in benchmarks). */
  hostCallCount = new Map<string, number>();
  /** Nanoseconds spent inside host functions (only with options.timeHostCalls). */
  hostNs = 0n;
  /** Nanoseconds spent inside calls into the module, host functions included (with timeHostCalls). */
  callNs = 0n;

  private nextContextId = 1;
  private nextToken = 1;
  private current = 0; // context the host is calling into
  private effective = 0;
  private pluginConfig: Buffer = Buffer.alloc(0);
  private callReply: { headers: HeaderList; body: Buffer } | null = null;
  rootId = 0;
  /** Host clock (ms) as proxy_get_current_time_nanoseconds reports it; tests advance it. */
  nowMs: number;
  /** Tick period the plugin asked for, by root context (proxy_set_tick_period_milliseconds). */
  tickPeriods = new Map<number, number>();

  constructor(options: HostOptions = {}, module: WebAssembly.Module = loadModule()) {
    this.module = module;
    this.options = options;
    for (const [k, v] of Object.entries(options.properties ?? {})) this.properties.set(k, Buffer.from(v));
    this.nextToken = options.firstToken ?? 1;
    this.nowMs = options.nowMs ?? Date.now();
    this.instance = new WebAssembly.Instance(module, this.buildImports());
    this.exports = this.instance.exports;
  }

  /** Names the module imports from the host, e.g. "env.proxy_log". */
  importNames(): string[] {
    return WebAssembly.Module.imports(this.module).map((i) => `${i.module}.${i.name}`);
  }

  // ---- memory helpers -------------------------------------------------------------------
  private mem(): Buffer {
    return Buffer.from((this.exports.memory as WebAssembly.Memory).buffer);
  }
  private read(ptr: number, len: number): Buffer {
    return Buffer.from(this.mem().subarray(ptr, ptr + len));
  }
  private u32(ptr: number, v: number): void {
    this.mem().writeUInt32LE(v >>> 0, ptr);
  }
  /** Hands bytes to the module the way Envoy does: malloc, copy, write (ptr, size) into the slots. */
  private give(data: Buffer, ptrSlot: number, sizeSlot: number): void {
    let p = 0;
    if (data.length > 0) {
      p = this.exports.malloc(data.length) >>> 0;
      this.mem().set(data, p);
    }
    this.u32(ptrSlot, p);
    this.u32(sizeSlot, data.length);
  }

  // ---- calling into the plugin ---------------------------------------------------------
  /** Calls an export with `ctx` as current and effective context; traps become Trap. */
  call(name: string, ctx: number, ...args: (number | bigint)[]): number {
    if (this.trapped) throw new Trap(`VM already failed: ${this.trapped.message}`);
    const fn = this.exports[name];
    if (typeof fn !== 'function') return 0;
    const prevCur = this.current;
    const prevEff = this.effective;
    this.current = ctx;
    this.effective = ctx;
    const t0 = this.options.timeHostCalls ? process.hrtime.bigint() : 0n;
    try {
      const r = fn(...args);
      return typeof r === 'number' ? r : 0;
    } catch (e: any) {
      const t = e instanceof Trap ? e : new Trap(`${e?.name ?? 'Error'}: ${e?.message ?? e}`);
      this.trapped = t;
      throw t;
    } finally {
      if (this.options.timeHostCalls) this.callNs += process.hrtime.bigint() - t0;
      this.current = prevCur;
      this.effective = prevEff;
    }
  }

  /** Creates the root context, starts the VM and configures it. Returns the configure result. */
  configure(config: string | object | Buffer, rootIdName = ''): boolean {
    this.properties.set('plugin_root_id', Buffer.from(rootIdName));
    if (this.rootId === 0) {
      this.rootId = this.nextContextId++;
      this.contexts.set(this.rootId, new ContextState(this.rootId, 0));
      this.call('proxy_on_context_create', this.rootId, this.rootId, 0);
      this.call('proxy_on_vm_start', this.rootId, this.rootId, 0);
    }
    this.pluginConfig = Buffer.isBuffer(config) ? config : Buffer.from(typeof config === 'string' ? config : JSON.stringify(config));
    return this.call('proxy_on_configure', this.rootId, this.rootId, this.pluginConfig.length) === 1;
  }

  /**
   * A further root context in the same VM (Envoy shares one VM between filter configs with
   * the same vm_config, one root context per plugin configuration). Returns its id, 0 if
   * its configure failed.
   */
  addRoot(config: string | object | Buffer): number {
    const id = this.nextContextId++;
    this.contexts.set(id, new ContextState(id, 0));
    this.call('proxy_on_context_create', id, id, 0);
    this.pluginConfig = Buffer.isBuffer(config) ? config : Buffer.from(typeof config === 'string' ? config : JSON.stringify(config));
    return this.call('proxy_on_configure', id, id, this.pluginConfig.length) === 1 ? id : 0;
  }

  /** A root context's plugin is removed: proxy_on_done, then proxy_on_delete (as Envoy does). */
  removeRoot(id: number): void {
    if (this.call('proxy_on_done', id, id) === 1) this.call('proxy_on_delete', id, id);
  }

  newStream(rootId: number = this.rootId): Stream {
    const id = this.nextContextId++;
    this.contexts.set(id, new ContextState(id, rootId));
    this.call('proxy_on_context_create', id, id, rootId);
    return new Stream(this, id);
  }

  /** Answers a pending http call: a reply, or 'fail' (timeout/reset: no headers). */
  reply(token: number, reply: CallReply | 'fail'): void {
    const call = this.callsByToken.get(token);
    if (!call) throw new Error(`no http call with token ${token}`);
    if (call.answered) throw new Error(`http call ${token} already answered`);
    call.answered = true;
    this.pending.delete(token);
    if (reply === 'fail') {
      this.callReply = null;
      try {
        this.call('proxy_on_http_call_response', call.rootId, call.rootId, token, 0, 0, 0);
      } finally {
        this.callReply = null;
      }
      return;
    }
    const headers: HeaderList = [[':status', String(reply.status ?? 200)], ...(reply.headers ?? [])];
    const body = Buffer.from(reply.body ?? '');
    this.callReply = { headers, body };
    try {
      this.call('proxy_on_http_call_response', call.rootId, call.rootId, token, headers.length, body.length, 0);
    } finally {
      this.callReply = null;
    }
  }

  /** Advances the clock by `ms` and calls proxy_on_tick on every root that asked for ticks. */
  tick(ms = 0): void {
    this.nowMs += ms;
    for (const [id, period] of this.tickPeriods) if (period > 0) this.call('proxy_on_tick', id, id);
  }

  pendingCalls(): HttpCall[] {
    return [...this.pending.values()];
  }

  metric(name: string): number {
    const m = this.metrics.get(name);
    return m ? Number(m.value) : 0;
  }

  logsAt(level: number): string[] {
    return this.logs.filter((l) => l.level >= level).map((l) => l.message);
  }

  // ---- host functions --------------------------------------------------------------------
  private ctxState(): ContextState | undefined {
    return this.contexts.get(this.effective);
  }

  private headerMap(type: number): HeaderList | null {
    if (type === HEADER_MAP.callHeaders) return this.callReply ? this.callReply.headers : null;
    if (type === HEADER_MAP.callTrailers) return this.callReply ? [] : null;
    const c = this.ctxState();
    if (!c || !c.alive || c.rootId === 0) return null;
    let m = c.maps.get(type);
    if (!m) {
      m = [];
      c.maps.set(type, m);
    }
    return m;
  }

  private buffer(type: number): Buffer | null {
    if (type === BUFFER.callBody) return this.callReply ? this.callReply.body : null;
    if (type === BUFFER.pluginConfig) return this.pluginConfig;
    if (type === BUFFER.vmConfig) return Buffer.alloc(0);
    const c = this.ctxState();
    if (!c || !c.alive) return null;
    return c.buffers.get(type) ?? null;
  }

  private buildImports(): WebAssembly.Imports {
    const env: Record<string, Function> = {
      proxy_log: (level: number, ptr: number, len: number) => {
        if (level >= (this.options.logLevel ?? 0)) this.logs.push({ level, message: this.read(ptr, len).toString('utf8') });
        return WasmResult.Ok;
      },
      proxy_get_property: (pathPtr: number, pathLen: number, retPtr: number, retLen: number) => {
        const path = this.read(pathPtr, pathLen).toString('utf8').split('\0').join('.');
        const v = this.properties.get(path);
        if (v === undefined) return WasmResult.NotFound;
        this.give(v, retPtr, retLen);
        return WasmResult.Ok;
      },
      proxy_set_property: () => WasmResult.Ok,
      proxy_get_header_map_value: (type: number, kPtr: number, kLen: number, retPtr: number, retLen: number) => {
        const m = this.headerMap(type);
        if (!m) return WasmResult.BadArgument;
        const key = this.read(kPtr, kLen).toString('latin1').toLowerCase();
        const e = m.find(([k]) => k.toLowerCase() === key);
        if (!e) return WasmResult.NotFound;
        this.give(Buffer.from(e[1], 'latin1'), retPtr, retLen);
        return WasmResult.Ok;
      },
      proxy_get_header_map_pairs: (type: number, retPtr: number, retLen: number) => {
        const m = this.headerMap(type);
        if (!m) return WasmResult.BadArgument;
        this.give(serializeHeaders(m), retPtr, retLen);
        return WasmResult.Ok;
      },
      proxy_set_header_map_pairs: (type: number, ptr: number, len: number) => {
        const m = this.headerMap(type);
        if (!m) return WasmResult.BadArgument;
        m.splice(0, m.length, ...parseHeaders(this.read(ptr, len)));
        return WasmResult.Ok;
      },
      proxy_get_header_map_size: (type: number, retPtr: number) => {
        const m = this.headerMap(type);
        if (!m) return WasmResult.BadArgument;
        this.u32(retPtr, serializeHeaders(m).length);
        return WasmResult.Ok;
      },
      proxy_add_header_map_value: (type: number, kPtr: number, kLen: number, vPtr: number, vLen: number) => {
        const m = this.headerMap(type);
        if (!m) return WasmResult.BadArgument;
        m.push([this.read(kPtr, kLen).toString('latin1').toLowerCase(), this.read(vPtr, vLen).toString('latin1')]);
        return WasmResult.Ok;
      },
      proxy_replace_header_map_value: (type: number, kPtr: number, kLen: number, vPtr: number, vLen: number) => {
        const m = this.headerMap(type);
        if (!m) return WasmResult.BadArgument;
        const key = this.read(kPtr, kLen).toString('latin1').toLowerCase();
        const val = this.read(vPtr, vLen).toString('latin1');
        const rest = m.filter(([k]) => k.toLowerCase() !== key);
        m.splice(0, m.length, ...rest, [key, val]);
        return WasmResult.Ok;
      },
      proxy_remove_header_map_value: (type: number, kPtr: number, kLen: number) => {
        const m = this.headerMap(type);
        if (!m) return WasmResult.BadArgument;
        const key = this.read(kPtr, kLen).toString('latin1').toLowerCase();
        const rest = m.filter(([k]) => k.toLowerCase() !== key);
        m.splice(0, m.length, ...rest);
        return WasmResult.Ok;
      },
      proxy_get_buffer_bytes: (type: number, start: number, length: number, retPtr: number, retLen: number) => {
        const b = this.buffer(type);
        if (!b) return WasmResult.NotFound;
        const s = Math.min(start >>> 0, b.length);
        const e = Math.min(s + (length >>> 0), b.length);
        this.give(b.subarray(s, e), retPtr, retLen);
        return WasmResult.Ok;
      },
      proxy_get_buffer_status: (type: number, lenPtr: number, flagsPtr: number) => {
        const b = this.buffer(type);
        if (!b) return WasmResult.NotFound;
        this.u32(lenPtr, b.length);
        this.u32(flagsPtr, 0);
        return WasmResult.Ok;
      },
      proxy_set_buffer_bytes: (type: number, start: number, length: number, ptr: number, size: number) => {
        const c = this.ctxState();
        if (!c || !c.alive || (type !== BUFFER.requestBody && type !== BUFFER.responseBody)) return WasmResult.BadArgument;
        const b = c.buffers.get(type) ?? Buffer.alloc(0);
        const data = this.read(ptr, size);
        start >>>= 0;
        length >>>= 0;
        if (start === 0) c.buffers.set(type, Buffer.concat([data, b.subarray(Math.min(length, b.length))]));
        else if (start >= b.length) c.buffers.set(type, Buffer.concat([b, data]));
        else return WasmResult.BadArgument;
        return WasmResult.Ok;
      },
      proxy_continue_stream: (type: number) => {
        const c = this.ctxState();
        if (!c || !c.alive || c.rootId === 0) return WasmResult.BadArgument;
        c.continued.push(type);
        if (type === 0) {
          c.forwardedBody.push(c.heldBody);
          c.heldBody = Buffer.alloc(0);
          c.bufferingBody = false;
        }
        return WasmResult.Ok;
      },
      proxy_close_stream: () => WasmResult.Ok,
      proxy_send_local_response: (status: number, dPtr: number, dLen: number, bPtr: number, bLen: number,
        hPtr: number, hLen: number, _grpc: number) => {
        const c = this.ctxState();
        if (!c || !c.alive || c.rootId === 0) return WasmResult.BadArgument;
        c.localResponse = {
          status,
          details: this.read(dPtr, dLen).toString('utf8'),
          body: this.read(bPtr, bLen),
          headers: parseHeaders(this.read(hPtr, hLen)),
        };
        return WasmResult.Ok;
      },
      proxy_http_call: (cPtr: number, cLen: number, hPtr: number, hLen: number, bPtr: number, bLen: number,
        _tPtr: number, _tLen: number, timeout: number, tokenPtr: number) => {
        const cluster = this.read(cPtr, cLen).toString('utf8');
        const headers = parseHeaders(this.read(hPtr, hLen));
        const has = (n: string) => headers.some(([k]) => k === n);
        if (!has(':method') || !has(':path') || !has(':authority')) return WasmResult.BadArgument;
        if (this.options.clusters && !this.options.clusters.includes(cluster)) return WasmResult.BadArgument;
        const token = this.nextToken++;
        const call: HttpCall = {
          token, rootId: this.rootId, contextId: this.effective, cluster, headers,
          body: this.read(bPtr, bLen), timeoutMs: timeout >>> 0, answered: false,
        };
        this.httpCalls.push(call);
        this.callsByToken.set(token, call);
        this.pending.set(token, call);
        this.u32(tokenPtr, token);
        return WasmResult.Ok;
      },
      proxy_set_effective_context: (id: number) => {
        const c = this.contexts.get(id);
        if (!c || !c.alive) return WasmResult.BadArgument;
        this.effective = id;
        return WasmResult.Ok;
      },
      proxy_define_metric: (type: number, nPtr: number, nLen: number, retPtr: number) => {
        const name = this.read(nPtr, nLen).toString('utf8');
        let m = this.metrics.get(name);
        if (!m) {
          m = { id: this.metrics.size + 1, type, value: 0n };
          this.metrics.set(name, m);
          this.metricById.set(m.id, name);
        }
        this.u32(retPtr, m.id);
        return WasmResult.Ok;
      },
      proxy_increment_metric: (id: number, offset: bigint) => {
        const name = this.metricById.get(id >>> 0);
        if (name === undefined) return WasmResult.NotFound;
        this.metrics.get(name)!.value += BigInt(offset);
        return WasmResult.Ok;
      },
      proxy_record_metric: (id: number, value: bigint) => {
        const name = this.metricById.get(id >>> 0);
        if (name === undefined) return WasmResult.NotFound;
        this.metrics.get(name)!.value = BigInt(value);
        return WasmResult.Ok;
      },
      proxy_get_metric: (id: number, retPtr: number) => {
        const name = this.metricById.get(id >>> 0);
        if (name === undefined) return WasmResult.NotFound;
        this.mem().writeBigUInt64LE(this.metrics.get(name)!.value, retPtr);
        return WasmResult.Ok;
      },
      proxy_get_current_time_nanoseconds: (retPtr: number) => {
        this.mem().writeBigUInt64LE(BigInt(Math.floor(this.nowMs)) * 1000000n, retPtr);
        return WasmResult.Ok;
      },
      proxy_set_tick_period_milliseconds: (period: number) => {
        // Envoy ticks the root context of the context that asked.
        const c = this.ctxState();
        if (!c) return WasmResult.BadArgument;
        this.tickPeriods.set(c.rootId === 0 ? c.id : c.rootId, period >>> 0);
        return WasmResult.Ok;
      },
      proxy_done: () => WasmResult.Ok,
    };
    const imports: Record<string, Record<string, Function>> = {
      env: {},
      wasi_unstable: {
        proc_exit: (code: number) => {
          const last = this.logs.length ? this.logs[this.logs.length - 1].message : '';
          throw new Trap(`proc_exit(${code}) ${last}`);
        },
        random_get: (ptr: number, len: number) => {
          this.mem().set(require('crypto').randomBytes(len), ptr);
          return 0;
        },
      },
    };
    // Every import the module declares gets a function; unknown ones fail loudly when called.
    for (const imp of WebAssembly.Module.imports(this.module)) {
      if (imp.kind !== 'function') continue;
      const table = (imports[imp.module] ??= {});
      if (table[imp.name]) continue;
      const impl = imp.module === 'env' ? env[imp.name] : undefined;
      const name = imp.name;
      const counted = (...args: any[]) => {
        this.hostCallCount.set(name, (this.hostCallCount.get(name) ?? 0) + 1);
        if (!impl) throw new Trap(`unimplemented host function ${imp.module}.${name}`);
        return impl(...args);
      };
      const timed = (...args: any[]) => {
        const t0 = process.hrtime.bigint();
        try {
          return counted(...args);
        } finally {
          this.hostNs += process.hrtime.bigint() - t0;
        }
      };
      table[imp.name] = this.options.timeHostCalls ? timed : counted;
    }
    return imports as WebAssembly.Imports;
  }

  // ---- stream plumbing used by Stream ------------------------------------------------------
  state(id: number): ContextState {
    const c = this.contexts.get(id);
    if (!c) throw new Error(`no context ${id}`);
    return c;
  }
}

/** One HTTP stream through the filter. */
export class Stream {
  constructor(readonly host: ProxyWasmHost, readonly id: number) {}

  get state(): ContextState {
    return this.host.state(this.id);
  }
  get localResponse(): LocalResponse | null {
    return this.state.localResponse;
  }
  /** Times the plugin resumed the request (proxy_continue_stream(0)). */
  get requestContinued(): number {
    return this.state.continued.filter((t) => t === 0).length;
  }
  requestHeaders(): HeaderList {
    return this.state.maps.get(HEADER_MAP.requestHeaders) ?? [];
  }

  sendRequestHeaders(headers: HeaderList, endOfStream = false): number {
    this.state.maps.set(HEADER_MAP.requestHeaders, headers.map(([k, v]) => [k.toLowerCase(), v]));
    return this.host.call('proxy_on_request_headers', this.id, this.id, headers.length, endOfStream ? 1 : 0);
  }

  sendRequestBody(chunk: string | Buffer, endOfStream = false): number {
    const st = this.state;
    const c = Buffer.from(chunk);
    // After StopIterationAndBuffer the plugin sees the whole buffered body; otherwise the chunk.
    const visible = st.bufferingBody ? Buffer.concat([st.heldBody, c]) : c;
    const invisible = st.bufferingBody ? Buffer.alloc(0) : st.heldBody;
    st.buffers.set(BUFFER.requestBody, visible);
    const r = this.host.call('proxy_on_request_body', this.id, this.id, visible.length, endOfStream ? 1 : 0);
    const cur = st.buffers.get(BUFFER.requestBody) ?? Buffer.alloc(0); // the plugin may have replaced it
    if (r === FilterDataStatus.Continue) {
      st.forwardedBody.push(invisible, cur);
      st.heldBody = Buffer.alloc(0);
      st.bufferingBody = false;
    } else if (r !== FilterDataStatus.StopIterationNoBuffer) {
      st.heldBody = Buffer.concat([invisible, cur]);
      st.bufferingBody = r === FilterDataStatus.StopIterationAndBuffer;
    }
    return r;
  }

  /** The request body that went upstream so far. */
  upstreamRequestBody(): Buffer {
    return Buffer.concat(this.state.forwardedBody);
  }

  sendRequestTrailers(trailers: HeaderList): number {
    this.state.maps.set(HEADER_MAP.requestTrailers, trailers);
    return this.host.call('proxy_on_request_trailers', this.id, this.id, trailers.length);
  }

  sendResponseHeaders(headers: HeaderList, endOfStream = false): number {
    this.state.maps.set(HEADER_MAP.responseHeaders, headers.map(([k, v]) => [k.toLowerCase(), v]));
    return this.host.call('proxy_on_response_headers', this.id, this.id, headers.length, endOfStream ? 1 : 0);
  }

  sendResponseBody(chunk: string | Buffer, endOfStream = false): number {
    const b = Buffer.from(chunk);
    this.state.buffers.set(BUFFER.responseBody, b);
    return this.host.call('proxy_on_response_body', this.id, this.id, b.length, endOfStream ? 1 : 0);
  }

  sendResponseTrailers(trailers: HeaderList): number {
    this.state.maps.set(HEADER_MAP.responseTrailers, trailers);
    return this.host.call('proxy_on_response_trailers', this.id, this.id, trailers.length);
  }

  /** Stream teardown as Envoy does it: done, log, delete. The context is gone afterwards. */
  end(): void {
    this.host.call('proxy_on_done', this.id, this.id);
    this.host.call('proxy_on_log', this.id, this.id);
    this.host.call('proxy_on_delete', this.id, this.id);
    this.state.alive = false;
  }
}

export function serializeHeaders(h: HeaderList): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4 + 8 * h.length);
  head.writeUInt32LE(h.length, 0);
  h.forEach(([k, v], i) => {
    const kb = Buffer.from(k, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    head.writeUInt32LE(kb.length, 4 + 8 * i);
    head.writeUInt32LE(vb.length, 8 + 8 * i);
    parts.push(kb, Buffer.from([0]), vb, Buffer.from([0]));
  });
  return Buffer.concat([head, ...parts]);
}

/** Parses the ABI header-map wire format; throws on a malformed map (a plugin bug). */
export function parseHeaders(b: Buffer): HeaderList {
  if (b.length === 0) return [];
  const n = b.readUInt32LE(0);
  let off = 4 + 8 * n;
  const out: HeaderList = [];
  for (let i = 0; i < n; i++) {
    const kl = b.readUInt32LE(4 + 8 * i);
    const vl = b.readUInt32LE(8 + 8 * i);
    const k = b.subarray(off, off + kl).toString('latin1');
    off += kl;
    if (b[off] !== 0) throw new Error('header map: key not NUL-terminated');
    off += 1;
    const v = b.subarray(off, off + vl).toString('latin1');
    off += vl;
    if (b[off] !== 0) throw new Error('header map: value not NUL-terminated');
    off += 1;
    out.push([k, v]);
  }
  if (off !== b.length) throw new Error(`header map: ${b.length - off} trailing bytes`);
  return out;
}
