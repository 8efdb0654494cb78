// reserve: the check at the end of the request body with &reserve=N, reserved_tokens in the
// report, estimates when the usage never comes, includeStreamUsage.
import {
  newHost,
  withConfig,
  reqHeaders,
  header,
  reports,
  respond,
  ALLOW,
  DENY,
  ProxyWasmHost,
  Stream,
  HttpCall,
  HeaderList,
  FilterDataStatus,
  LogLevel,
  prng,
  utf8,
} from './helpers';

const UT: HeaderList = [['user-type', 'regular-user']];
const KEYS = ['regular-user'];

function reserveHost(reserve: object = {}, extra: object = {}, opts = {}): ProxyWasmHost {
  return newHost(withConfig({ reserve: { enabled: true, ...reserve }, ...extra }), opts);
}

function reserveParam(call: HttpCall): number | undefined {
  const path = header(call.headers, ':path')!;
  const m = /&reserve=(\d+)$/.exec(path);
  return m ? Number(m[1]) : undefined;
}

function checkCall(h: ProxyWasmHost, s: Stream): HttpCall | undefined {
  return h.httpCalls.find((c) => c.contextId === s.id && header(c.headers, ':path')!.startsWith('/ratelimit'));
}

interface Sent {
  s: Stream;
  call: HttpCall;
  bodyStatus: number[];
}

/** Headers (Continue), then the body in `parts` pieces; the check goes out at its end. */
function send(h: ProxyWasmHost, body: string | Buffer | object, parts = 1, headers: HeaderList = UT, path = '/v1/chat/completions'): Sent {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const s = h.newStream();
  expect(s.sendRequestHeaders(reqHeaders([...headers, ['content-length', String(b.length)]], 'dashscope.aliyuncs.com', path))).toBe(0);
  expect(checkCall(h, s)).toBeUndefined();
  const bodyStatus: number[] = [];
  const n = Math.max(1, parts);
  const step = Math.ceil(b.length / n) || 1;
  for (let i = 0; i < n; i++) {
    const last = i === n - 1;
    bodyStatus.push(s.sendRequestBody(b.subarray(i * step, last ? b.length : (i + 1) * step), last));
    if (!last) expect(checkCall(h, s)).toBeUndefined();
  }
  const call = checkCall(h, s)!;
  expect(call).toBeDefined();
  return { s, call, bodyStatus };
}

/** The reservation the plugin asks for, for a body. */
function reservationFor(body: object | string, reserve: object = {}, path?: string): number {
  const h = reserveHost(reserve);
  return reserveParam(send(h, body, 1, UT, path).call)!;
}

const chatBody = (content: unknown, extra: object = {}) => ({ model: 'qwen-plus', messages: [{ role: 'user', content }], ...extra });
const USAGE_JSON = '{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}}';

