/**
 * The plugin's side of "no way around the limit", in the emulator: what a check reply means,
 * hosts spelt otherwise, route/cluster matching, the service token, configuration bounds,
 * estimates when the response carries no usage, and the retry queue for reports.
 */
import {
  newHost,
  withConfig,
  reqHeaders,
  header,
  checkedRequest,
  ALLOW,
  SEED_CONFIG,
  respond,
  reports,
  reportCalls,
  ProxyWasmHost,
  LogLevel,
  HeaderList,
  FilterDataStatus,
  REQUEST_ID,
  message,
} from './helpers';

const UT: HeaderList = [['user-type', 'regular-user']];
const KEYS = ['regular-user'];
const sse = (events: object[]) => events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n';

describe('what a check reply means', () => {
  const refusals: [string, object][] = [
    ['400 JSON (a key it will not take)', { status: 400, body: '{"error":"ratelimit_keys[0] is longer than 512 bytes"}' }],
    ['401 JSON (no or a wrong token)', { status: 401, body: '{"error":"missing or invalid token"}' }],
    ['413 JSON', { status: 413, body: '{"error":"too large"}' }],
  ];
  test.each(refusals)('%s: the request is refused (403), even with failOpen: true', (_n, reply) => {
    const h = newHost(withConfig({ failOpen: true }));
    const s = checkedRequest(h, reply);
    expect(s.requestContinued).toBe(0);
    expect(s.localResponse!.status).toBe(403);
    expect(message(s.localResponse!)).toBe('rate limit check refused for this request');
    expect(h.metric('llm_ratelimit.check_refused')).toBe(1);
    expect(h.metric('llm_ratelimit.check_failed_open')).toBe(0);
    expect(h.logsAt(LogLevel.warn).join('\n')).toContain('rate-limit service refused a check');
  });

  const unavailable: [string, object | 'fail'][] = [
    ["the reference service's Redis failure: 400 with an empty body", { status: 400, body: '' }],
    ['a 4xx that is not JSON (a proxy in between)', { status: 431, body: '<html>too large</html>' }],
    ['a 5xx with a JSON body', { status: 503, body: '{"error":"store unavailable"}' }],
    ['no reply', 'fail'],
  ];
  test.each(unavailable)('%s: the service is unavailable, failOpen decides', (_n, reply) => {
    const open = newHost(withConfig({ failOpen: true }));
    expect(checkedRequest(open, reply).requestContinued).toBe(1);
    expect(open.metric('llm_ratelimit.check_failed_open')).toBe(1);
    const closed = newHost(withConfig({ failOpen: false }));
    expect(checkedRequest(closed, reply).localResponse!.status).toBe(503);
  });
});

describe('service cluster Envoy does not know', () => {
  test('an error line naming the cluster, at most once per 10 s, and a gauge while it lasts', () => {
    const h = newHost(SEED_CONFIG, { clusters: ['other'], nowMs: 1_000_000 });
    for (let i = 0; i < 20; i++) expect(h.newStream().sendRequestHeaders(reqHeaders(UT))).toBe(0);
    const errors = () => h.logsAt(LogLevel.error).filter((l) => l.includes('cannot call the rate-limit service'));
    expect(errors()).toHaveLength(1);
    expect(errors()[0]).toContain('outbound|80||asm-llm-token-rate-limit-example.default.svc.cluster.local');
    expect(h.metric('llm_ratelimit.service_unreachable')).toBe(1);
    h.nowMs += 10_000;
    h.newStream().sendRequestHeaders(reqHeaders(UT));
    expect(errors()).toHaveLength(2);
  });

  test('the gauge goes back to 0 once calls go through', () => {
    const clusters = ['other'];
    const h = newHost(SEED_CONFIG, { clusters });
    h.newStream().sendRequestHeaders(reqHeaders(UT));
    expect(h.metric('llm_ratelimit.service_unreachable')).toBe(1);
    clusters.push('outbound|80||asm-llm-token-rate-limit-example.default.svc.cluster.local');
    h.newStream().sendRequestHeaders(reqHeaders(UT));
    expect(h.metric('llm_ratelimit.service_unreachable')).toBe(0);
  });
});

