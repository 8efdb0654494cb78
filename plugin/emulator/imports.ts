/**
 * The host side of the ABI: the env.proxy_* and wasi functions a plugin imports, and the state
 * they read and write (contexts, header maps and buffers, http calls, metrics, logs, the clock).
 * ProxyWasmHost (host.ts) extends it with what a test drives: loading, contexts, calls into the plugin.
 */
import { BUFFER, HEADER_MAP, WasmResult } from './abi';
import { ContextState } from './context';
import { HeaderList, parseHeaders, serializeHeaders } from './wire';

/** An AssemblyScript abort or a wasm runtime error: the instance is dead afterwards, as in Envoy. */
export class Trap extends Error {
  constructor(message: string) {
    super(`wasm trap: ${message}`);
    this.name = 'Trap';
  }
}

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

export abstract class HostFunctions {
  readonly options: HostOptions;
  protected exports: any;

  logs: { level: number; message: string }[] = [];
  metrics = new Map<string, { id: number; type: number; value: bigint }>();
  protected metricById = new Map<number, string>();
  httpCalls: HttpCall[] = [];
  protected callsByToken = new Map<number, HttpCall>();
  protected pending = new Map<number, HttpCall>();
  properties = new Map<string, Buffer>();
  contexts = new Map<number, ContextState>();
  /** Host calls made by the plugin, by import name (for cost accounting in benchmarks). */
  hostCallCount = new Map<string, number>();
  /** Nanoseconds spent inside host functions (only with options.timeHostCalls). */
  hostNs = 0n;

  protected nextToken = 1;
  protected effective = 0;
  protected pluginConfig: Buffer = Buffer.alloc(0);
  protected callReply: { headers: HeaderList; body: Buffer } | null = null;
  rootId = 0;
  /** Host clock (ms) as proxy_get_current_time_nanoseconds reports it; tests advance it. */
  nowMs: number;
  /** Tick period the plugin asked for, by root context (proxy_set_tick_period_milliseconds). */
  tickPeriods = new Map<number, number>();

  constructor(options: HostOptions) {
    this.options = options;
    for (const [k, v] of Object.entries(options.properties ?? {})) this.properties.set(k, Buffer.from(v));
    this.nextToken = options.firstToken ?? 1;
    this.nowMs = options.nowMs ?? Date.now();
  }

  // ---- memory helpers -------------------------------------------------------------------
  protected mem(): Buffer {
    return Buffer.from((this.exports.memory as WebAssembly.Memory).buffer);
  }
  protected read(ptr: number, len: number): Buffer {
    return Buffer.from(this.mem().subarray(ptr, ptr + len));
  }
  protected u32(ptr: number, v: number): void {
    this.mem().writeUInt32LE(v >>> 0, ptr);
  }
  /** Hands bytes to the module the way Envoy does: malloc, copy, write (ptr, size) into the slots. */
  protected give(data: Buffer, ptrSlot: number, sizeSlot: number): void {
    let p = 0;
    if (data.length > 0) {
      p = this.exports.malloc(data.length) >>> 0;
      this.mem().set(data, p);
    }
    this.u32(ptrSlot, p);
    this.u32(sizeSlot, data.length);
  }

  // ---- what the host functions act on: the effective context's maps and buffers ---------
  protected ctxState(): ContextState | undefined {
    return this.contexts.get(this.effective);
  }

  protected headerMap(type: number): HeaderList | null {
    if (type === HEADER_MAP.callHeaders) return this.callReply ? this.callReply.headers : null;
    if (type === HEADER_MAP.callTrailers) return this.callReply ? [] : null;
    const c = this.ctxState();
    if (!c || !c.alive || c.rootId === 0) return null;
    if (type === HEADER_MAP.requestHeaders && c.requestHeadersGone) return null;
    let m = c.maps.get(type);
    if (!m) {
      m = [];
      c.maps.set(type, m);
    }
    return m;
  }

  protected buffer(type: number): Buffer | null {
    if (type === BUFFER.callBody) return this.callReply ? this.callReply.body : null;
    if (type === BUFFER.pluginConfig) return this.pluginConfig;
    if (type === BUFFER.vmConfig) return Buffer.alloc(0);
    const c = this.ctxState();
    if (!c || !c.alive) return null;
    return c.buffers.get(type) ?? null;
  }

  /** The import object for `module`: every function it imports, counted (and timed with timeHostCalls). */
  protected importTable(module: WebAssembly.Module): WebAssembly.Imports {
    const env: Record<string, (...args: any[]) => unknown> = {
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
      proxy_send_local_response: (status: number, dPtr: number, dLen: number, bPtr: number, bLen: number, hPtr: number, hLen: number, _grpc: number) => {
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
      proxy_http_call: (
        cPtr: number,
        cLen: number,
        hPtr: number,
        hLen: number,
        bPtr: number,
        bLen: number,
        _tPtr: number,
        _tLen: number,
        timeout: number,
        tokenPtr: number,
      ) => {
        const cluster = this.read(cPtr, cLen).toString('utf8');
        const headers = parseHeaders(this.read(hPtr, hLen));
        const has = (n: string) => headers.some(([k]) => k === n);
        if (!has(':method') || !has(':path') || !has(':authority')) return WasmResult.BadArgument;
        if (this.options.clusters && !this.options.clusters.includes(cluster)) return WasmResult.BadArgument;
        const token = this.nextToken++;
        const call: HttpCall = {
          token,
          rootId: this.rootId,
          contextId: this.effective,
          cluster,
          headers,
          body: this.read(bPtr, bLen),
          timeoutMs: timeout >>> 0,
          answered: false,
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
    const imports: Record<string, Record<string, (...args: any[]) => unknown>> = {
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
    for (const imp of WebAssembly.Module.imports(module)) {
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
}
