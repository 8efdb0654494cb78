// Issue 23 ("No way around the limit, round 2"), points 1, 4 and 5, on the plugin alone (the
// same escapes run through the real Envoy in e2e/test/escapes-usage.test.ts):
//   1. an Anthropic stream cut before message_delta was charged message_start's provisional
//      usage (output_tokens: 1), not what it delivered;
//   4. the prompt estimate skipped billed text (tool definitions and arguments, schemas, ...);
//   5. a report refused for its metadata ({"model":""}) was dropped with its counts.
import * as fs from 'fs';
import * as path from 'path';
import { newHost, withConfig, checkedRequest, reports, reportCalls, reqHeaders, header, prng, ALLOW, ProxyWasmHost, Stream } from './helpers';

const UT: [string, string][] = [['user-type', 'regular-user']];
const CUT = fs.readFileSync(path.join(__dirname, 'fixtures', 'anthropic-stream-cut.sse'));

/** A matched, allowed request whose body is `body` (the check at the headers, the body after). */
function withBody(h: ProxyWasmHost, body: object | string, p = '/v1/chat/completions'): Stream {
  const b = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const s = h.newStream();
  s.sendRequestHeaders(reqHeaders([...UT, ['content-length', String(b.length)]], 'dashscope.aliyuncs.com', p));
  const call = h.pendingCalls().find((c) => c.contextId === s.id)!;
  h.reply(call.token, ALLOW);
  s.sendRequestBody(b, true);
  return s;
}

/** Sends `chunks` of a response and then ends the stream: the client reset it (no end of stream). */
function cutResponse(s: Stream, contentType: string, chunks: Buffer[]): void {
  s.sendResponseHeaders([
    [':status', '200'],
    ['content-type', contentType],
  ]);
  for (const c of chunks) s.sendResponseBody(c, false);
  s.end();
}

function splits(b: Buffer, rand: () => number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length;) {
    const n = 1 + Math.floor(rand() * 300);
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('1. a stream cut before its final usage is charged at least what it delivered', () => {
  const CHARGED = { ratelimit_keys: ['regular-user'], prompt_tokens: 106, completion_tokens: 500, total_tokens: 606, estimated: true };

  test('Anthropic, the client resets as the last content_block_delta arrives: 106 + 500, not 106 + the placeholder 1', () => {
    const rand = prng(23);
    for (const chunks of [[CUT], splits(CUT, rand), splits(CUT, rand), [...CUT].map((x) => Buffer.from([x]))]) {
      const h = newHost();
      cutResponse(checkedRequest(h, ALLOW), 'text/event-stream', chunks);
      expect(reports(h)).toEqual([CHARGED]);
    }
  });

  test('with a reservation: the same charge, the reservation settled against it', () => {
    const h = newHost(withConfig({ reserve: { enabled: true } }));
    const b = Buffer.from(JSON.stringify({ model: 'claude', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'hi' }] }));
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders([...UT, ['content-length', String(b.length)]], 'dashscope.aliyuncs.com', '/v1/messages'));
    s.sendRequestBody(b, true);
    const call = h.pendingCalls().find((c) => c.contextId === s.id)!;
    h.reply(call.token, { status: 200, body: '{"allow":true,"reserved":101,"reservation_id":"r-1"}' });
    cutResponse(s, 'text/event-stream', [CUT]);
    expect(reports(h)).toEqual([{ ...CHARGED, reserved_tokens: 101, reservation_id: 'r-1' }]);
  });

  test("reset after message_delta but before message_stop: the stream did not complete, so at least the estimate; completed: the provider's counts", () => {
    const done = Buffer.concat([
      CUT,
      Buffer.from('event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":450}}\n\n'),
    ]);
    const h = newHost();
    cutResponse(checkedRequest(h, ALLOW), 'text/event-stream', [done]);
    // Cut before message_stop: the usage is final, but the stream did not complete: at least the estimate.
    expect(reports(h)).toEqual([{ ...CHARGED, completion_tokens: 500, total_tokens: 606 }]);
    const h2 = newHost();
    const s = checkedRequest(h2, ALLOW);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    s.sendResponseBody(Buffer.concat([done, Buffer.from('event: message_stop\ndata: {"type":"message_stop"}\n\n')]), true);
    s.end();
    expect(reports(h2)).toEqual([{ ratelimit_keys: ['regular-user'], prompt_tokens: 106, completion_tokens: 450, total_tokens: 556 }]);
  });

  test('a running total (DashScope, Gemini: usage in every event) cut mid-stream: at least what was delivered', () => {
    const ev = (text: string, out: number) =>
      `data: ${JSON.stringify({ choices: [{ delta: { content: text } }], usage: { prompt_tokens: 10, completion_tokens: out, total_tokens: 10 + out } })}\n\n`;
    const h = newHost();
    cutResponse(checkedRequest(h, ALLOW), 'text/event-stream', [Buffer.from(ev('a'.repeat(400), 1) + ev('b'.repeat(400), 2))]);
    expect(reports(h)).toEqual([{ ratelimit_keys: ['regular-user'], prompt_tokens: 10, completion_tokens: 200, total_tokens: 210, estimated: true }]);
  });
});