describe('reserve: configuration', () => {
  test('absent or disabled: the check stays at the request headers, without &reserve', () => {
    // (includeStreamUsage off: with it on, content-length goes, as the body may grow)
    const off = { includeStreamUsage: false };
    for (const cfg of [withConfig(off), withConfig({ ...off, reserve: {} }), withConfig({ ...off, reserve: { enabled: false, maxBodyBytes: 4096 } })]) {
      const h = newHost(cfg);
      const s = h.newStream();
      expect(s.sendRequestHeaders(reqHeaders([...UT, ['content-length', '10']]))).toBe(1);
      expect(header(h.httpCalls[0].headers, ':path')).toBe('/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D');
      expect(header(s.requestHeaders(), 'content-length')).toBe('10');
      expect(s.sendRequestBody('{"a":1}', true)).toBe(FilterDataStatus.StopIterationAndWatermark);
    }
  });

  test('enabled: logged with its settings', () => {
    const h = reserveHost({ includeStreamUsage: true, charsPerToken: 3.5 });
    expect(h.logsAt(LogLevel.info)[0]).toMatch(
      /failOpen true, estimateMissingUsage true, includeStreamUsage true, maxRequestBodyBytes 262144, reserve on \(charsPerToken 3\.5, cjkCharsPerToken 1(\.0)?, defaultCompletionTokens 1024\)$/,
    );
  });

  test.each([
    [true, 'reserve: expected an object, got true'],
    [{ enabled: 'yes' }, 'reserve.enabled: expected true or false, got "yes"'],
    [{ enabled: true, maxBodyBytes: 100 }, 'reserve.maxBodyBytes: expected an integer from 1024 to 16777216, got 100'],
    [{ maxBodyBytes: 4096.5 }, 'reserve.maxBodyBytes: expected an integer from 1024 to 16777216, got 4096.5'],
    [{ charsPerToken: 0 }, 'reserve.charsPerToken: expected a number from 0.1 to 100, got 0'],
    [{ charsPerToken: '4' }, 'reserve.charsPerToken: expected a number from 0.1 to 100, got "4"'],
    [{ cjkCharsPerToken: 101 }, 'reserve.cjkCharsPerToken: expected a number from 0.1 to 100, got 101'],
    [{ defaultCompletionTokens: -1 }, 'reserve.defaultCompletionTokens: expected an integer from 0 to 1000000, got -1'],
    [{ defaultCompletionTokens: 1e7 }, 'reserve.defaultCompletionTokens: expected an integer from 0 to 1000000, got 10000000'],
    [{ includeStreamUsage: 1 }, 'reserve.includeStreamUsage: expected true or false, got 1'],
    [
      { enabled: true, maxBodyBytez: 1 },
      'reserve.maxBodyBytez: unknown field (allowed: enabled, maxBodyBytes, charsPerToken, cjkCharsPerToken, defaultCompletionTokens, includeStreamUsage), got 1',
    ],
  ])('%j is refused naming the field', (reserve, message) => {
    const h = new ProxyWasmHost();
    expect(h.configure(withConfig({ reserve }))).toBe(false);
    expect(h.logsAt(LogLevel.error)).toEqual([`llm-token-ratelimit: invalid pluginConfig: ${message}`]);
  });
});