describe('hosts as Envoy routes them', () => {
  const keysOrStatus = (h: ProxyWasmHost, host: string): string => {
    const s = h.newStream();
    const before = h.httpCalls.length;
    s.sendRequestHeaders(reqHeaders(UT, host));
    if (s.localResponse) return `local ${s.localResponse.status}`;
    return h.httpCalls.length > before ? 'checked' : 'passed';
  };

  test('a trailing dot (and case, and a port) is the same host', () => {
    const h = newHost();
    for (const host of ['dashscope.aliyuncs.com.', 'DASHSCOPE.aliyuncs.com.:443', 'dashscope.aliyuncs.com..'])
      expect([host, keysOrStatus(h, host)]).toEqual([host, 'checked']);
    expect(keysOrStatus(h, 'dashscope.aliyuncs.com.evil')).toBe('passed');
  });

  test('a configured host with a trailing dot matches both spellings', () => {
    const h = newHost(withConfig({ matches: [{ host: { exact: 'dashscope.aliyuncs.com.' } }] }));
    expect(keysOrStatus(h, 'dashscope.aliyuncs.com')).toBe('checked');
    expect(keysOrStatus(h, 'dashscope.aliyuncs.com.')).toBe('checked');
  });

  test('userinfo, several values (two Host headers), whitespace: refused with 400 by host rules', () => {
    const h = newHost();
    for (const host of ['x@dashscope.aliyuncs.com', 'dashscope.aliyuncs.com,other.com', 'other.com,dashscope.aliyuncs.com', 'dashscope.aliyuncs.com other']) {
      expect([host, keysOrStatus(h, host)]).toEqual([host, 'local 400']);
    }
    expect(h.metric('llm_ratelimit.bad_host_refused')).toBe(4);
    // Without host rules the Host is not judged: the key decides.
    const any = newHost(withConfig({ matches: [{ path: { prefix: '/' } }] }));
    expect(keysOrStatus(any, 'x@dashscope.aliyuncs.com')).toBe('checked');
  });

  test('route and cluster rules read the names Envoy resolved, not anything the client wrote', () => {
    const h = newHost(withConfig({ matches: [{ route: { exact: 'llm' } }, { cluster: { prefix: 'outbound|443||api.openai' } }] }), {
      properties: { 'xds.route_name': 'llm' },
    });
    expect(keysOrStatus(h, 'whatever.example')).toBe('checked');
    const c = newHost(withConfig({ matches: [{ route: { exact: 'llm' } }, { cluster: { prefix: 'outbound|443||api.openai' } }] }), {
      properties: { 'xds.route_name': 'other', 'xds.cluster_name': 'outbound|443||api.openai.com' },
    });
    expect(keysOrStatus(c, 'x')).toBe('checked');
    const none = newHost(withConfig({ matches: [{ route: { exact: 'llm' } }] }));
    expect(keysOrStatus(none, 'dashscope.aliyuncs.com')).toBe('passed'); // no route name: no match
  });
});

