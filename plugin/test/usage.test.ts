import { newHost, withConfig, checkedRequest, respond, reports, header, ALLOW, ProxyWasmHost, Stream } from './helpers';

const KEYS = ['regular-user'];

function usageOf(contentType: string, chunks: (string | Buffer)[], h: ProxyWasmHost = newHost()): any {
  const s = checkedRequest(h, ALLOW);
  respond(s, contentType, chunks);
  s.end();
  const r = reports(h);
  expect(r.length).toBeLessThanOrEqual(1);
  return r[0];
}

const tokens = (p: number, c: number, t: number) => ({ ratelimit_keys: KEYS, prompt_tokens: p, completion_tokens: c, total_tokens: t });

/** Every way of cutting `body` into two chunks, plus byte-by-byte. */
function splits(body: string): string[][] {
  const out: string[][] = [];
  const b = Buffer.from(body);
  for (let i = 0; i <= b.length; i++) out.push([b.subarray(0, i) as any, b.subarray(i) as any]);
  out.push([...b].map((x) => Buffer.from([x]) as any));
  return out;
}

const JSON_BODIES: [string, string, object][] = [
  [
    'OpenAI chat (the seed reply)',
    '{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"我是通义千问"},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}}',
    tokens(10, 95, 105),
  ],
  [
    'OpenAI with token details',
    '{"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"choices":[]}',
    tokens(19, 10, 29),
  ],
  [
    'OpenAI Responses',
    '{"id":"resp_1","object":"response","output":[{"type":"message","content":[{"type":"output_text","text":"hi"}]}],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":123}}',
    tokens(36, 87, 123),
  ],
  [
    'DashScope native',
    '{"output":{"choices":[{"message":{"content":"x","role":"assistant"},"finish_reason":"stop"}]},"usage":{"total_tokens":30,"output_tokens":22,"input_tokens":8},"request_id":"abc"}',
    tokens(8, 22, 30),
  ],
  [
    'Anthropic (no total: summed)',
    '{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","usage":{"input_tokens":2095,"output_tokens":503,"cache_creation_input_tokens":0}}',
    tokens(2095, 503, 2598),
  ],
  [
    'Gemini',
    '{"candidates":[{"content":{"parts":[{"text":"hi"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":7,"totalTokenCount":11},"modelVersion":"gemini-2.0-flash"}',
    tokens(4, 7, 11),
  ],
  [
    'Gemini stream without alt=sse (JSON array of chunks)',
    '[{"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4}}\r\n,\r\n{"candidates":[{"content":{"parts":[{"text":"b"}]}}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":9,"totalTokenCount":13}}]',
    tokens(4, 9, 13),
  ],
  [
    'usage first, whitespace everywhere',
    ' {\n  "usage" : {\n "prompt_tokens" : 1 , "completion_tokens" : 2 , "total_tokens" : 3 } , "choices" : [ ] }\n',
    tokens(1, 2, 3),
  ],
];