describe('4. the prompt estimate counts every billed string', () => {
  /** The prompt charged for `body` when the stream is cut before any usage. */
  function promptCharged(body: object | string, p?: string): number {
    const h = newHost();
    const s = withBody(h, body, p);
    cutResponse(s, 'text/event-stream', [Buffer.from('data: {"choices":[{"delta":{"content":""}}]}\n\n')]);
    const r = reports(h);
    expect(r).toHaveLength(1);
    return r[0].prompt_tokens;
  }
  const x = (n: number) => 'x'.repeat(n);

  test('tools[].function.description and tool_calls[].arguments (20,000 characters each), user message "hi"', () => {
    const body = {
      model: 'gpt-4o',
      stream: true,
      tools: [{ type: 'function', function: { name: 'lookup', description: x(20000), parameters: { type: 'object', properties: { q: { type: 'string' } } } } }],
      messages: [
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: x(20000) } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'ok' },
        { role: 'user', content: 'hi' },
      ],
    };
    // 40,000 + "lookup" twice + the schema's keys ("type", "properties", "q", "type": 19) + "ok" + "hi".
    expect(promptCharged(body)).toBe(Math.ceil((40000 + 12 + 19 + 2 + 2) / 4));
  });

  test('a property name in a tool schema is billed: it counts', () => {
    const body = {
      model: 'm',
      messages: [{ role: 'user', content: 'hi' }],
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { [x(8000)]: { type: 'string' } } } } }],
    };
    expect(promptCharged(body)).toBe(Math.ceil((2 + 1 + 4 + 10 + 8000 + 4) / 4));
  });

  test("key names of a tool call's input (Anthropic tool_use, Gemini functionCall args) are billed: they count", () => {
    const keys = Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`k${String(i).padStart(3, '0')}${x(16)}`, 1])); // 400 keys of 20 characters
    expect(
      promptCharged(
        {
          model: 'claude',
          max_tokens: 5,
          messages: [
            { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_1', name: 't', input: keys }] },
            { role: 'user', content: 'hi' },
          ],
        },
        '/v1/messages',
      ),
    ).toBe(Math.ceil((1 + 8000 + 2) / 4));
    expect(
      promptCharged({
        contents: [
          { role: 'model', parts: [{ functionCall: { name: 't', args: keys } }] },
          { role: 'user', parts: [{ text: 'hi' }] },
        ],
      }),
    ).toBe(Math.ceil((1 + 8000 + 2) / 4));
  });

  test('Anthropic system and tools, Responses instructions and input, Gemini systemInstruction and function declarations', () => {
    expect(
      promptCharged(
        {
          model: 'claude',
          system: x(4000),
          tools: [{ name: 't', description: x(4000), input_schema: { type: 'object' } }],
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 5,
        },
        '/v1/messages',
      ),
    ).toBe(Math.ceil((4000 + 1 + 4000 + 4 + 2) / 4)); // input_schema's key "type" counts
    expect(promptCharged({ model: 'gpt-4.1', instructions: x(4000), input: [{ type: 'function_call_output', call_id: 'c', output: x(4000) }] })).toBe(2000);
    expect(
      promptCharged({
        systemInstruction: { parts: [{ text: x(4000) }] },
        tools: [{ functionDeclarations: [{ name: 'f', description: x(3999) }] }],
        contents: [{ role: 'user', parts: [{ text: 'hi' }] }],
      }),
    ).toBe(Math.ceil(8002 / 4));
  });

  test('\\u escapes count as the characters they decode to: no smaller than the text itself', () => {
    const plain = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'A'.repeat(4000) }] });
    const escaped = plain.replace('A'.repeat(4000), '\\u0041'.repeat(4000));
    expect(promptCharged(escaped)).toBe(promptCharged(plain));
    expect(promptCharged(plain)).toBe(1000);
  });

  test('images and audio: 1,600 tokens each, whatever the encoding (data URL, base64 source, inlineData)', () => {
    expect(
      promptCharged({
        model: 'm',
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'hi' },
              { type: 'image_url', image_url: { url: 'data:image/png;base64,' + 'A'.repeat(100000) } },
            ],
          },
        ],
      }),
    ).toBe(1 + 1600);
    expect(
      promptCharged(
        {
          model: 'm',
          messages: [
            {
              role: 'user',
              content: [
                { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
                { type: 'image', source: { type: 'url', url: 'https://e/x.png' } },
              ],
            },
          ],
        },
        '/v1/messages',
      ),
    ).toBe(3200);
    expect(promptCharged({ contents: [{ role: 'user', parts: [{ inlineData: { mimeType: 'audio/wav', data: 'AAAA' } }] }] })).toBe(1600);
    expect(promptCharged({ model: 'm', messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }] })).toBe(
      1600,
    );
  });

  test('labels and settings are not text: model, role, ids, metadata do not count', () => {
    expect(promptCharged({ model: x(100), user: x(100), metadata: { a: x(4000) }, messages: [{ role: 'user', content: x(400) }] })).toBe(100);
    // OpenAI's output-audio settings are no input clip.
    expect(
      promptCharged({
        model: 'gpt-4o-audio-preview',
        modalities: ['text', 'audio'],
        audio: { voice: 'alloy', format: 'wav' },
        messages: [{ role: 'user', content: x(400) }],
      }),
    ).toBe(100);
  });
});