describe('configuration bounds (what the service can serve)', () => {
  const refused = (extra: object) => {
    const h = new ProxyWasmHost();
    expect(h.configure(withConfig(extra))).toBe(false);
    return h.logsAt(LogLevel.error)[0];
  };
  test('at most 16 key templates', () => {
    newHost(withConfig({ rateLimitKeys: Array.from({ length: 16 }, (_, i) => `k${i}-{{request.headers.user-type}}`) }));
    expect(refused({ rateLimitKeys: Array.from({ length: 17 }, (_, i) => `k${i}`) })).toBe(
      "llm-token-ratelimit: invalid pluginConfig: rateLimitKeys: at most 16 key templates (the protocol's bound), got 17",
    );
  });
  test('maxKeyBytes from 64 to 512', () => {
    expect(refused({ maxKeyBytes: 513 })).toContain('maxKeyBytes: expected an integer from 64 to 512, got 513');
    expect(refused({ maxKeyBytes: 32 })).toContain('maxKeyBytes: expected an integer from 64 to 512, got 32');
  });
  test('the other new fields name themselves when wrong', () => {
    expect(refused({ includeStreamUsage: 'yes' })).toContain('includeStreamUsage: expected true or false, got "yes"');
    expect(refused({ estimateMissingUsage: 0 })).toContain('estimateMissingUsage: expected true or false, got 0');
    expect(refused({ maxQueuedReports: -1 })).toContain('maxQueuedReports: expected an integer from 0 to 1000000, got -1');
    expect(refused({ maxRequestBodyBytes: 10 })).toContain('maxRequestBodyBytes: expected an integer from 1024 to 16777216, got 10');
    expect(refused({ estimate: { charsPerToken: 0 } })).toContain('estimate.charsPerToken: expected a number from 0.1 to 100, got 0');
    expect(refused({ matches: [{ route: 'llm' }] })).toContain('matches[0].route: expected an object with one of exact, prefix, suffix');
  });
  test('the service token is sent as a bearer token, and never printed', () => {
    const h = newHost(withConfig({ rateLimitService: { ...SEED_CONFIG.rateLimitService, token: 's3cr3t-t0ken' } }));
    const s = checkedRequest(h, ALLOW, UT);
    expect(header(h.httpCalls[0].headers, 'authorization')).toBe('Bearer s3cr3t-t0ken');
    respond(s, 'application/json', ['{"usage":{"total_tokens":3}}']);
    expect(header(h.httpCalls[1].headers, 'authorization')).toBe('Bearer s3cr3t-t0ken');
    expect(h.logs.map((l) => l.message).join('\n')).not.toContain('s3cr3t');
    const bad = new ProxyWasmHost();
    expect(bad.configure(withConfig({ rateLimitService: { ...SEED_CONFIG.rateLimitService, token: 'has space' } }))).toBe(false);
    expect(bad.logsAt(LogLevel.error)[0]).toBe('llm-token-ratelimit: invalid pluginConfig: rateLimitService.token: must be printable ASCII without spaces');
  });
});

describe('responses without usage are charged an estimate', () => {
  const chatReq = (h: ProxyWasmHost, content: string, extra: object = {}) => {
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders(UT));
    h.reply(h.httpCalls[h.httpCalls.length - 1].token, ALLOW);
    expect(s.sendRequestBody(JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], ...extra }), true)).toBe(FilterDataStatus.Continue);
    return s;
  };

  test('a stream the client cut short: the prompt and the text delivered before the cut', () => {
    const h = newHost();
    const s = chatReq(h, 'a'.repeat(40), { stream: true }); // 10 tokens
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    s.sendResponseBody(sse([{ choices: [{ delta: { content: 'abcdefgh' } }] }]).replace('data: [DONE]\n\n', ''));
    s.sendResponseBody('data: {"choices":[{"delta":{"content":"ijklmnopqrst'); // cut mid-event
    s.end();
    // 8 + 12 characters delivered: 5 tokens.
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, estimated: true }]);
  });

  test('the client hung up before any response: the prompt estimate', () => {
    const h = newHost();
    const s = chatReq(h, '介绍一下你自己');
    s.end();
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 7, completion_tokens: 0, total_tokens: 7, estimated: true }]);
  });

  test('an upstream error is not charged; nothing generated (no prompt, no text) is not reported', () => {
    const h = newHost();
    let s = chatReq(h, 'hello there');
    s.sendResponseHeaders([
      [':status', '500'],
      ['content-type', 'application/json'],
    ]);
    s.sendResponseBody('{"error":{"message":"boom"}}', true);
    s = h.newStream();
    s.sendRequestHeaders(reqHeaders(UT, 'dashscope.aliyuncs.com', '/v1/models'), true);
    h.reply(h.httpCalls[h.httpCalls.length - 1].token, ALLOW);
    respond(s, 'application/json', ['{"object":"list","data":[{"id":"m","object":"model"}]}']);
    expect(reportCalls(h)).toEqual([]);
  });

  test('stream_options.include_usage is added to streaming requests (and forced on), left alone for others', () => {
    const h = newHost();
    const cases: [object, object | undefined][] = [
      [{ stream: true }, { include_usage: true }],
      [{ stream: true, stream_options: { include_usage: false } }, { include_usage: true }],
      [{ stream: false }, undefined],
      [{}, undefined],
    ];
    for (const [extra, expected] of cases) {
      const s = chatReq(h, 'hi', extra);
      expect([extra, JSON.parse(s.upstreamRequestBody().toString()).stream_options]).toEqual([extra, expected]);
      expect(header(s.requestHeaders(), 'content-length')).toBeUndefined();
    }
  });
});