describe('usage in JSON bodies', () => {
  test.each(JSON_BODIES)('%s', (_n, body, expected) => {
    expect(usageOf('application/json', [body])).toEqual(expected);
  });

  test.each(JSON_BODIES)('%s: split at every byte', (_n, body, expected) => {
    const h = newHost();
    for (const chunks of splits(body)) {
      const s = checkedRequest(h, ALLOW);
      respond(s, 'application/json; charset=utf-8', chunks);
    }
    const r = reports(h);
    expect(r).toHaveLength(Buffer.byteLength(body) + 2);
    for (const x of r) expect(x).toEqual(expected);
  });

  test('report request: POST, path, authority, content-type; dispatched on the root, once', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    respond(s, 'application/json', [JSON_BODIES[0][1]]);
    s.end();
    const calls = h.httpCalls.filter((c) => header(c.headers, ':path') === '/update_ratelimit_record');
    expect(calls).toHaveLength(1);
    expect(calls[0].headers).toEqual([
      [':method', 'POST'],
      [':path', '/update_ratelimit_record'],
      [':authority', 'asm-llm-token-rate-limit-example.default.svc.cluster.local'],
      ['content-type', 'application/json'],
    ]);
    expect(calls[0].cluster).toBe('outbound|80||asm-llm-token-rate-limit-example.default.svc.cluster.local');
    expect(h.metric('llm_ratelimit.reports_sent')).toBe(1);
  });

  test('report failures are counted (refused, failed, non-200), not retried', () => {
    const h = newHost();
    for (const reply of ['fail' as const, { status: 500 }, { status: 200 }]) {
      const s = checkedRequest(h, ALLOW);
      respond(s, 'application/json', [JSON_BODIES[0][1]]);
      s.end();
      h.reply(h.pendingCalls()[0].token, reply);
    }
    expect(h.metric('llm_ratelimit.report_failures')).toBe(2);
    expect(h.pendingCalls()).toHaveLength(0);
  });

  test('body chunks always pass through at once (Continue), never buffered', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'application/json'],
    ]);
    expect(s.sendResponseBody('{"choices":[', false)).toBe(0);
    expect(s.sendResponseBody('],"usage":{"total_tokens":4}}', true)).toBe(0);
  });

  test('usage not found: counted, nothing reported', () => {
    const h = newHost();
    for (const body of [
      '{"error":{"message":"bad"}}',
      '{"usage":null}',
      '{"usage":{}}',
      '{"usage":{"total_tokens":"5"}}',
      '{"x":{"usage":{"total_tokens":5}}}',
      '[[{"usage":{"total_tokens":5}}]]',
      '{"a":"\\"usage\\":{\\"total_tokens\\":5}"}',
      'not json',
      '',
    ]) {
      const s = checkedRequest(h, ALLOW);
      respond(s, 'application/json', [body]);
      s.end();
    }
    expect(reports(h)).toHaveLength(0);
    expect(h.metric('llm_ratelimit.usage_not_found')).toBe(9);
  });

  test('insane numbers are ignored: negative, fractional kept floor, huge, NaN-like', () => {
    expect(usageOf('application/json', ['{"usage":{"prompt_tokens":-5,"completion_tokens":2.9,"total_tokens":1e300}}'])).toEqual(tokens(0, 2, 2));
    expect(usageOf('application/json', ['{"usage":{"prompt_tokens":99999999999999999999}}'])).toBeUndefined();
  });

  test('a usage object larger than maxBufferBytes is dropped and counted', () => {
    const h = newHost(withConfig({ maxBufferBytes: 256 }));
    const big = `{"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"pad":"${'x'.repeat(300)}"}}`;
    expect(usageOf('application/json', [big], h)).toBeUndefined();
    expect(h.metric('llm_ratelimit.usage_too_large')).toBe(1);
  });

  test('compressed responses cannot be read: counted, and charged about a token per compressed byte (estimated)', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    respond(s, 'application/json', [Buffer.from([0x1f, 0x8b, 0x08, 0, 0xff])], [['content-encoding', 'gzip']]);
    s.end();
    expect(reports(h)).toEqual([{ ratelimit_keys: ['regular-user'], prompt_tokens: 0, completion_tokens: 5, total_tokens: 5, estimated: true }]);
    expect(h.metric('llm_ratelimit.compressed_skipped')).toBe(1);
    expect(h.metric('llm_ratelimit.usage_not_found')).toBe(0);
  });

  test('content-encoding: identity is read normally', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    respond(s, 'application/json', ['{"usage":{"total_tokens":3}}'], [['content-encoding', 'Identity']]);
    expect(reports(h)).toEqual([tokens(0, 0, 3)]);
  });

  test('a response without body (end_of_stream on headers) ends the accounting', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    s.sendResponseHeaders([[':status', '204']], true);
    expect(h.metric('llm_ratelimit.usage_not_found')).toBe(1);
    s.end();
    expect(h.metric('llm_ratelimit.usage_not_found')).toBe(1);
  });

  test('response trailers end the accounting', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'application/json'],
    ]);
    s.sendResponseBody('{"usage":{"total_tokens":3}}', false);
    s.sendResponseTrailers([['grpc-status', '0']]);
    expect(reports(h)).toEqual([tokens(0, 0, 3)]);
    s.end();
    expect(reports(h)).toHaveLength(1);
  });
});

function sse(events: string[], eol = '\n'): string {
  return events.map((e) => e.split('\n').join(eol) + eol + eol).join('');
}