describe('reserve: estimates', () => {
  test('Latin text: 4 characters a token, plus max_tokens', () => {
    expect(reservationFor(chatBody('a'.repeat(400), { max_tokens: 50 }))).toBe(100 + 50);
    expect(reservationFor(chatBody('abc', { max_tokens: 0 }))).toBe(1); // rounded up
  });

  test('CJK ideographs, kana and hangul: one token each; mixed text adds up', () => {
    expect(reservationFor(chatBody('你好'.repeat(50), { max_tokens: 0 }))).toBe(100);
    expect(reservationFor(chatBody('こんにちはカタカナ', { max_tokens: 0 }))).toBe(9);
    expect(reservationFor(chatBody('안녕하세요', { max_tokens: 0 }))).toBe(5);
    expect(reservationFor(chatBody('介绍一下你自己 hello world!', { max_tokens: 0 }))).toBe(7 + 4); // 7 CJK + 13 other (incl. the space)
  });

  test('the ratios are configurable', () => {
    expect(reservationFor(chatBody('a'.repeat(300) + '字'.repeat(30), { max_tokens: 0 }), { charsPerToken: 3, cjkCharsPerToken: 1.5 })).toBe(100 + 20);
  });

  test('completion bound: max_tokens, max_completion_tokens, max_output_tokens, generationConfig.maxOutputTokens, else the default', () => {
    const text = 'a'.repeat(40); // 10 tokens
    expect(reservationFor(chatBody(text, { max_tokens: 7 }))).toBe(17);
    expect(reservationFor(chatBody(text, { max_completion_tokens: 8 }))).toBe(18);
    expect(reservationFor({ model: 'gpt-4.1', input: text, max_output_tokens: 9 })).toBe(19);
    expect(reservationFor({ contents: [{ role: 'user', parts: [{ text }] }], generationConfig: { maxOutputTokens: 11 } })).toBe(21);
    expect(reservationFor(chatBody(text))).toBe(10 + 1024);
    expect(reservationFor(chatBody(text), { defaultCompletionTokens: 5 })).toBe(15);
    expect(reservationFor(chatBody(text, { max_tokens: 'many' }))).toBe(10 + 1 + 1024); // not a number: default (the string is text)
    expect(reservationFor(chatBody(text, { max_tokens: -3 }))).toBe(10 + 1024);
    expect(reservationFor(chatBody(text, { max_tokens: 100, n: 3 }))).toBe(10 + 300); // n choices
    expect(reservationFor(chatBody(text, { max_tokens: 1e30 }))).toBe(1e9); // capped
  });

  test('where the text is: OpenAI parts, legacy prompt, Responses input and instructions, Anthropic system, Gemini', () => {
    const t = (n: number) => 'x'.repeat(4 * n);
    expect(
      reservationFor(
        chatBody(
          [
            { type: 'text', text: t(3) },
            { type: 'image_url', image_url: { url: 'https://e/x.png' } },
            { type: 'text', text: t(2) },
          ],
          { max_tokens: 0 },
        ),
      ),
    ).toBe(5 + 1600); // an image: 1,600
    expect(
      reservationFor({
        model: 'm',
        messages: [
          { role: 'system', content: t(1) },
          { role: 'user', content: t(2) },
          { role: 'assistant', content: t(4) },
        ],
        max_tokens: 0,
      }),
    ).toBe(7);
    expect(reservationFor({ model: 'davinci', prompt: t(6), max_tokens: 0 })).toBe(6);
    expect(reservationFor({ model: 'davinci', prompt: [t(1), t(2)], max_tokens: 0 })).toBe(3);
    expect(
      reservationFor({ model: 'gpt', instructions: t(2), input: [{ role: 'user', content: [{ type: 'input_text', text: t(3) }] }], max_output_tokens: 0 }),
    ).toBe(5);
    expect(
      reservationFor(
        { model: 'claude', system: [{ type: 'text', text: t(2) }], messages: [{ role: 'user', content: [{ type: 'text', text: t(3) }] }], max_tokens: 0 },
        {},
        '/v1/messages',
      ),
    ).toBe(5);
    expect(
      reservationFor({
        systemInstruction: { parts: [{ text: t(1) }] },
        contents: [{ role: 'user', parts: [{ text: t(2) }, { text: t(3) }] }],
        generationConfig: { maxOutputTokens: 0 },
      }),
    ).toBe(6);
  });

  test('no text found, or not JSON: the body length at the Latin ratio (plus the default completion)', () => {
    const noText = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: [] }] });
    expect(reservationFor(noText)).toBe(Math.ceil(noText.length / 4) + 1024);
    const imageOnly = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:...' } }] }] });
    expect(reservationFor(imageOnly)).toBe(1600 + 1024); // an image, no text: the image's fixed cost
    expect(reservationFor('not json at all, 40 bytes long.........')).toBe(10 + 1024);
    const deep = '{"messages":' + '['.repeat(40) + ']'.repeat(40) + '}'; // deeper than the parser's 32 levels
    expect(reservationFor(deep)).toBe(Math.ceil(deep.length / 4) + 1024);
  });

  test('a body split into many chunks is read whole at its end (buffered in Envoy meanwhile)', () => {
    const h = reserveHost();
    const body = JSON.stringify(chatBody('word '.repeat(200), { max_tokens: 10 }));
    const { s, call, bodyStatus } = send(h, body, 7);
    expect(bodyStatus).toEqual(Array(7).fill(FilterDataStatus.StopIterationAndBuffer));
    expect(reserveParam(call)).toBe(250 + 10);
    expect(s.upstreamRequestBody().length).toBe(0); // nothing upstream before the decision
    h.reply(call.token, ALLOW);
    expect(s.requestContinued).toBe(1);
    expect(s.upstreamRequestBody().toString()).toBe(body); // unchanged
  });
});

