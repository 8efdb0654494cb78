/**
 * Envoy-level scoping (docs: docs/operations.md, "Keep other traffic out of the plugin"): with the
 * Wasm filter disabled on the catch-all virtual host, requests for other hosts never enter the VM,
 * while requests for the LLM host are limited as usual.
 */
import { startStack, Stack } from '../src/harness/stack';
import { request } from '../src/harness/http';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';
import { waitFor } from '../src/harness/process';

const RULES = [{ rate_limit_key_regex: '^scoped-', redis_expired_seconds: 600, fill_interval_second: 60, tokens_per_fill: 1, max_tokens: 100 }];
// No `matches`: the plugin itself would limit every request it sees, and it denies requests
// without the key header (onMissingKey: deny). So any request that passes without the header
// was kept out of the plugin by Envoy.
const PLUGIN_CONFIG = {
  rateLimitKeys: ['scoped-{{request.headers.x-user}}'],
  rateLimitService: { service: RLS_SERVICE, port: RLS_PORT },
};

let stack: Stack;
const checks = async () =>
  (await stack.envoy.stats(`outbound|${RLS_PORT}||${RLS_SERVICE}`))[`cluster.outbound|${RLS_PORT}||${RLS_SERVICE}.upstream_rq_total`] ?? 0;
const post = (host: string, headers: Record<string, string> = {}) =>
  request(stack.envoy.port, {
    method: 'POST',
    path: '/v1/chat/completions',
    headers: { host, 'content-type': 'application/json', ...headers },
    body: '{"messages":[]}',
  });

beforeAll(async () => {
  stack = await startStack({ rules: RULES, pluginConfig: PLUGIN_CONFIG, pluginOnlyForHosts: ['llm.example'] });
});
afterAll(() => stack?.stop());

test('requests for other hosts skip the plugin: no key needed, no call to the service', async () => {
  const before = await checks();
  for (const host of ['other.example', 'llm.example.org', 'api.other.example:8080']) {
    const r = await post(host);
    expect(r.status).toBe(200);
  }
  expect(await checks()).toBe(before);
});

test('requests for the scoped host (with or without a port) go through the plugin', async () => {
  expect((await post('llm.example')).status).toBe(403); // the key header is missing: denied by the plugin
  const before = await checks();
  expect((await post('llm.example', { 'x-user': 'a' })).status).toBe(200);
  await waitFor('the usage report', async () => ((await checks()) >= before + 2 ? true : undefined)); // check + report
  expect((await post('llm.example:8443', { 'x-user': 'a' })).status).toBe(429); // 100 tokens, 105 charged: exhausted
});
