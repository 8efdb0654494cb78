/** Scenario 12: the official `openai` npm client through Envoy, streaming and not, and a clean 429. */
import OpenAI from 'openai';
import { startStack, Stack } from '../src/harness/stack';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({
    rules: [{ rate_limit_key_regex: '^sdk-', redis_expired_seconds: 600, fill_interval_second: 60, tokens_per_fill: 10, max_tokens: 300 }],
    // fetch cannot set Host, so match the address the client really uses (the port is ignored).
    pluginConfig: {
      matches: [{ host: { exact: '127.0.0.1' } }],
      rateLimitKeys: ['{{request.headers.user-type}}'],
      rateLimitService: { service: RLS_SERVICE, port: RLS_PORT },
    },
  });
});
afterAll(() => stack?.stop());

const client = (user: string) =>
  new OpenAI({ apiKey: 'sk-test', baseURL: `http://127.0.0.1:${stack.envoy.port}/compatible-mode/v1`, defaultHeaders: { 'user-type': user }, maxRetries: 0 });

test('non-streaming and streaming completions work unchanged; a spent key gets a RateLimitError (429)', async () => {
  const ai = client('sdk-user');
  const c = await ai.chat.completions.create({ model: 'qwen-plus', messages: [{ role: 'user', content: 'hi' }] });
  expect(c.usage).toEqual({ prompt_tokens: 10, completion_tokens: 95, total_tokens: 105 });
  expect(c.choices[0].message.content).toBeTruthy();

  const stream = await ai.chat.completions.create({
    model: 'qwen-plus',
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage: unknown;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  expect(text.length).toBeGreaterThan(10);
  expect(usage).toEqual({ prompt_tokens: 10, completion_tokens: 95, total_tokens: 105 });

  // 300 - 2 × 105 = 90 left: one more answer, then refused.
  const third = async () => ai.chat.completions.create({ model: 'qwen-plus', messages: [{ role: 'user', content: 'hi' }] });
  let err: unknown;
  for (let i = 0; i < 5 && !err; i++) {
    try {
      await third();
      await new Promise((r) => setTimeout(r, 200)); // let the asynchronous report land
    } catch (e) {
      err = e;
    }
  }
  expect(err).toBeInstanceOf(OpenAI.RateLimitError);
  expect((err as InstanceType<typeof OpenAI.RateLimitError>).status).toBe(429);
});

test('the RateLimitError carries our message (the key, the limit, when it refills) in the SDK error object', async () => {
  const ai = client('sdk-msg');
  await ai.chat.completions.create({ model: 'qwen-plus', messages: [{ role: 'user', content: 'hi' }] });
  let err: any;
  for (let i = 0; i < 10 && !err; i++) {
    try {
      await ai.chat.completions.create({ model: 'qwen-plus', messages: [{ role: 'user', content: 'hi' }] });
      await new Promise((r) => setTimeout(r, 200));
    } catch (e) {
      err = e;
    }
  }
  expect(err).toBeInstanceOf(OpenAI.RateLimitError);
  expect(err.error).toMatchObject({ type: 'tokens', code: 'rate_limit_exceeded' });
  expect(err.error.message).toMatch(/^sdk-msg is being rate-limited \(limit 300 tokens; enough tokens again in \d+ s\)$/);
  expect(err.message).toContain('sdk-msg is being rate-limited');
});

test('a long wait is not slept through: with retries on, the SDK gets x-should-retry: false and fails at once', async () => {
  // A slow rule: after one large answer the key waits far longer than noRetryAboveSeconds (30 s).
  const ai = new OpenAI({
    apiKey: 'sk-test',
    baseURL: `http://127.0.0.1:${stack.envoy.port}/compatible-mode/v1`,
    defaultHeaders: { 'user-type': 'sdk-slow', 'x-mock-usage': '10,2000' },
    maxRetries: 2,
  });
  await ai.chat.completions.create({ model: 'qwen-plus', messages: [{ role: 'user', content: 'hi' }] });
  await new Promise((r) => setTimeout(r, 300)); // the report lands: 300 - 2010 = -1710, ~171 fills of 60 s away
  const t0 = Date.now();
  let err: any;
  try {
    await ai.chat.completions.create({ model: 'qwen-plus', messages: [{ role: 'user', content: 'hi' }] });
  } catch (e) {
    err = e;
  }
  const ms = Date.now() - t0;
  expect(err).toBeInstanceOf(OpenAI.RateLimitError);
  expect(Number(err.headers.get('retry-after'))).toBeGreaterThan(30);
  expect(err.headers.get('x-should-retry')).toBe('false');
  expect(ms).toBeLessThan(2000); // no retry-after sleep, no retries
  expect(stack.mock!.requests.filter((r) => r.headers['user-type'] === 'sdk-slow')).toHaveLength(1);
});