describe('reserve: check and decision', () => {
  test('headers continue (accept-encoding removed, content-length kept); the check carries &reserve=N', () => {
    const h = reserveHost({ includeStreamUsage: false });
    const { s, call } = send(h, chatBody('a'.repeat(40), { max_tokens: 5 }), 1, [...UT, ['accept-encoding', 'gzip']]);
    expect(header(call.headers, ':path')).toBe('/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D&reserve=15');
    expect(header(s.requestHeaders(), 'accept-encoding')).toBeUndefined();
    expect(header(s.requestHeaders(), 'content-length')).toBeDefined();
    expect(s.requestContinued).toBe(0);
  });

  test('a request without a body is checked at its headers with the default completion', () => {
    const h = reserveHost({ defaultCompletionTokens: 300 });
    const s = h.newStream();
    expect(s.sendRequestHeaders([[':method', 'GET'], [':path', '/v1/models'], [':authority', 'dashscope.aliyuncs.com'], ...UT], true)).toBe(1);
    expect(reserveParam(h.httpCalls[0])).toBe(300);
    h.reply(h.httpCalls[0].token, ALLOW);
    expect(s.requestContinued).toBe(1);
  });

  test('deny: the limited reply, the body never goes upstream, nothing reported', () => {
    const h = reserveHost();
    const { s, call } = send(h, chatBody('hello'));
    h.reply(call.token, DENY);
    expect(s.localResponse).toMatchObject({ status: 429 });
    expect(s.requestContinued).toBe(0);
    expect(s.upstreamRequestBody().length).toBe(0);
    s.end();
    expect(reports(h)).toEqual([]);
  });

  test('the service echoes "reserved": the report carries reserved_tokens', () => {
    const h = reserveHost();
    const { s, call } = send(h, chatBody('a'.repeat(40), { max_tokens: 90 }));
    expect(reserveParam(call)).toBe(100);
    h.reply(call.token, { status: 200, body: '{"allow":true,"description":"ok","reserved":100,"limit":200,"remaining":100}' });
    respond(s, 'application/json', [USAGE_JSON]);
    s.end();
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 10, completion_tokens: 95, total_tokens: 105, reserved_tokens: 100 }]);
  });

  test('a reference-shaped reply (no "reserved"): the report is the reference one plus its request_id and model', () => {
    const h = reserveHost();
    const { s, call } = send(h, chatBody('hi'));
    h.reply(call.token, ALLOW);
    respond(s, 'application/json', [USAGE_JSON]);
    s.end();
    const calls = h.httpCalls.filter((c) => header(c.headers, ':path') === '/update_ratelimit_record');
    expect(calls.map((c) => c.body.toString())).toEqual([
      expect.stringMatching(
        /^\{"ratelimit_keys":\["regular-user"\],"prompt_tokens":10,"completion_tokens":95,"total_tokens":105,"model":"qwen-plus","request_id":"[0-9A-F]{24}-1"\}$/,
      ),
    ]);
  });

  test.each([
    ['negative', '-5'],
    ['a string', '"100"'],
    ['zero', '0'],
    ['too big', '1e16'],
  ])('"reserved" %s: treated as nothing reserved', (_n, v) => {
    const h = reserveHost();
    const { s, call } = send(h, chatBody('hi'));
    h.reply(call.token, { status: 200, body: `{"allow":true,"reserved":${v}}` });
    respond(s, 'application/json', [USAGE_JSON]);
    s.end();
    expect(reports(h)[0].reserved_tokens).toBeUndefined();
  });

  test('a reservation granted after the client left is refunded in full', () => {
    const h = reserveHost();
    const { s, call } = send(h, chatBody('hi'));
    s.end();
    h.reply(call.token, { status: 200, body: '{"allow":true,"reserved":1025}' });
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, reserved_tokens: 1025 }]);
    // ... and a late deny or a reply without a reservation sends nothing.
    const h2 = reserveHost();
    const a = send(h2, chatBody('hi'));
    const b = send(h2, chatBody('hi'));
    a.s.end();
    b.s.end();
    h2.reply(a.call.token, DENY);
    h2.reply(b.call.token, ALLOW);
    expect(reports(h2)).toEqual([]);
  });

  test('host refuses the check: failOpen lets the body through at once; failOpen false answers 503', () => {
    const open = reserveHost({}, {}, { clusters: [] });
    const s = open.newStream();
    s.sendRequestHeaders(reqHeaders(UT));
    expect(s.sendRequestBody('{"messages":[]}', true)).toBe(FilterDataStatus.Continue);
    expect(s.upstreamRequestBody().toString()).toBe('{"messages":[]}');
    expect(open.metric('llm_ratelimit.check_failed_open')).toBe(1);

    const closed = reserveHost({}, { failOpen: false }, { clusters: [] });
    const t = closed.newStream();
    t.sendRequestHeaders(reqHeaders(UT));
    expect(t.sendRequestBody('{"messages":[]}', true)).toBe(FilterDataStatus.StopIterationNoBuffer);
    expect(t.localResponse).toMatchObject({ status: 503 });
  });

  test('a check that fails (timeout) with failOpen: continues, and the report has no reserved_tokens', () => {
    const h = reserveHost();
    const { s, call } = send(h, chatBody('hi'));
    h.reply(call.token, 'fail');
    expect(s.requestContinued).toBe(1);
    respond(s, 'application/json', [USAGE_JSON]);
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 10, completion_tokens: 95, total_tokens: 105 }]);
  });

  test('trailers end a body still being buffered: the check goes out then', () => {
    const h = reserveHost();
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders(UT));
    expect(s.sendRequestBody(JSON.stringify(chatBody('a'.repeat(8), { max_tokens: 1 })), false)).toBe(FilterDataStatus.StopIterationAndBuffer);
    expect(s.sendRequestTrailers([['x-t', '1']])).toBe(1);
    expect(reserveParam(checkCall(h, s)!)).toBe(3);
  });
});

