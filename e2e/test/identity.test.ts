/**
 * Keys from who the caller really is and which model it calls, through the real Envoy:
 * Envoy's jwt_authn verifies the caller's token (a key pair made here, the JWKS inline) and
 * leaves its payload in dynamic metadata; the plugin keys on the `sub` claim and on the
 * request body's `model`.
 */
import { startStack, Stack } from '../src/harness/stack';
import { request, chatStream, HttpResult } from '../src/harness/http';
import { bucketOf, withCharge } from '../src/harness/service';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';
import { newSigner, Signer } from '../src/harness/jwt';

const RULES = [{ rate_limit_key_regex: '^(user|model)-', redis_expired_seconds: 3600, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: 1000 }];
const SERVICE = { service: RLS_SERVICE, port: RLS_PORT };

let signer: Signer;
let bySub: Stack;
let byModel: Stack;
beforeAll(async () => {
  signer = newSigner();
  const common = { rules: RULES, httpFilters: [signer.filter()] };
  bySub = await startStack({ ...common, pluginConfig: { rateLimitKeys: ['user-{{jwt.sub}}'], rateLimitService: SERVICE } });
  // The host too: what the check waits for (the body) and what only the headers say, in one key.
  byModel = await startStack({
    ...common,
    pluginConfig: { rateLimitKeys: ['model-{{jwt.sub}}-{{request.body.model}}@{{request.host}}'], rateLimitService: SERVICE },
  });
});
afterAll(async () => {
  await bySub?.stop();
  await byModel?.stop();
});

function chat(
  stack: Stack,
  token: string,
  body: object = { model: 'qwen-plus', messages: [{ role: 'user', content: 'hi' }] },
  headers: Record<string, string> = {},
): Promise<HttpResult> {
  return request(stack.envoy.port, {
    method: 'POST',
    path: '/v1/chat/completions',
    body: JSON.stringify(body),
    headers: { host: 'api.example', 'content-type': 'application/json', authorization: `Bearer ${token}`, ...headers },
  });
}

test('the same user with a valid token is limited by its sub, whatever headers it adds', async () => {
  const alice = signer.sign({ sub: 'alice' });
  const first = await withCharge(bySub.service.port, 'user-alice', 1000, () => chat(bySub, alice, undefined, { 'x-mock-usage': '10,2000' }));
  expect(first.result.status).toBe(200);
  expect(first.after).toBe(1000 - 2010);
  for (const extra of <Record<string, string>[]>[{}, { 'user-type': 'someone-else' }, { 'x-jwt-sub': 'bob' }, { 'x-user': 'bob', 'x-request-id': 'r1' }]) {
    expect((await chat(bySub, alice, undefined, extra)).status).toBe(429);
  }
  // Another verified user has a bucket of its own.
  expect((await chat(bySub, signer.sign({ sub: 'bob' }))).status).toBe(200);
});

test('an invalid or missing token never reaches the plugin: Envoy answers 401, nothing is checked or charged', async () => {
  const calls = bySub.mock!.requests.length;
  const forged = signer.sign({ sub: 'mallory' }).replace(/\.[^.]+$/, '.AAAA');
  const other = newSigner().sign({ sub: 'mallory' }); // signed by a key the JWKS does not hold
  for (const t of [forged, other]) expect((await chat(bySub, t)).status).toBe(401);
  expect((await request(bySub.envoy.port, { method: 'POST', path: '/v1/chat/completions', headers: { host: 'api.example' }, body: '{}' })).status).toBe(401);
  expect(bySub.mock!.requests.length).toBe(calls);
  expect((await bucketOf(bySub.service.port, 'user-mallory')).balance ?? 1000).toBe(1000);
});

test('two models for one user draw on separate buckets', async () => {
  const carol = signer.sign({ sub: 'carol' });
  const big = await withCharge(byModel.service.port, 'model-carol-qwen-max@api.example', 1000, () =>
    chat(byModel, carol, { model: 'qwen-max', messages: [{ role: 'user', content: 'hi' }] }, { 'x-mock-usage': '10,2000' }),
  );
  expect(big.result.status).toBe(200);
  expect((await chat(byModel, carol, { model: 'qwen-max', messages: [] })).status).toBe(429);
  expect((await chat(byModel, carol, { model: 'qwen-turbo', messages: [{ role: 'user', content: 'hi' }] })).status).toBe(200);
});

test('a streaming request with a body-derived key still streams (first event before the upstream ends) and is charged', async () => {
  const dave = signer.sign({ sub: 'dave' });
  const { result: r, spent } = await withCharge(byModel.service.port, 'model-dave-qwen-plus@api.example', 1000, () =>
    chatStream(
      byModel.envoy.port,
      'api.example',
      { authorization: `Bearer ${dave}`, 'x-mock-chunks': '5', 'x-mock-chunk-delay-ms': '300' },
      { model: 'qwen-plus', messages: [{ role: 'user', content: 'hi' }], stream: true },
    ),
  );
  expect(r.status).toBe(200);
  expect(spent).toBe(105);
  const upstreamEnded = byModel.mock!.requests[byModel.mock!.requests.length - 1].ended!;
  expect(upstreamEnded - r.firstChunkAt).toBeGreaterThan(900);
});
