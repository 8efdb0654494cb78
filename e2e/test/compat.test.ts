/**
 * Scenario 11: each half against the other system's. Our plugin against a stand-in that
 * answers only the reference protocol's exact shapes; our service answering requests shaped
 * exactly as the reference plugin sends them.
 */
import { startStack, Stack } from '../src/harness/stack';
import { chat, request, errorMessage } from '../src/harness/http';
import { startService, Service } from '../src/harness/service';
import { startStandin, Standin } from '../src/harness/standin';
import { waitFor } from '../src/harness/process';
import { RLS_SERVICE } from '../src/harness/envoy-config';

const HOST = 'dashscope.aliyuncs.com';

describe('our plugin with a reference-protocol service', () => {
  let standin: Standin;
  let stack: Stack;
  beforeAll(async () => {
    standin = await startStandin();
    stack = await startStack({ rateLimitService: { host: '127.0.0.1', port: standin.port } });
  });
  afterAll(async () => {
    await stack?.stop();
    await standin?.close();
  });

  test('check: GET /ratelimit with the URL-encoded JSON key list, :authority the service, no secrets', async () => {
    standin.calls.length = 0;
    const r = await chat(stack.envoy.port, HOST, { 'user-type': 'regular-user', authorization: 'Bearer sk-secret-123' });
    expect(r.status).toBe(200);
    await waitFor('the update call', () => (standin.calls.length >= 2 ? true : undefined), 5000);
    const [check, update] = standin.calls;
    expect(check.method).toBe('GET');
    expect(check.path).toBe('/ratelimit?ratelimit_keys=' + encodeURIComponent('["regular-user"]'));
    expect(check.headers.host).toBe(RLS_SERVICE);
    for (const c of standin.calls) {
      expect(JSON.stringify(c.headers)).not.toContain('sk-secret-123');
      expect(c.body).not.toContain('介绍');
    }
    expect(update.method).toBe('POST');
    expect(update.path).toBe('/update_ratelimit_record');
    expect(update.headers['content-type']).toContain('application/json');
    // The reference fields, plus request_id (the reference service ignores unknown fields).
    expect(JSON.parse(update.body)).toEqual({
      ratelimit_keys: ['regular-user'],
      prompt_tokens: 10,
      completion_tokens: 95,
      total_tokens: 105,
      request_id: expect.stringMatching(/^[0-9A-F]{24}-[0-9]+$/),
    });
  });

  test('a denial with only the reference fields gives 429 with its description, no extra headers', async () => {
    standin.limited.add('subscriber');
    const r = await chat(stack.envoy.port, HOST, { 'user-type': 'subscriber' });
    expect(r.status).toBe(429);
    expect(errorMessage(r.body)).toBe('subscriber is being rate-limited'); // nothing added: the reference sends no numbers
    expect(r.headers['retry-after']).toBeUndefined();
  });
});

describe('our service with reference-plugin requests', () => {
  let svc: Service;
  beforeAll(async () => {
    svc = await startService({
      rules: [{ rate_limit_key_regex: 'regular-user.*', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 200 }],
    });
  });
  afterAll(() => svc?.stop());

  test('check and update in the exact reference shapes', async () => {
    const check = await request(svc.port, { path: '/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D' });
    expect(check.status).toBe(200);
    expect(check.headers['content-type']).toContain('application/json');
    expect(JSON.parse(check.body)).toMatchObject({ allow: true, description: 'ok' });
    const body = JSON.stringify({ ratelimit_keys: ['regular-user'], prompt_tokens: 10, completion_tokens: 95, total_tokens: 105 });
    for (let i = 0; i < 2; i++) {
      const u = await request(svc.port, { method: 'POST', path: '/update_ratelimit_record', headers: { 'content-type': 'application/json' }, body });
      expect(u.status).toBe(200);
    }
    const denied = await request(svc.port, { path: '/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D' });
    expect(JSON.parse(denied.body)).toMatchObject({ allow: false, description: 'regular-user is being rate-limited' });
  });
});