describe('reserve: request body over maxBodyBytes', () => {
  test('decided from content-length as soon as the bound is passed; the rest is held with flow control, then all goes upstream unchanged', () => {
    const h = reserveHost({ maxBodyBytes: 1024 });
    const body = Buffer.from(JSON.stringify(chatBody('z'.repeat(4000))));
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders([...UT, ['content-length', String(body.length)]]));
    expect(s.sendRequestBody(body.subarray(0, 1000))).toBe(FilterDataStatus.StopIterationAndBuffer);
    expect(s.sendRequestBody(body.subarray(1000, 2000))).toBe(FilterDataStatus.StopIterationAndWatermark);
    const call = checkCall(h, s)!;
    expect(reserveParam(call)).toBe(Math.ceil(body.length / 4) + 1024);
    expect(s.sendRequestBody(body.subarray(2000, 3000))).toBe(FilterDataStatus.StopIterationAndWatermark);
    h.reply(call.token, ALLOW);
    expect(s.sendRequestBody(body.subarray(3000), true)).toBe(FilterDataStatus.Continue);
    expect(s.upstreamRequestBody().equals(body)).toBe(true);
    expect(h.metric('llm_ratelimit.request_body_over_limit')).toBe(1);
  });

  test('without content-length: the bytes seen so far; a single over-bound last chunk: its length', () => {
    const h = reserveHost({ maxBodyBytes: 1024 });
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders(UT));
    expect(s.sendRequestBody('x'.repeat(2000))).toBe(FilterDataStatus.StopIterationAndWatermark);
    expect(reserveParam(checkCall(h, s)!)).toBe(500 + 1024);
    const t = h.newStream();
    t.sendRequestHeaders(reqHeaders(UT));
    expect(t.sendRequestBody('y'.repeat(4000), true)).toBe(FilterDataStatus.StopIterationAndBuffer);
    expect(reserveParam(checkCall(h, t)!)).toBe(1000 + 1024);
  });
});

