import { newHost, withConfig, reqHeaders, header, checkedRequest, ALLOW, DENY, SEED_CONFIG, FilterDataStatus, respond, reports, message } from './helpers';

const UT: [string, string][] = [['user-type', 'regular-user']];

describe('check call', () => {
  test('pauses the request and asks the service with GET, :path, :authority; nothing else forwarded', () => {
    const h = newHost();
    const s = h.newStream();
    const r = s.sendRequestHeaders(reqHeaders([...UT, ['authorization', 'Bearer sk-secret'], ['accept-encoding', 'gzip, br']]));
    expect(r).toBe(1); // StopIteration
    expect(h.httpCalls).toHaveLength(1);
    const call = h.httpCalls[0];
    expect(call.headers).toEqual([
      [':method', 'GET'],
      [':path', '/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D'],
      [':authority', 'asm-llm-token-rate-limit-example.default.svc.cluster.local'],
    ]);
    expect(call.body.length).toBe(0);
    // The upstream is asked for an uncompressed reply so usage can be read.
    expect(header(s.requestHeaders(), 'accept-encoding')).toBeUndefined();
    expect(header(s.requestHeaders(), 'authorization')).toBe('Bearer sk-secret');
  });

  test('http-call token 0 is a valid token', () => {
    const h = newHost(SEED_CONFIG, { firstToken: 0 });
    const s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders(UT))).toBe(1);
    expect(h.httpCalls[0].token).toBe(0);
    h.reply(0, ALLOW);
    expect(s.requestContinued).toBe(1);
  });

  test('several keys are sent in order', () => {
    const h = newHost(withConfig({ rateLimitKeys: ['{{request.headers.user-type}}', 'global'] }));
    h.newStream().sendRequestHeaders(reqHeaders(UT));
    expect(header(h.httpCalls[0].headers, ':path')).toBe('/ratelimit?ratelimit_keys=%5B%22regular-user%22%2C%22global%22%5D');
  });

  test('allow: the request continues', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    expect(s.requestContinued).toBe(1);
    expect(s.localResponse).toBeNull();
    expect(h.metric('llm_ratelimit.requests_allowed')).toBe(1);
  });

  test('deny: 429 with the service description, never forwarded', () => {
    const h = newHost();
    const s = checkedRequest(h, DENY);
    expect(s.requestContinued).toBe(0);
    expect(s.localResponse).toMatchObject({ status: 429 });
    // The default form: OpenAI's error object, which every OpenAI SDK turns into its exception.
    expect(JSON.parse(s.localResponse!.body.toString())).toEqual({
      error: { message: 'regular-user is being rate-limited', type: 'tokens', param: null, code: 'rate_limit_exceeded' },
    });
    expect(header(s.localResponse!.headers, 'content-type')).toBe('application/json');
    expect(header(s.localResponse!.headers, 'retry-after')).toBeUndefined();
    expect(header(s.localResponse!.headers, 'x-should-retry')).toBeUndefined();
    expect(h.metric('llm_ratelimit.requests_limited')).toBe(1);
  });

  test('rejectBody: "text" is the vendor\'s plain description', () => {
    const h = newHost(withConfig({ rejectBody: 'text' }));
    const s = checkedRequest(h, {
      status: 200,
      body: '{"allow":false,"description":"regular-user is being rate-limited","limit":200,"retry_after_seconds":30}',
    });
    expect(s.localResponse!.body.toString()).toBe('regular-user is being rate-limited');
    expect(header(s.localResponse!.headers, 'content-type')).toBe('text/plain; charset=utf-8');
  });

  test('the OpenAI form names the key, the limit and when it refills', () => {
    const h = newHost();
    const s = checkedRequest(h, {
      status: 200,
      body: '{"allow":false,"description":"regular-user is being rate-limited","limit":200,"retry_after_seconds":29.2}',
    });
    expect(message(s.localResponse!)).toBe('regular-user is being rate-limited (limit 200 tokens; enough tokens again in 30 s)');
  });

  test('a wait above noRetryAboveSeconds (default 30) tells SDKs not to retry: x-should-retry: false', () => {
    const deny = (after: number) => ({
      status: 200,
      body: JSON.stringify({ allow: false, description: 'k is being rate-limited', retry_after_seconds: after }),
    });
    const h = newHost();
    expect(header(checkedRequest(h, deny(30)).localResponse!.headers, 'x-should-retry')).toBeUndefined();
    const long = checkedRequest(h, deny(1170)).localResponse!;
    expect(header(long.headers, 'x-should-retry')).toBe('false');
    expect(header(long.headers, 'retry-after')).toBe('1170');
    const h2 = newHost(withConfig({ noRetryAboveSeconds: 0 }));
    expect(header(checkedRequest(h2, deny(1)).localResponse!.headers, 'x-should-retry')).toBe('false');
    const bad = newHost(withConfig({ noRetryAboveSeconds: 2 }));
    expect(header(checkedRequest(bad, deny(2)).localResponse!.headers, 'x-should-retry')).toBeUndefined();
  });

  test('rejectBody and noRetryAboveSeconds are validated', () => {
    for (const [extra, err] of [
      [{ rejectBody: 'json' }, 'rejectBody: expected "openai" or "text", got "json"'],
      [{ noRetryAboveSeconds: -1 }, 'noRetryAboveSeconds: expected an integer from 0 to 31536000, got -1'],
    ] as [object, string][]) {
      const h = new (require('./helpers').ProxyWasmHost)();
      expect(h.configure(withConfig(extra))).toBe(false);
      expect(h.logsAt(4)).toEqual([`llm-token-ratelimit: invalid pluginConfig: ${err}`]);
    }
  });

  test('deny with numbers: retry-after (rounded up) and token headers; negative remaining shows 0', () => {
    const h = newHost(withConfig({ rejectStatus: 503 }));
    const s = checkedRequest(h, {
      status: 200,
      body: JSON.stringify({ allow: false, description: 'k is being rate-limited', limit: 200, remaining: -35, retry_after_seconds: 12.2 }),
    });
    expect(s.localResponse!.status).toBe(503);
    expect(header(s.localResponse!.headers, 'retry-after')).toBe('13');
    expect(header(s.localResponse!.headers, 'x-ratelimit-limit-tokens')).toBe('200');
    expect(header(s.localResponse!.headers, 'x-ratelimit-remaining-tokens')).toBe('0');
  });

  test('deny with odd description: unicode kept, huge one truncated, missing one defaulted', () => {
    const h = newHost();
    let s = checkedRequest(h, { status: 200, body: '{"allow":false,"description":"\\u9650\\u6d41 \\ud83d\\ude00"}' });
    expect(message(s.localResponse!)).toBe('限流 😀');
    s = checkedRequest(h, { status: 200, body: JSON.stringify({ allow: false, description: 'x'.repeat(5000) }) });
    expect(message(s.localResponse!).length).toBe(1024);
    s = checkedRequest(h, { status: 200, body: '{"allow":false}' });
    expect(message(s.localResponse!)).toBe('rate limited');
    s = checkedRequest(h, { status: 200, body: '{"allow":false,"retry_after_seconds":1e300,"limit":"x"}' });
    expect(header(s.localResponse!.headers, 'retry-after')).toBe('1000000000000000');
    expect(header(s.localResponse!.headers, 'x-ratelimit-limit-tokens')).toBeUndefined();
  });

  const failures: [string, any][] = [
    ['no reply (timeout/reset)', 'fail'],
    ['status 500', { status: 500, body: '{"allow":true}' }],
    ['status 400 empty body', { status: 400 }],
    ['empty 200', { status: 200 }],
    ['not JSON', { status: 200, body: 'allow' }],
    ['truncated JSON', { status: 200, body: '{"allow":tr' }],
    ['allow not boolean', { status: 200, body: '{"allow":"true"}' }],
    ['JSON array', { status: 200, body: '[true]' }],
    ['oversized body', { status: 200, body: `{"allow":true,"x":"${'y'.repeat(70000)}"}` }],
    ['invalid UTF-8', { status: 200, body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]) }],
  ];
  test.each(failures)('failure (%s): failOpen (default) lets the request through', (_n, reply) => {
    const h = newHost();
    const s = checkedRequest(h, reply);
    expect(s.requestContinued).toBe(1);
    expect(s.localResponse).toBeNull();
    expect(h.metric('llm_ratelimit.check_failed_open')).toBe(1);
  });
  test.each(failures)('failure (%s): failOpen false answers 503', (_n, reply) => {
    const h = newHost(withConfig({ failOpen: false }));
    const s = checkedRequest(h, reply);
    expect(s.requestContinued).toBe(0);
    expect(s.localResponse!.status).toBe(503);
    expect(message(s.localResponse!)).toBe('rate limit service unavailable');
    expect(h.metric('llm_ratelimit.check_failed_closed')).toBe(1);
  });

  test('the host refuses the call (unknown cluster): fail open continues at once, fail closed answers 503', () => {
    let h = newHost(SEED_CONFIG, { clusters: ['other'] });
    let s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders(UT))).toBe(0);
    expect(h.metric('llm_ratelimit.check_failed_open')).toBe(1);
    h = newHost(withConfig({ failOpen: false }), { clusters: ['other'] });
    s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders(UT))).toBe(1);
    expect(s.localResponse!.status).toBe(503);
  });

  test('request body and trailers are held while the check is pending, released after', () => {
    const h = newHost();
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders(UT));
    // Continue here would release the paused headers and skip the check.
    expect(s.sendRequestBody('{"messages":[', false)).toBe(FilterDataStatus.StopIterationAndWatermark);
    expect(s.sendRequestTrailers([])).toBe(1);
    h.reply(h.httpCalls[0].token, ALLOW);
    expect(s.sendRequestBody(']}', true)).toBe(0);
  });

  test('a reply after the stream ended touches nothing and does not trap', () => {
    for (const reply of [ALLOW, DENY, 'fail' as const]) {
      for (const failOpen of [true, false]) {
        const h = newHost(withConfig({ failOpen }));
        const s = h.newStream();
        s.sendRequestHeaders(reqHeaders(UT));
        s.end();
        h.reply(h.httpCalls[0].token, reply);
        expect(s.requestContinued).toBe(0);
        expect(s.localResponse).toBeNull();
        expect(h.trapped).toBeNull();
      }
    }
  });

  test('a duplicate or unknown token is ignored', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    h.call('proxy_on_http_call_response', h.rootId, h.rootId, 12345, 1, 0, 0);
    h.call('proxy_on_http_call_response', h.rootId, h.rootId, h.httpCalls[0].token, 1, 0, 0);
    expect(s.requestContinued).toBe(1);
  });

  test('denied and failed-closed requests are never accounted', () => {
    const h = newHost(withConfig({ failOpen: false }));
    for (const reply of [DENY, 'fail' as const]) {
      const s = checkedRequest(h, reply);
      respond(s, 'application/json', ['{"usage":{"total_tokens":9}}']);
      s.end();
    }
    expect(reports(h)).toHaveLength(0);
  });

  test('fail-open requests are still accounted (the keys are known)', () => {
    const h = newHost();
    const s = checkedRequest(h, 'fail');
    respond(s, 'application/json', ['{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}']);
    expect(reports(h)).toEqual([{ ratelimit_keys: ['regular-user'], prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }]);
  });
});

