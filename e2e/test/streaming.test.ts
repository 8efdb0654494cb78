/** Scenario 2: SSE streaming through Envoy: charged exactly the final usage, bytes unchanged, no buffering. */
import { startStack, Stack } from '../src/harness/stack';
import { chatStream } from '../src/harness/http';
import { withCharge } from '../src/harness/service';

const HOST = 'dashscope.aliyuncs.com';
const RULES = [{ rate_limit_key_regex: '^streamer', redis_expired_seconds: 600, fill_interval_second: 60, tokens_per_fill: 100, max_tokens: 10000 }];

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ rules: RULES });
});
afterAll(() => stack?.stop());

test('a stream is charged its final usage chunk, and the client gets every event unchanged', async () => {
  const { result: r, spent } = await withCharge(stack.service.port, 'streamer-a', 10000, () =>
    chatStream(stack.envoy.port, HOST, { 'user-type': 'streamer-a', 'x-mock-usage': '17,230', 'x-mock-chunks': '8' }),
  );
  expect(r.status).toBe(200);
  expect(spent).toBe(247);
  expect(r.headers['content-type']).toContain('text/event-stream');
  const sent = stack.mock!.requests[stack.mock!.requests.length - 1].sent;
  expect(r.body).toBe(sent);
  expect(r.body.trimEnd().endsWith('data: [DONE]')).toBe(true);
});

test('the first event reaches the client before the upstream has finished (no buffering)', async () => {
  const { result: r, spent } = await withCharge(stack.service.port, 'streamer-b', 10000, () =>
    chatStream(stack.envoy.port, HOST, { 'user-type': 'streamer-b', 'x-mock-chunks': '5', 'x-mock-chunk-delay-ms': '300' }),
  );
  expect(r.status).toBe(200);
  expect(spent).toBe(105);
  const upstreamEnded = stack.mock!.requests[stack.mock!.requests.length - 1].ended!;
  expect(upstreamEnded).toBeGreaterThan(0);
  // Five events 300 ms apart: the first must arrive long before the last was written.
  expect(upstreamEnded - r.firstChunkAt).toBeGreaterThan(900);
});

test('a stream requested without include_usage is still charged: the plugin asks the upstream for usage', async () => {
  const { result: r, spent } = await withCharge(stack.service.port, 'streamer-c', 10000, () =>
    chatStream(stack.envoy.port, HOST, { 'user-type': 'streamer-c' }, { messages: [{ role: 'user', content: 'hi' }], stream: true }),
  );
  expect(r.status).toBe(200);
  expect(r.body).toContain('data: [DONE]');
  expect(JSON.parse(stack.mock!.requests[stack.mock!.requests.length - 1].body).stream_options).toEqual({ include_usage: true });
  expect(spent).toBe(105);
});

test('a client that disconnects mid-stream does not crash anything, and Envoy keeps serving', async () => {
  const r = await chatStream(stack.envoy.port, HOST, { 'user-type': 'streamer-d', 'x-mock-chunks': '10', 'x-mock-chunk-delay-ms': '100' }, undefined, 50);
  expect(r.body.length).toBeGreaterThan(0);
  await new Promise((res) => setTimeout(res, 1200)); // the upstream runs to its end meanwhile
  const after = await withCharge(stack.service.port, 'streamer-d2', 10000, () => chatStream(stack.envoy.port, HOST, { 'user-type': 'streamer-d2' }));
  expect(after.result.status).toBe(200);
  expect(after.spent).toBe(105);
  const stats = await stack.envoy.stats('wasm');
  // No Wasm VM failure: Envoy counts a crashed plugin under wasm.*.vm.*.
  for (const [k, v] of Object.entries(stats)) if (/fail|crash/.test(k)) expect([k, v]).toEqual([k, 0]);
});