describe('reserve: reports without usage', () => {
  const reserved = (h: ProxyWasmHost, body: object, n: number) => {
    const sent = send(h, body);
    h.reply(sent.call.token, { status: 200, body: `{"allow":true,"reserved":${n}}` });
    return sent.s;
  };

  test('a JSON reply without usage: prompt estimate + its text, marked estimated', () => {
    const h = reserveHost();
    const s = reserved(h, chatBody('a'.repeat(40), { max_tokens: 100 }), 110);
    respond(s, 'application/json', ['{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"Hello, world! 12345678"}}]}']);
    s.end();
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 10, completion_tokens: 6, total_tokens: 16, reserved_tokens: 110, estimated: true }]);
    expect(h.metric('llm_ratelimit.usage_estimated')).toBe(1);
    expect(h.metric('llm_ratelimit.usage_not_found')).toBe(1);
  });

  const sse = (pieces: string[], usage = false) =>
    pieces
      .map((p) => `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":${JSON.stringify(p)}},"finish_reason":null}]}\n\n`)
      .join('') +
    (usage ? 'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}\n\n' : '') +
    'data: [DONE]\n\n';

  test('an SSE stream without a usage chunk: only the delta.content text counts (not the JSON around it), CJK at its ratio', () => {
    const h = reserveHost();
    const s = reserved(h, chatBody('你好'), 1026);
    respond(s, 'text/event-stream', [sse(['我是', '通义千问', ', hello there'])]);
    s.end();
    // 6 CJK = 6 tokens, ", hello there" = 13 characters = 4 tokens
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 2, completion_tokens: 10, total_tokens: 12, reserved_tokens: 1026, estimated: true }]);
  });

  test('split at every byte, the count is the same; \\u escapes count as the characters they encode', () => {
    const body = sse(['\\u4f60\\u597d', 'abcd', '\ud83d\ude00']).replace('\\\\u4f60\\\\u597d', '\\u4f60\\u597d');
    const h = reserveHost();
    const b = Buffer.from(body);
    for (let i = 0; i <= b.length; i += 7) {
      const s = reserved(h, chatBody('abcd', { max_tokens: 1 }), 2);
      respond(s, 'text/event-stream', [b.subarray(0, i), b.subarray(i)]);
    }
    const r = reports(h);
    expect(r.length).toBeGreaterThan(10);
    // 2 CJK (escaped) = 2, "abcd" + one emoji = 5 characters = 2 tokens
    for (const x of r)
      expect(x).toEqual({ ratelimit_keys: KEYS, prompt_tokens: 1, completion_tokens: 4, total_tokens: 5, reserved_tokens: 2, estimated: true });
  });

  test('Anthropic text_delta and Responses output_text.delta count too', () => {
    const h = reserveHost();
    const s = reserved(h, chatBody('x'), 5);
    respond(s, 'text/event-stream', [
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"12345678"}}\n\n',
      'data: {"type":"response.output_text.delta","item_id":"msg_1","delta":"abcdefgh"}\n\n',
    ]);
    s.end();
    expect(reports(h)[0]).toMatchObject({ completion_tokens: 4, estimated: true });
  });

  test('a usage chunk present: actual usage, not estimated', () => {
    const h = reserveHost();
    const s = reserved(h, chatBody('x'), 5);
    respond(s, 'text/event-stream', [sse(['abc'], true)]);
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 3, completion_tokens: 4, total_tokens: 7, reserved_tokens: 5 }]);
  });

  test('client abort mid-stream: what was streamed so far, estimated', () => {
    const h = reserveHost();
    const s = reserved(h, chatBody('a'.repeat(400), { max_tokens: 500 }), 600);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    s.sendResponseBody(sse(['a'.repeat(40), 'b'.repeat(40)]).replace('data: [DONE]\n\n', ''), false);
    s.end(); // the client went away
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 100, completion_tokens: 20, total_tokens: 120, reserved_tokens: 600, estimated: true }]);
  });

  test('client abort before any response: the prompt estimate alone', () => {
    const h = reserveHost();
    const s = reserved(h, chatBody('a'.repeat(400), { max_tokens: 500 }), 600);
    s.end();
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 100, completion_tokens: 0, total_tokens: 100, reserved_tokens: 600, estimated: true }]);
  });

  test.each([400, 429, 500, 503])('upstream %d without usage: a full refund (actual 0) when something was reserved, else nothing', (status) => {
    const h = reserveHost();
    const s = reserved(h, chatBody('hi'), 1025);
    s.sendResponseHeaders([
      [':status', String(status)],
      ['content-type', 'application/json'],
    ]);
    s.sendResponseBody('{"error":{"message":"upstream error","type":"x","content":"not counted"}}', true);
    s.end();
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 0, completion_tokens: 0, total_tokens: 0, reserved_tokens: 1025 }]);

    const h2 = reserveHost();
    const t = send(h2, chatBody('hi'));
    h2.reply(t.call.token, ALLOW); // reference service: nothing reserved
    t.s.sendResponseHeaders([
      [':status', String(status)],
      ['content-type', 'application/json'],
    ]);
    t.s.sendResponseBody('{"error":{}}', true);
    t.s.end();
    expect(reports(h2)).toEqual([]);
  });

  test('without reserve, a reply without usage is estimated the same way; estimateMissingUsage: false reports nothing', () => {
    for (const on of [true, false]) {
      const h = newHost(withConfig({ estimateMissingUsage: on }));
      const s = h.newStream();
      s.sendRequestHeaders(reqHeaders(UT));
      h.reply(h.httpCalls[0].token, ALLOW);
      expect(s.sendRequestBody(JSON.stringify(chatBody('a'.repeat(40))), true)).toBe(FilterDataStatus.Continue);
      respond(s, 'text/event-stream', [sse(['abcdefgh'])]);
      s.end();
      expect(reports(h)).toEqual(on ? [{ ratelimit_keys: KEYS, prompt_tokens: 10, completion_tokens: 2, total_tokens: 12, estimated: true }] : []);
      expect(h.metric('llm_ratelimit.usage_estimated')).toBe(on ? 1 : 0);
    }
  });

  test('a compressed reply cannot be read: the prompt estimate plus a token per compressed byte, estimated', () => {
    const h = reserveHost();
    const s = reserved(h, chatBody('hi'), 1025);
    respond(s, 'application/json', ['\x1f\x8b...'], [['content-encoding', 'gzip']]);
    s.end();
    // (the emulator sends the string as UTF-8: 6 bytes)
    expect(reports(h)).toEqual([{ ratelimit_keys: KEYS, prompt_tokens: 1, completion_tokens: 6, total_tokens: 7, reserved_tokens: 1025, estimated: true }]);
  });
});