describe('5. a report is never lost for a field that is not a count', () => {
  test('{"model":""}: the report carries no model (the service refuses an empty one)', () => {
    const h = newHost();
    const s = withBody(h, { model: '', messages: [{ role: 'user', content: 'hi' }] });
    cutResponse(s, 'application/json', [
      Buffer.from('{"choices":[{"message":{"content":"hello"}}],"usage":{"prompt_tokens":5,"completion_tokens":596,"total_tokens":601}}'),
    ]);
    const r = reportCalls(h);
    expect(r).toHaveLength(1);
    expect(r[0]).not.toHaveProperty('model');
    expect(r[0].total_tokens).toBe(601);
  });

  test('a 400 to a report with a model: sent once more without it, with the same request_id; a second 400 drops it', () => {
    const h = newHost();
    const s = withBody(h, { model: 'some-model', messages: [{ role: 'user', content: 'hi' }] });
    cutResponse(s, 'application/json', [Buffer.from('{"usage":{"prompt_tokens":5,"completion_tokens":596,"total_tokens":601}}')]);
    const first = h.httpCalls.filter((c) => header(c.headers, ':path') === '/update_ratelimit_record');
    expect(first).toHaveLength(1);
    h.reply(first[0].token, { status: 400, body: '{"error":"model must be a non-empty string"}' });
    const all = reportCalls(h);
    expect(all).toHaveLength(2);
    expect(all[0].model).toBe('some-model');
    expect(all[1]).not.toHaveProperty('model');
    expect(all[1]).toEqual({ ...all[0], model: undefined, request_id: all[0].request_id });
    expect(h.metric('llm_ratelimit.reports_retried')).toBe(1);
    const second = h.httpCalls.filter((c) => header(c.headers, ':path') === '/update_ratelimit_record')[1];
    h.reply(second.token, { status: 400, body: '{}' });
    expect(reportCalls(h)).toHaveLength(2); // no loop
    expect(h.metric('llm_ratelimit.reports_dropped')).toBe(1);
  });
});
