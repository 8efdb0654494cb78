/**
 * A Proxy-Wasm (ABI 0.2.x) host emulator for tests and benchmarks: loads a compiled
 * plugin with Node's WebAssembly, implements the host functions it imports, and records
 * what the plugin did (http calls, local responses, continues, metrics, logs) so tests can
 * assert on it. Modelled on the Go SDK's proxytest and the Rust proxy-wasm test framework, and
 * split as proxytest is: this file (loading the module, contexts, calling into the plugin),
 * imports.ts (the host functions), stream.ts (Stream), wire.ts (the header-map format), abi.ts
 * and context.ts. Everything a test or benchmark uses is exported from here.
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
import { ContextState } from './context';
import { HostFunctions, HostOptions, HttpCall, Trap } from './imports';
import { Stream } from './stream';
import { HeaderList } from './wire';

export { WasmResult, FilterHeadersStatus, FilterDataStatus, LogLevel } from './abi';
export type { LocalResponse } from './context';
export { Trap } from './imports';
export type { HttpCall, HostOptions } from './imports';
export { Stream } from './stream';
export { serializeHeaders, parseHeaders } from './wire';
export type { HeaderList } from './wire';

export interface CallReply {
  status?: number;
  headers?: HeaderList;
  body?: string | Buffer;
}

const moduleCache = new Map<string, WebAssembly.Module>();

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

export class ProxyWasmHost extends HostFunctions {
  readonly module: WebAssembly.Module;
  readonly instance: WebAssembly.Instance;
  trapped: Trap | null = null;
  /** Nanoseconds spent inside calls into the module, host functions included (with timeHostCalls). */
  callNs = 0n;

  private nextContextId = 1;

  constructor(options: HostOptions = {}, module: WebAssembly.Module = loadModule()) {
    super(options);
    this.module = module;
    this.instance = new WebAssembly.Instance(module, this.importTable(module));
    this.exports = this.instance.exports;
  }

  /** Names the module imports from the host, e.g. "env.proxy_log". */
  importNames(): string[] {
    return WebAssembly.Module.imports(this.module).map((i) => `${i.module}.${i.name}`);
  }

  // ---- calling into the plugin ---------------------------------------------------------
  /** Calls an export with `ctx` as the effective context; traps become Trap. */
  call(name: string, ctx: number, ...args: (number | bigint)[]): number {
    if (this.trapped) throw new Trap(`VM already failed: ${this.trapped.message}`);
    const fn = this.exports[name];
    if (typeof fn !== 'function') return 0;
    const prevEff = this.effective;
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

  // ---- stream plumbing used by Stream ------------------------------------------------------
  state(id: number): ContextState {
    const c = this.contexts.get(id);
    if (!c) throw new Error(`no context ${id}`);
    return c;
  }
}
