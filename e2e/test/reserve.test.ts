/**
 * Reservations, through the real Envoy, the real plugin and the real service.
 * With check-then-charge, every request that arrives while the balance is above zero is
 * admitted; with `reserve` on, the plugin estimates each request from its body and the
 * service deducts the estimate atomically at the check, so a burst cannot overspend.
 */
import { startStack, Stack, StackOptions } from '../src/harness/stack';
import { chat, chatStream, request, HttpResult, errorMessage } from '../src/harness/http';
import { bucketOf, withCharge } from '../src/harness/service';
import { waitFor } from '../src/harness/process';
import { readJson, PLUGIN_CONFIG_FILE } from '../src/harness/paths';
import { MockLlm, SEED_USAGE } from '../src/mock-llm';

const HOST = 'dashscope.aliyuncs.com';
const CAPACITY = 200;
// Practically no refill during a test: the balance only moves by checks and reports.
const RULES = [
  // max_debt: room below zero to show the overspend (the default, 10 × max_tokens, would stop it at -2000).
  { rate_limit_key_regex: '^burst', redis_expired_seconds: 7200, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: CAPACITY, max_debt: 1000000 },
  { rate_limit_key_regex: '^roomy', redis_expired_seconds: 7200, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: 1000000 },
];
const SEED_PLUGIN_CONFIG = readJson<Record<string, unknown>>(PLUGIN_CONFIG_FILE);
const PROMPT = '介绍一下你自己'; // 7 CJK characters: estimated at 7 tokens
const MAX_TOKENS = 100;
const ESTIMATE = 7 + MAX_TOKENS; // what the plugin reserves per request
const ACTUAL = SEED_USAGE.total_tokens; // what the mock LLM reports (105)
const CONCURRENCY = 64;

/**
 * In reserve mode Envoy forwards the request headers before the body (the plugin only gets
 * the body after letting the headers continue), so a request denied at the end of its body
 * has an upstream request that Envoy resets: the mock LLM records it under `aborted` and
 * never answers it, as a real API would drop it.
 */
async function startReserveStack(o: StackOptions): Promise<{ stack: Stack; up: { mock: MockLlm }; stop(): Promise<void> }> {
  const stack = await startStack(o);
  return { stack, up: { mock: stack.mock! }, stop: () => stack.stop() };
}

const balance = async (stack: Stack, key: string) => (await bucketOf(stack.service.port, key)).balance;

/** Waits until the key's balance reaches `expected` (reports are asynchronous); returns the last balance seen. */
async function settle(stack: Stack, key: string, expected: number, timeoutMs = 10000): Promise<number | null> {
  try {
    return await waitFor(
      `balance of ${key} = ${expected}`,
      async () => {
        const b = await balance(stack, key);
        return b === expected ? { b } : undefined;
      },
      timeoutMs,
      50,
    ).then((x) => x.b);
  } catch {
    return balance(stack, key);
  }
}

/** 64 identical chats at once on one fresh key; the upstream answers after 300 ms so every check precedes every report. */
async function burst(stack: Stack, key: string): Promise<{ results: HttpResult[]; admitted: number; limited: number }> {
  const results = await Promise.all(
    Array.from({ length: CONCURRENCY }, () =>
      chat(stack.envoy.port, HOST, { 'user-type': key, 'x-mock-delay-ms': '300' }, { messages: [{ role: 'user', content: PROMPT }], max_tokens: MAX_TOKENS }),
    ),
  );
  return {
    results,
    admitted: results.filter((r) => r.status === 200).length,
    limited: results.filter((r) => r.status === 429).length,
  };
}

describe('64 concurrent requests on a fresh 200-token bucket', () => {
  test('reserve off (check-then-charge): all are admitted and the bucket is overspent many times over', async () => {
    const { stack, stop } = await startReserveStack({ rules: RULES });
    try {
      const { admitted, limited } = await burst(stack, 'burst-off');
      expect(admitted + limited).toBe(CONCURRENCY);
      expect(admitted).toBeGreaterThan(CONCURRENCY / 2);
      const after = await settle(stack, 'burst-off', CAPACITY - admitted * ACTUAL);
      expect(after).toBe(CAPACITY - admitted * ACTUAL);
      expect(CAPACITY - after!).toBeGreaterThan(10 * CAPACITY); // spent more than ten buckets
    } finally {
      await stop();
    }
  });

  test('reserve on: admissions stop once the reservations use up the bucket; overspend at most one estimation error', async () => {
    const { stack, stop } = await startReserveStack({ rules: RULES, pluginConfig: { ...SEED_PLUGIN_CONFIG, reserve: { enabled: true } } });
    try {
      const { results, admitted, limited } = await burst(stack, 'burst-on');
      expect(admitted + limited).toBe(CONCURRENCY);
      for (const r of results.filter((x) => x.status === 429)) expect(errorMessage(r.body)).toMatch(/^burst-on is being rate-limited /);
      expect(admitted).toBeGreaterThanOrEqual(1);
      // Reservations of 107 against 200 tokens: the first is admitted, the rest find 93 < 107.
      expect(admitted).toBe(1);
      // Once every report is in, the bucket holds exactly capacity - actual usage (reservations refunded to the actual).
      const after = await settle(stack, 'burst-on', CAPACITY - admitted * ACTUAL);
      expect(after).toBe(CAPACITY - admitted * ACTUAL);
      const spent = CAPACITY - after!;
      expect(spent - CAPACITY).toBeLessThanOrEqual(Math.abs(ESTIMATE - ACTUAL));
    } finally {
      await stop();
    }
  });
});