const SSE_BODIES: [string, string, object][] = [
  [
    'OpenAI chat stream with include_usage',
    sse([
      'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}',
      'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hel\\"lo {\\"usage\\":{\\"total_tokens\\":999}}"}}],"usage":null}',
      'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}',
      'data: {"id":"c","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}}',
      'data: [DONE]',
    ]),
    tokens(10, 95, 105),
  ],
  [
    'Anthropic stream: message_start + message_delta',
    sse([
      'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":25,"output_tokens":1}}}',
      'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
      'event: ping\ndata: {"type": "ping"}',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}',
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}',
      'event: message_stop\ndata: {"type":"message_stop"}',
    ]),
    tokens(25, 15, 40),
  ],
  [
    'OpenAI Responses stream',
    sse([
      'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_1","status":"in_progress","usage":null}}',
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}',
      'event: response.completed\ndata: {"type":"response.completed","response":{"id":"resp_1","status":"completed","usage":{"input_tokens":5,"output_tokens":6,"total_tokens":11}}}',
    ]),
    tokens(5, 6, 11),
  ],
  [
    'Gemini stream (cumulative usageMetadata)',
    sse([
      'data: {"candidates":[{"content":{"parts":[{"text":"a"}]}}],"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4}}',
      'data: {"candidates":[{"content":{"parts":[{"text":"b"}]}}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":9,"totalTokenCount":13}}',
    ]),
    tokens(4, 9, 13),
  ],
  [
    'DashScope native stream',
    sse([
      'id:1\nevent:result\n:HTTP_STATUS/200\ndata:{"output":{"choices":[{"message":{"content":"x"}}]},"usage":{"total_tokens":9,"output_tokens":1,"input_tokens":8}}',
      'id:2\nevent:result\n:HTTP_STATUS/200\ndata:{"output":{"choices":[{"message":{"content":"y"}}]},"usage":{"total_tokens":12,"output_tokens":4,"input_tokens":8}}',
    ]),
    tokens(8, 4, 12),
  ],
  ['multi-line data event', sse(['data: {"choices":[],\ndata:  "usage":\ndata: {"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}']), tokens(1, 1, 2)],
];

describe('usage in SSE streams', () => {
  test.each(SSE_BODIES)('%s', (_n, body, expected) => {
    expect(usageOf('text/event-stream', [body])).toEqual(expected);
  });

  test.each(SSE_BODIES)('%s: CRLF line ends', (_n, body, expected) => {
    expect(usageOf('text/event-stream; charset=utf-8', [body.replace(/\n/g, '\r\n')])).toEqual(expected);
  });

  test.each(SSE_BODIES)('%s: split at every byte', (_n, body, expected) => {
    const h = newHost();
    const all = splits(body.replace(/\n/g, '\r\n')).concat(splits(body));
    for (const chunks of all) {
      const s = checkedRequest(h, ALLOW);
      respond(s, 'text/event-stream', chunks);
    }
    const r = reports(h);
    expect(r).toHaveLength(all.length);
    for (const x of r) expect(x).toEqual(expected);
  });

  test('a truncated event does not poison the next one', () => {
    const body =
      'data: {"usage":{"prompt_tokens":7,"compl\n\ndata: {"choices":[{"x":"}}}]]]"}]}\n\ndata: {"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n';
    expect(usageOf('text/event-stream', [body])).toEqual(tokens(1, 2, 3));
  });

  test('a stream cut before its end reports what is known, once, from proxy_on_done', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    s.sendResponseBody(SSE_BODIES[1][1].slice(0, 200), false); // message_start only
    expect(reports(h)).toHaveLength(0);
    s.end(); // client went away: on_done, on_delete
    expect(reports(h)).toEqual([tokens(25, 1, 26)]);
  });

  test('a stream cut before any usage: usage not found', () => {
    const h = newHost();
    const s = checkedRequest(h, ALLOW);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    s.sendResponseBody('data: {"choices":[]}\n\n', false);
    s.end();
    expect(h.metric('llm_ratelimit.usage_not_found')).toBe(1);
  });

  test('memory is bounded: a long stream with long lines keeps only the usage object', () => {
    const h = newHost();
    const s: Stream = checkedRequest(h, ALLOW);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    const mem = () => (h.instance.exports.memory as WebAssembly.Memory).buffer.byteLength;
    const line = `data: {"choices":[{"delta":{"content":"${'x'.repeat(100000)}"}}]}\n\n`;
    for (let i = 0; i < 5; i++) s.sendResponseBody(line, false);
    const before = mem();
    for (let i = 0; i < 50; i++) s.sendResponseBody(line, false); // 5 MB
    s.sendResponseBody('data: {"usage":{"total_tokens":1}}\n\ndata: [DONE]\n\n', true);
    expect(mem()).toBe(before);
    expect(reports(h)).toEqual([tokens(0, 0, 1)]);
  });
});
