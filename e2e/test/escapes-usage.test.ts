/**
 * No way around the limit, round 2 (issue 23, points 1, 4 and 5): ways a client got tokens
 * without being charged for them, tried through the real Envoy with the real plugin, the real
 * service and the mock LLM. Each charged less than the answer cost before the plugin closed it.
 */
import * as http from 'http';
import { startStack, Stack } from '../src/harness/stack';
import { chat } from '../src/harness/http';
import { bucketOf, withCharge } from '../src/harness/service';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';
import { waitFor } from '../src/harness/process';

const HOST = 'dashscope.aliyuncs.com';
const CAPACITY = 1000000;
const RULES = [{ rate_limit_key_regex: '^free', redis_expired_seconds: 7200, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: CAPACITY }];
const config = (extra: Record<string, unknown> = {}) => ({
  matches: [{ host: { exact: HOST } }],
  rateLimitKeys: ['{{request.headers.user-type}}'],
  rateLimitService: { service: RLS_SERVICE, port: RLS_PORT },
  ...extra,
});

interface Cut {
  status: number;
  /** The SSE events the client received before it hung up, parsed. */
  events: Record<string, any>[];
}

/**
 * A streaming POST that the client resets (destroys its socket) as soon as `resetAt` says so
 * for the events received so far: an attacker who hangs up before the usage arrives.
 */
function streamAndReset(
  port: number,
  path: string,
  headers: Record<string, string>,
  body: object,
  resetAt: (events: Record<string, any>[]) => boolean,
): Promise<Cut> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path,
        agent: false,
        headers: { host: HOST, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), ...headers },
      },
      (res) => {
        let buf = '';
        const events: Record<string, any>[] = [];
        let done = false;
        const finish = () => {
          if (!done) {
            done = true;
            resolve({ status: res.statusCode ?? 0, events });
          }
        };
        res.on('data', (c: Buffer) => {
          buf += c.toString('utf8');
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = ev.split('\n').find((l) => l.startsWith('data: {'));
            if (data) events.push(JSON.parse(data.slice(6)));
          }
          if (!done && resetAt(events)) {
            req.destroy();
            finish();
          }
        });
        res.on('end', finish);
        res.on('error', () => undefined);
      },
    );
    req.on('error', (e) => (e.message.includes('socket hang up') || (e as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(e)));
    req.end(payload);
  });
}

/** The key's spending once the plugin's report has been applied: the balance, read until it holds still. */
async function settledSpent(stack: Stack, key: string, reportsBefore: number): Promise<number> {
  await waitFor('the usage report', async () => ((await reportsSent(stack)) > reportsBefore ? true : undefined), 5000);
  let last = NaN;
  return waitFor(
    `a settled balance on ${key}`,
    async () => {
      await new Promise((r) => setTimeout(r, 250));
      const b = (await bucketOf(stack.service.port, key)).balance ?? CAPACITY;
      if (b === last) return CAPACITY - b;
      last = b;
      return undefined;
    },
    5000,
  );
}

async function reportsSent(stack: Stack): Promise<number> {
  return (await stack.envoy.stats('reports_sent'))['wasmcustom.llm_ratelimit.reports_sent'] ?? 0;
}

/** Anthropic: the client resets as the last content_block_delta arrives, before message_delta. */
async function anthropicCut(stack: Stack, key: string): Promise<{ spent: number; delivered: number }> {
  const before = await reportsSent(stack);
  const r = await streamAndReset(
    stack.envoy.port,
    '/v1/messages',
    { 'user-type': key, 'x-mock-usage': '106,450', 'x-mock-answer-chars': '2000', 'x-mock-chunks': '4', 'x-mock-pause-before-usage-ms': '1500' },
    { model: 'claude-sonnet-4-5', max_tokens: 1024, stream: true, messages: [{ role: 'user', content: 'Tell me about foxes.' }] },
    (evs) => evs.filter((e) => e.type === 'content_block_delta').length === 4,
  );
  expect(r.status).toBe(200);
  expect(r.events[0].message.usage).toMatchObject({ input_tokens: 106, output_tokens: 1 }); // the placeholder
  expect(r.events.some((e) => e.type === 'message_delta')).toBe(false);
  const delivered = r.events
    .filter((e) => e.type === 'content_block_delta')
    .map((e) => e.delta.text)
    .join('').length;
  return { spent: await settledSpent(stack, key, before), delivered };
}