describe('reserve on: the request path through Envoy', () => {
  let stack: Stack;
  let up: { mock: MockLlm };
  let stop: () => Promise<void>;
  beforeAll(async () => {
    ({ stack, up, stop } = await startReserveStack({
      rules: RULES,
      pluginConfig: { ...SEED_PLUGIN_CONFIG, reserve: { enabled: true, includeStreamUsage: true, maxBodyBytes: 65536 } },
    }));
  });
  afterAll(() => stop?.());

  const lastUpstream = () => up.mock.requests[up.mock.requests.length - 1];

  test.each([
    ['a 30 KB body (read whole, estimated from its text)', 30000],
    ['a 300 KB body (over maxBodyBytes: estimated from its length, held with flow control)', 300000],
  ])('%s reaches the upstream byte for byte and is charged its usage', async (_n, size) => {
    const key = `roomy-size-${size}`;
    const payload = JSON.stringify({ model: 'qwen-plus', messages: [{ role: 'user', content: 'x'.repeat(size) }], max_tokens: 10 });
    const { result: r, spent } = await withCharge(stack.service.port, key, 1000000, () =>
      request(stack.envoy.port, {
        method: 'POST',
        path: '/v1/chat/completions',
        body: payload,
        headers: { host: HOST, 'user-type': key, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) },
      }),
    );
    expect(r.status).toBe(200);
    expect(lastUpstream().body).toBe(payload);
    const settled = await settle(stack, key, 1000000 - ACTUAL);
    expect(settled).toBe(1000000 - ACTUAL);
    expect(spent).toBeGreaterThan(0);
  });

  test('includeStreamUsage: a stream without stream_options gets the usage chunk, and is charged exactly that usage', async () => {
    const { result: r } = await withCharge(stack.service.port, 'roomy-stream', 1000000, () =>
      chatStream(
        stack.envoy.port,
        HOST,
        { 'user-type': 'roomy-stream', 'x-mock-usage': '17,230' },
        { messages: [{ role: 'user', content: 'hi' }], stream: true },
      ),
    );
    expect(r.status).toBe(200);
    expect(JSON.parse(lastUpstream().body)).toEqual({ messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } });
    expect(lastUpstream().headers['content-length']).toBeUndefined();
    expect(r.body).toContain('"usage":{"prompt_tokens":17,"completion_tokens":230,"total_tokens":247}');
    expect(await settle(stack, 'roomy-stream', 1000000 - 247)).toBe(1000000 - 247);
  });

  test('a stream that never sends usage is charged an estimate: the prompt plus the streamed text', async () => {
    const r = await chatStream(stack.envoy.port, HOST, { 'user-type': 'roomy-nousage', 'x-mock-omit-usage': '1' });
    expect(r.status).toBe(200);
    const text = r.body
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)).choices?.[0]?.delta?.content ?? '')
      .join('');
    expect(text.length).toBeGreaterThan(10);
    // Every character of the mock's answer is CJK (ideographs and CJK punctuation): one token each.
    const expected = 1000000 - (7 + [...text].length);
    expect(await settle(stack, 'roomy-nousage', expected)).toBe(expected);
  });

  test('an upstream error gives the whole reservation back', async () => {
    const r = await chat(
      stack.envoy.port,
      HOST,
      { 'user-type': 'roomy-error', 'x-mock-status': '500' },
      { messages: [{ role: 'user', content: PROMPT }], max_tokens: 50 },
    );
    expect(r.status).toBe(500);
    // Reserved at the check, refunded by the report (asynchronous); a service without reservations charges nothing.
    expect((await settle(stack, 'roomy-error', 1000000, 3000)) ?? 1000000).toBe(1000000);
  });

  test('a denied request is answered after its body, never reaches the LLM, and Envoy keeps serving', async () => {
    // One answer that costs more than the bucket holds: the balance ends below zero either way.
    const key = 'burst-denied';
    const body = { messages: [{ role: 'user', content: PROMPT }], max_tokens: 50 };
    const first = await chat(stack.envoy.port, HOST, { 'user-type': key, 'x-mock-usage': '300,0' }, body);
    expect(first.status).toBe(200);
    expect(await settle(stack, key, CAPACITY - 300)).toBe(CAPACITY - 300);
    const before = up.mock.requests.length;
    const second = await chat(stack.envoy.port, HOST, { 'user-type': key }, body);
    expect(second.status).toBe(429);
    expect(errorMessage(second.body)).toMatch(new RegExp(`^${key} is being rate-limited`));
    await new Promise((res) => setTimeout(res, 100));
    expect(up.mock.requests.length).toBe(before); // the body never went upstream
    // Its headers may have (they continue before the body in reserve mode): reset, with no body.
    for (const a of up.mock.aborted) expect(a.body).toBe('');
    expect(await balance(stack, key)).toBe(CAPACITY - 300); // nothing charged, nothing reserved
    const third = await chat(stack.envoy.port, HOST, { 'user-type': 'roomy-after-deny' }, body);
    expect(third.status).toBe(200);
    const stats = await stack.envoy.stats('wasm');
    for (const [k, v] of Object.entries(stats)) if (/fail|crash/.test(k)) expect([k, v]).toEqual([k, 0]);
  });
});
