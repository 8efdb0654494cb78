import { ProxyWasmHost, loadModule, newHost, reqHeaders, SEED_CONFIG, ALLOW, checkedRequest, respond, reports, header } from './helpers';

describe('module and ABI', () => {
  test('a missing build fails clearly', () => {
    expect(() => loadModule('/nonexistent/plugin.wasm')).toThrow(/run `make plugin`/);
  });

  test('imports only host functions Envoy provides under ABI 0.2.0', () => {
    const h = new ProxyWasmHost();
    const imports = h.importNames();
    expect(imports).not.toContain('env.proxy_clear_route_cache');
    expect(imports).not.toContain('env.proxy_get_log_level');
    const allowed = new Set([
      'env.proxy_log',
      'env.proxy_get_property',
      'env.proxy_get_header_map_value',
      'env.proxy_remove_header_map_value',
      'env.proxy_get_buffer_bytes',
      'env.proxy_set_buffer_bytes',
      'env.proxy_continue_stream',
      'env.proxy_send_local_response',
      'env.proxy_http_call',
      'env.proxy_set_effective_context',
      'env.proxy_define_metric',
      'env.proxy_increment_metric',
      'wasi_unstable.proc_exit',
      'env.proxy_record_metric',
      'env.proxy_get_current_time_nanoseconds',
      'env.proxy_set_tick_period_milliseconds',
      'wasi_unstable.random_get',
      'env.proxy_replace_header_map_value',
    ]);
    for (const i of imports) expect(allowed.has(i) ? i : `unexpected import ${i}`).toBe(i);
  });

  test('exports the ABI version marker, malloc and the callbacks', () => {
    const exp = WebAssembly.Module.exports(loadModule()).map((e) => e.name);
    for (const n of [
      'proxy_abi_version_0_2_0',
      'malloc',
      'memory',
      'proxy_on_context_create',
      'proxy_on_configure',
      'proxy_on_request_headers',
      'proxy_on_request_body',
      'proxy_on_response_headers',
      'proxy_on_response_body',
      'proxy_on_http_call_response',
      'proxy_on_done',
    ]) {
      expect(exp).toContain(n);
    }
    // Not needed (proxy_on_done covers the end of every stream and does the cleanup; Envoy
    // calls proxy_on_delete right after it): not exported, so Envoy skips the calls.
    expect(exp).not.toContain('proxy_on_log');
    expect(exp).not.toContain('proxy_on_delete');
  });

  test.each(['', 'llm-token-ratelimit', 'anything-else'])('root id %j is accepted', (rootId) => {
    const h = new ProxyWasmHost();
    expect(h.configure(SEED_CONFIG, rootId)).toBe(true);
    const s = checkedRequest(h, ALLOW);
    expect(s.requestContinued).toBe(1);
  });

  test('several root contexts in one VM: each stream follows its own root', () => {
    const h = newHost(); // root 1: the seed config (dashscope.aliyuncs.com)
    const other = h.addRoot({ ...SEED_CONFIG, matches: [{ host: { exact: 'other.example' } }] });
    expect(other).toBeGreaterThan(0);
    const pending = () => h.pendingCalls().length;
    expect(h.newStream().sendRequestHeaders(reqHeaders([['user-type', 'u']], 'other.example'))).toBe(0);
    expect(pending()).toBe(0);
    expect(h.newStream(other).sendRequestHeaders(reqHeaders([['user-type', 'u']], 'other.example'))).toBe(1);
    expect(h.newStream(other).sendRequestHeaders(reqHeaders([['user-type', 'u']], 'dashscope.aliyuncs.com'))).toBe(0);
    expect(h.newStream().sendRequestHeaders(reqHeaders([['user-type', 'u']]))).toBe(1);
    expect(pending()).toBe(2);
    // The first root goes away: its streams pass untouched, the other root's still work.
    const s1 = h.newStream();
    h.removeRoot(h.rootId);
    expect(s1.sendRequestHeaders(reqHeaders([['user-type', 'u']]))).toBe(0);
    expect(h.newStream(other).sendRequestHeaders(reqHeaders([['user-type', 'u']], 'other.example'))).toBe(1);
    expect(pending()).toBe(3);
    expect(h.trapped).toBeNull();
  });

  test('replies to the calls of a removed root go to nobody: no refund, no retry, no trap', () => {
    const h = newHost({ ...SEED_CONFIG, reserve: { enabled: true } });
    expect(h.addRoot(SEED_CONFIG)).toBeGreaterThan(0); // the VM lives on with another root
    const body = '{"messages":[{"role":"user","content":"hi"}]}';
    const checkOf = (s: { id: number }) => h.pendingCalls().find((c) => c.contextId === s.id)!;
    // A report in flight: a request allowed, answered with usage, over.
    const done = h.newStream();
    expect(done.sendRequestHeaders(reqHeaders([['user-type', 'u']]))).toBe(0); // reserve: the check waits for the body
    done.sendRequestBody(body, true);
    h.reply(checkOf(done).token, ALLOW);
    respond(done, 'application/json', ['{"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}']);
    done.end();
    // A check in flight whose client left: a granted reservation would be refunded.
    const left = h.newStream();
    left.sendRequestHeaders(reqHeaders([['user-type', 'u']]));
    left.sendRequestBody(body, true);
    left.end();
    const calls = h.pendingCalls();
    expect(calls.map((c) => header(c.headers, ':path')!.split('?')[0]).sort()).toEqual(['/ratelimit', '/update_ratelimit_record']);
    h.removeRoot(h.rootId);
    const sent = h.httpCalls.length;
    for (const c of calls) {
      h.reply(c.token, c.contextId === left.id ? { status: 200, body: '{"allow":true,"reserved":500,"reservation_id":"r1"}' } : 'fail');
    }
    h.tick(60000);
    expect(h.httpCalls.length).toBe(sent);
    expect(h.trapped).toBeNull();
  });

  test('unmatched requests cost one header read and nothing else', () => {
    const h = newHost();
    h.hostCallCount.clear();
    const s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders([], 'example.com'))).toBe(0);
    expect(s.sendRequestBody('{}', true)).toBe(0);
    s.sendResponseHeaders([[':status', '200']]);
    expect(s.sendResponseBody('{"usage":{"total_tokens":5}}', true)).toBe(0);
    s.end();
    expect(Object.fromEntries(h.hostCallCount)).toEqual({ proxy_get_header_map_value: 1 });
    expect(h.httpCalls).toHaveLength(0);
  });

  test('many streams: memory stays bounded (no leak per request)', () => {
    const h = newHost();
    const run = (n: number) => {
      for (let i = 0; i < n; i++) {
        const s = checkedRequest(h, ALLOW);
        respond(s, 'application/json', ['{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}']);
        s.end();
        const r = h.pendingCalls()[0];
        h.reply(r.token, { status: 200 });
      }
    };
    run(200);
    const mem = () => (h.instance.exports.memory as WebAssembly.Memory).buffer.byteLength;
    const before = mem();
    run(2000);
    expect(mem()).toBeLessThanOrEqual(before + 65536);
    expect(reports(h)).toHaveLength(2200);
  });
});
