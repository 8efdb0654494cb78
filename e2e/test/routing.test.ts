/** Scenarios 3, 4 and 8: which requests are checked, several keys, upstream errors. */
import { startStack, Stack } from '../src/harness/stack';
import { request, errorMessage } from '../src/harness/http';
import { bucketOf, withCharge } from '../src/harness/service';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';
import { waitFor } from '../src/harness/process';

const RULES = [
  { rate_limit_key_regex: '^tenant-', redis_expired_seconds: 600, fill_interval_second: 60, tokens_per_fill: 10, max_tokens: 300 },
  { rate_limit_key_regex: '^(gold|bronze)$', redis_expired_seconds: 600, fill_interval_second: 60, tokens_per_fill: 10, max_tokens: 1000 },
];
const PLUGIN_CONFIG = {
  matches: [{ host: { exact: 'dashscope.aliyuncs.com' }, path: { prefix: '/compatible-mode/' } }, { host: { suffix: '.llm.example' } }],
  rateLimitKeys: ['{{request.headers.user-type}}', 'tenant-{{request.headers.x-tenant}}'],
  rateLimitService: { service: RLS_SERVICE, port: RLS_PORT },
};

let stack: Stack;
const checks = async () =>
  (await stack.envoy.stats(`outbound|${RLS_PORT}||${RLS_SERVICE}`))[`cluster.outbound|${RLS_PORT}||${RLS_SERVICE}.upstream_rq_total`] ?? 0;
const post = (host: string, path: string, headers: Record<string, string>) =>
  request(stack.envoy.port, { method: 'POST', path, headers: { host, 'content-type': 'application/json', ...headers }, body: '{"messages":[]}' });

beforeAll(async () => {
  stack = await startStack({ rules: RULES, pluginConfig: PLUGIN_CONFIG });
});
afterAll(() => stack?.stop());

test('unmatched hosts and paths pass untouched and never call the service', async () => {
  const before = await checks();
  const upstream = stack.mock!.requests.length;
  for (const [host, path] of [
    ['dashscope.aliyuncs.com', '/'],
    ['dashscope.aliyuncs.com', '/api/v1/x'],
    ['other.example', '/compatible-mode/v1/chat/completions'],
    ['llm.example.org', '/'],
  ]) {
    const r = await post(host, path, { 'user-type': 'gold', 'x-tenant': 'acme', 'accept-encoding': 'gzip' });
    expect(r.status).toBe(200);
    // Untouched: the upstream saw the client's own headers.
    expect(stack.mock!.requests[stack.mock!.requests.length - 1].headers['accept-encoding']).toBe('gzip');
  }
  expect(stack.mock!.requests.length).toBe(upstream + 4);
  expect(await checks()).toBe(before);
});

test('matched requests (host + path prefix, host suffix with a port) are checked and charged', async () => {
  const before = await checks();
  const r1 = await withCharge(stack.service.port, 'tenant-m1', 300, () =>
    post('dashscope.aliyuncs.com', '/compatible-mode/v1/chat/completions', { 'user-type': 'gold', 'x-tenant': 'm1' }),
  );
  expect(r1.result.status).toBe(200);
  expect(r1.spent).toBe(105);
  const r2 = await withCharge(stack.service.port, 'tenant-m1', 300, () =>
    post('API.LLM.EXAMPLE:8443', '/v1/chat/completions', { 'user-type': 'gold', 'x-tenant': 'm1' }),
  );
  expect(r2.result.status).toBe(200);
  expect(r2.after).toBe(300 - 210);
  expect(await checks()).toBeGreaterThanOrEqual(before + 2);
});

test('with two keys, the request is limited by whichever is exhausted first', async () => {
  // The tenant (300) runs out long before the user-type (1000): its key decides.
  let status = 200;
  let n = 0;
  let body = '';
  while (status === 200 && n < 10) {
    n++;
    const r = await post('x.llm.example', '/v1/chat/completions', { 'user-type': 'bronze', 'x-tenant': 'acme' });
    status = r.status;
    body = r.body;
    // Wait for the asynchronous charge (the tenant's bucket is the one that moves last).
    if (status === 200)
      await waitFor('the charge', async () => ((await bucketOf(stack.service.port, 'tenant-acme')).balance === 300 - 105 * n ? true : undefined), 5000);
  }
  expect(status).toBe(429);
  expect(errorMessage(body)).toMatch(/^tenant-acme is being rate-limited /);
  expect(n).toBe(4); // 300 → 195 → 90 → -15 → refused
  // Both keys were charged for every answered request.
  expect((await bucketOf(stack.service.port, 'bronze')).balance).toBe(1000 - 3 * 105);
  // Another tenant with the same user-type is still served.
  const other = await post('x.llm.example', '/v1/chat/completions', { 'user-type': 'bronze', 'x-tenant': 'globex' });
  expect(other.status).toBe(200);
});

test('the plugin asks the upstream for an uncompressed answer on matched requests', async () => {
  const r = await post('a.llm.example', '/', { 'user-type': 'gold', 'x-tenant': 'gz', 'accept-encoding': 'gzip, br' });
  expect(r.status).toBe(200);
  expect(stack.mock!.requests[stack.mock!.requests.length - 1].headers['accept-encoding']).toBeUndefined();
});

test.each([['500'], ['429'], ['400']])('an upstream %s without usage reaches the client and charges nothing', async (code) => {
  const key = `e${code}`;
  const r = await post('b.llm.example', '/', { 'user-type': 'gold', 'x-tenant': key, 'x-mock-status': code });
  expect(r.status).toBe(Number(code));
  expect(JSON.parse(r.body).error.message).toBe(`mock error ${code}`);
  // A charge would land within milliseconds; then prove one real charge does land on the same key.
  await new Promise((res) => setTimeout(res, 300));
  expect((await bucketOf(stack.service.port, `tenant-${key}`)).balance ?? 300).toBe(300);
  const ok = await withCharge(stack.service.port, `tenant-${key}`, 300, () => post('b.llm.example', '/', { 'user-type': 'gold', 'x-tenant': key }));
  expect(ok.result.status).toBe(200);
  expect(ok.after).toBe(300 - 105);
});