describe('budget headers on allowed responses', () => {
  const allowWith = { status: 200, body: '{"allow":true,"description":"ok","key":"regular-user","limit":200,"remaining":95.5}' };
  test("the limit and the balance the check saw, under our own names; the provider's x-ratelimit-* untouched", () => {
    const h = newHost();
    const s = checkedRequest(h, allowWith);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'application/json'],
      ['x-ratelimit-remaining-tokens', '149000'],
    ]);
    const hs = s.state.maps.get(2)!;
    expect(header(hs, 'x-llm-ratelimit-limit-tokens')).toBe('200');
    expect(header(hs, 'x-llm-ratelimit-remaining-tokens')).toBe('95');
    expect(header(hs, 'x-ratelimit-remaining-tokens')).toBe('149000');
  });
  test('budgetHeaders: false, or a reference service that sends no numbers: none added', () => {
    for (const [cfg, reply] of [
      [{ budgetHeaders: false }, allowWith],
      [{}, ALLOW],
    ] as [object, object][]) {
      const h = newHost(withConfig(cfg));
      const s = checkedRequest(h, reply);
      s.sendResponseHeaders([
        [':status', '200'],
        ['content-type', 'application/json'],
      ]);
      expect(header(s.state.maps.get(2)!, 'x-llm-ratelimit-remaining-tokens')).toBeUndefined();
    }
  });
});