describe('reserve: includeStreamUsage', () => {
  const upstream = (reserve: object, body: object | string, path?: string) => {
    const h = reserveHost(reserve);
    const { s, call } = send(h, body, 3, UT, path);
    h.reply(call.token, ALLOW);
    return { s, body: s.upstreamRequestBody().toString(), contentLength: header(s.requestHeaders(), 'content-length') };
  };

  test('on: a streaming chat request gets stream_options.include_usage; content-length dropped at header time', () => {
    const r = upstream({ includeStreamUsage: true }, { model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    expect(JSON.parse(r.body)).toEqual({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }], stream_options: { include_usage: true } });
    expect(r.contentLength).toBeUndefined();
  });

  test.each([
    [
      'merged into stream_options',
      '{"stream":true,"stream_options":{"x":1},"messages":[]}',
      '{"stream":true,"stream_options":{"x":1,"include_usage":true},"messages":[]}',
    ],
    ['empty stream_options', '{"stream":true,"stream_options":{ },"messages":[]}', '{"stream":true,"stream_options":{ "include_usage":true},"messages":[]}'],
    [
      'include_usage false',
      '{"stream":true,"stream_options":{"include_usage":false},"prompt":"p"}',
      '{"stream":true,"stream_options":{"include_usage":true},"prompt":"p"}',
    ],
    ['stream_options null', '{"stream":true,"stream_options":null,"messages":[]}', '{"stream":true,"stream_options":{"include_usage":true},"messages":[]}'],
    [
      'whitespace and unicode kept',
      ' {\n "messages" : [{"content":"你好\\u0041"}] ,\n "stream" : true \n}\n',
      ' {\n "messages" : [{"content":"你好\\u0041"}] ,\n "stream" : true \n,"stream_options":{"include_usage":true}}\n',
    ],
  ])('%s', (_n, body, expected) => {
    expect(upstream({ includeStreamUsage: true }, body).body).toBe(expected);
  });

  test.each([
    ['already true', '{"stream":true,"stream_options":{"include_usage":true},"messages":[]}', undefined],
    ['not streaming', '{"stream":false,"messages":[]}', undefined],
    ['stream absent', '{"messages":[]}', undefined],
    ['no messages or prompt (Responses, Gemini)', '{"stream":true,"input":"x"}', undefined],
    ['Anthropic path', '{"stream":true,"messages":[],"max_tokens":5}', '/v1/messages'],
    ['not JSON', '{"stream":true,', undefined],
  ])('unchanged: %s', (_n, body, path) => {
    expect(upstream({ includeStreamUsage: true }, body, path).body).toBe(body);
  });

  test('off: the body and content-length are untouched', () => {
    const body = '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}';
    const r = upstream({ includeStreamUsage: false }, body);
    expect(r.body).toBe(body);
    expect(r.contentLength).toBe(String(body.length));
  });
});