describe("1. an Anthropic stream cut before message_delta is charged what it delivered, not message_start's placeholder", () => {
  let stack: Stack;
  let reserving: Stack;
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config() });
    reserving = await startStack({ rules: RULES, pluginConfig: config({ reserve: { enabled: true } }) });
  });
  afterAll(async () => {
    await stack?.stop();
    await reserving?.stop();
  });

  test('2,000 characters delivered: 106 + 500, not 106 + 1', async () => {
    const { spent, delivered } = await anthropicCut(stack, 'free-anthropic-1');
    expect(delivered).toBe(2000);
    expect(spent).toBe(106 + 500);
  });

  test('with reservations: the same charge', async () => {
    const { spent, delivered } = await anthropicCut(reserving, 'free-anthropic-2');
    expect(delivered).toBe(2000);
    expect(spent).toBe(106 + 500);
  });

  test("a stream that completes is charged its final usage (message_delta's output_tokens)", async () => {
    const { result, spent } = await withCharge(
      stack.service.port,
      'free-anthropic-3',
      CAPACITY,
      () =>
        new Promise<number>((resolve, reject) => {
          const payload = JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 1024, stream: true, messages: [{ role: 'user', content: 'hi' }] });
          const req = http.request(
            {
              host: '127.0.0.1',
              port: stack.envoy.port,
              method: 'POST',
              path: '/v1/messages',
              agent: false,
              headers: {
                host: HOST,
                'user-type': 'free-anthropic-3',
                'x-mock-usage': '106,450',
                'x-mock-answer-chars': '2000',
                'content-type': 'application/json',
                'content-length': String(payload.length),
              },
            },
            (res) => {
              res.resume();
              res.on('end', () => resolve(res.statusCode ?? 0));
            },
          );
          req.on('error', reject);
          req.end(payload);
        }),
    );
    expect(result).toBe(200);
    expect(spent).toBe(106 + 450);
  });
});

describe('4. the prompt estimate counts the text the provider bills', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config() });
  });
  afterAll(() => stack?.stop());

  test('20,000 characters of tool description and 20,000 of tool-call arguments, user "hi", cut before the usage chunk: ~10,000 charged', async () => {
    const words = (n: number) => 'lorem ipsum dolor sit amet '.repeat(Math.ceil(n / 27)).slice(0, n);
    const body = {
      model: 'gpt-4o',
      stream: true,
      tools: [
        { type: 'function', function: { name: 'lookup', description: words(20000), parameters: { type: 'object', properties: { q: { type: 'string' } } } } },
      ],
      messages: [
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: words(20000) } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'ok' },
        { role: 'user', content: 'hi' },
      ],
    };
    const before = await reportsSent(stack);
    const r = await streamAndReset(
      stack.envoy.port,
      '/v1/chat/completions',
      { 'user-type': 'free-tools', 'x-mock-pause-before-usage-ms': '1500' },
      body,
      (evs) => evs.some((e) => e.choices?.[0]?.finish_reason === 'stop'),
    );
    expect(r.status).toBe(200);
    expect(r.events.some((e) => e.usage)).toBe(false); // hung up before the usage chunk
    const delivered = [...r.events.map((e) => e.choices?.[0]?.delta?.content ?? '').join('')].length; // CJK: a token each
    const spent = await settledSpent(stack, 'free-tools', before);
    // The prompt: 40,000 characters of tool text, the names, the schema's keys, "ok", "hi": 10,009 tokens.
    expect(spent).toBe(10009 + delivered);
  });
});

describe('5. a usage report is never lost for a field that is not a count', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config() });
  });
  afterAll(() => stack?.stop());

  test('{"model":""} (accepted by some self-hosted servers): the 601 tokens are charged', async () => {
    const { result, spent } = await withCharge(stack.service.port, 'free-model', CAPACITY, () =>
      chat(stack.envoy.port, HOST, { 'user-type': 'free-model', 'x-mock-usage': '5,596' }, { model: '', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(result.status).toBe(200);
    expect(JSON.parse(result.body).model).toBe('');
    expect(spent).toBe(601);
  });
});