describe('reports survive a service outage', () => {
  const answered = (h: ProxyWasmHost, reply: object | 'fail') => {
    for (const c of h.pendingCalls()) h.reply(c.token, reply);
  };
  const sendOne = (h: ProxyWasmHost, total: number) => {
    const s = checkedRequest(h, ALLOW, UT);
    respond(s, 'application/json', [`{"usage":{"prompt_tokens":1,"completion_tokens":${total - 1},"total_tokens":${total}}}`]);
    s.end();
  };

  test('a failed report is retried on the tick with back-off, with the same body and id, until it is accepted; then never again', () => {
    const h = newHost(SEED_CONFIG, { nowMs: 5_000_000 });
    expect(h.tickPeriods.get(h.rootId)).toBe(250);
    sendOne(h, 42);
    const first = reportCalls(h)[0];
    expect(first.request_id).toMatch(REQUEST_ID);
    answered(h, 'fail'); // timeout / connect failure
    h.tick(100);
    expect(reportCalls(h)).toHaveLength(1); // not due yet (250 ms)
    h.tick(200);
    expect(reportCalls(h)).toHaveLength(2);
    answered(h, { status: 503, body: '{"error":"store unavailable"}' });
    h.tick(300);
    expect(reportCalls(h)).toHaveLength(2); // second delay: 500 ms
    h.tick(300);
    expect(reportCalls(h)).toHaveLength(3);
    answered(h, { status: 200 });
    for (let i = 0; i < 20; i++) h.tick(5000);
    const calls = reportCalls(h);
    expect(calls).toHaveLength(3);
    expect(calls.every((c) => JSON.stringify(c) === JSON.stringify(first))).toBe(true);
    expect(h.metric('llm_ratelimit.reports_retried')).toBe(2);
    expect(h.metric('llm_ratelimit.reports_dropped')).toBe(0);
  });

  test('a 4xx refusal is not retried (it would be refused again), and is counted as dropped', () => {
    const h = newHost();
    sendOne(h, 5);
    answered(h, { status: 400, body: '{"error":"bad"}' });
    for (let i = 0; i < 5; i++) h.tick(5000);
    expect(reportCalls(h)).toHaveLength(1);
    expect(h.metric('llm_ratelimit.reports_dropped')).toBe(1);
  });

  test('the queue is bounded by maxQueuedReports: past it, reports are dropped and counted', () => {
    const h = newHost(withConfig({ maxQueuedReports: 3 }));
    for (let i = 0; i < 5; i++) sendOne(h, 10 + i);
    answered(h, 'fail');
    expect(h.metric('llm_ratelimit.reports_dropped')).toBe(2);
    h.tick(1000);
    expect(
      reportCalls(h)
        .slice(5)
        .map((r) => r.total_tokens),
    ).toEqual([10, 11, 12]);
  });

  test('maxQueuedReports: 0 turns retries off (no tick at all)', () => {
    const h = newHost(withConfig({ maxQueuedReports: 0 }));
    expect(h.tickPeriods.get(h.rootId) ?? 0).toBe(0);
    sendOne(h, 7);
    answered(h, 'fail');
    expect(h.metric('llm_ratelimit.reports_dropped')).toBe(1);
  });

  test('report ids are unique across many reports, retries keep theirs', () => {
    const h = newHost();
    for (let i = 0; i < 300; i++) sendOne(h, 3);
    const ids = reportCalls(h).map((r) => r.request_id);
    expect(new Set(ids).size).toBe(300);
    // Another VM (another worker, another proxy) draws another prefix.
    const other = newHost();
    sendOne(other, 3);
    expect(reportCalls(other)[0].request_id.split('-')[0]).not.toBe(ids[0].split('-')[0]);
  });

  test('the client cannot choose the id: its x-request-id is not used', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW, [...UT, ['x-request-id', 'fixed']]);
    respond(s, 'application/json', ['{"usage":{"total_tokens":3}}']);
    expect(reportCalls(h)[0].request_id).not.toContain('fixed');
  });

  test('the host refusing the report call (no cluster) queues it too', () => {
    const clusters = ['other'];
    const h = newHost(withConfig({ failOpen: true }), { clusters });
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders(UT)); // check refused by the host: fail open
    respond(s, 'application/json', ['{"usage":{"total_tokens":9}}']);
    expect(reportCalls(h)).toHaveLength(0);
    clusters.push('outbound|80||asm-llm-token-rate-limit-example.default.svc.cluster.local');
    h.tick(1000);
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 0, completion_tokens: 0, total_tokens: 9 }]);
  });
});