describe('reserve: generated inputs', () => {
  test('random request bodies, chunkings, replies and responses never trap; memory does not grow', () => {
    const rand = prng(7);
    const int = (n: number) => Math.floor(rand() * n);
    const pieces = [
      '{',
      '}',
      '[',
      ']',
      '"messages"',
      '"content"',
      '"text"',
      '"parts"',
      '"max_tokens"',
      '"stream"',
      'true',
      '"stream_options"',
      '"include_usage"',
      ':',
      ',',
      '12',
      '-1',
      '1e999',
      '"你好"',
      '"\\u4f60"',
      '"\\ud83d"',
      '"a\\"b"',
      'null',
      ' ',
      '\xff',
      '"prompt"',
      '"input"',
      '"generationConfig"',
      '{"maxOutputTokens":3}',
      '"n"',
    ];
    const body = () => {
      if (rand() < 0.3) {
        return JSON.stringify({
          model: 'm',
          stream: rand() < 0.5,
          stream_options: rand() < 0.3 ? { include_usage: rand() < 0.5 } : undefined,
          messages: [{ role: 'user', content: rand() < 0.5 ? 'x'.repeat(int(3000)) : [{ type: 'text', text: '字'.repeat(int(100)) }] }],
          max_tokens: rand() < 0.5 ? int(5000) : undefined,
        });
      }
      let s = '';
      const n = int(60);
      for (let i = 0; i < n; i++) s += pieces[int(pieces.length)];
      return s;
    };
    const h = reserveHost({ includeStreamUsage: true, maxBodyBytes: 2048 });
    const mem = () => (h.instance.exports.memory as WebAssembly.Memory).buffer.byteLength;
    // Memory after a warm-up (1,000 requests: the heap's high-water mark depends on the order of
    // the allocations, and a page may be added once early on), then 2,000 more: a leak of even a
    // few bytes per request would grow it.
    let memAt500 = 0;
    for (let i = 0; i < 3000; i++) {
      if (i === 1000) memAt500 = mem();
      const b = Buffer.from(body(), 'latin1');
      const s = h.newStream();
      s.sendRequestHeaders(reqHeaders([...UT, ['content-length', String(b.length)]]));
      const parts = 1 + int(4);
      const step = Math.ceil(b.length / parts) || 1;
      for (let p = 0; p < parts; p++) s.sendRequestBody(b.subarray(p * step, p === parts - 1 ? b.length : (p + 1) * step), p === parts - 1);
      const call = h.pendingCalls().find((c) => c.contextId === s.id);
      if (call) {
        const replies = ['{"allow":true,"reserved":' + int(3000) + '}', '{"allow":true}', '{"allow":false}', '{"allow":true,"reserved":"x"}', 'garbage'];
        if (rand() < 0.1) h.reply(call.token, 'fail');
        else h.reply(call.token, { status: 200, body: replies[int(replies.length)] });
      }
      if (rand() < 0.8) {
        const sseMode = rand() < 0.5;
        s.sendResponseHeaders([
          [':status', String([200, 200, 200, 500][int(4)])],
          ['content-type', sseMode ? 'text/event-stream' : 'application/json'],
        ]);
        const rb = Buffer.from(body(), 'latin1');
        const cut = int(rb.length + 1);
        s.sendResponseBody(sseMode ? Buffer.concat([Buffer.from('data: '), rb.subarray(0, cut)]) : rb.subarray(0, cut), false);
        if (rand() < 0.7) s.sendResponseBody(rb.subarray(cut), true);
      }
      s.end();
      for (const c of h.pendingCalls()) h.reply(c.token, { status: 200, body: '{}' });
    }
    expect(h.trapped).toBeNull();
    expect(mem()).toBe(memAt500);
    for (const r of reports(h)) {
      for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) expect(Number.isInteger(r[k]) && r[k] >= 0).toBe(true);
    }
  });
});

void utf8;