describe('reservations carry their id', () => {
  test("the check reply's reservation_id comes back in the report with reserved_tokens", () => {
    const h = newHost(withConfig({ reserve: { enabled: true } }));
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders(UT));
    s.sendRequestBody(JSON.stringify({ messages: [{ role: 'user', content: 'a'.repeat(40) }], max_tokens: 10 }), true);
    h.reply(h.pendingCalls()[0].token, { status: 200, body: '{"allow":true,"description":"ok","reserved":20,"reservation_id":"r-123"}' });
    respond(s, 'application/json', ['{"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}']);
    expect(reports(h)).toEqual([
      { ratelimit_keys: KEYS, prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, reserved_tokens: 20, reservation_id: 'r-123' },
    ]);
  });
});

describe('the report names the model the request asked for', () => {
  test('the body\'s "model" (a string up to 128 bytes) goes into the report; absent or odd: no model field', () => {
    const h = newHost();
    const send = (body: object) => {
      const s = h.newStream();
      s.sendRequestHeaders(reqHeaders(UT));
      h.reply(h.pendingCalls()[0].token, ALLOW);
      s.sendRequestBody(JSON.stringify(body), true);
      respond(s, 'application/json', ['{"usage":{"total_tokens":3}}']);
    };
    send({ model: 'qwen-max', messages: [] });
    send({ model: 'x'.repeat(129), messages: [] });
    send({ model: 42, messages: [] });
    send({ messages: [] });
    expect(reportCalls(h).map((r) => r.model)).toEqual(['qwen-max', undefined, undefined, undefined]);
  });
});

test('reports still queued when the configuration goes away are counted as dropped, with a warning', () => {
  const h = newHost();
  const s = checkedRequest(h, ALLOW, [['user-type', 'regular-user']]);
  respond(s, 'application/json', ['{"usage":{"total_tokens":3}}']);
  for (const c of h.pendingCalls()) h.reply(c.token, 'fail');
  h.removeRoot(h.rootId);
  expect(h.metric('llm_ratelimit.reports_dropped')).toBe(1);
  expect(h.logsAt(LogLevel.warn).join('\n')).toContain('1 usage report(s) still queued were dropped with the configuration');
});
