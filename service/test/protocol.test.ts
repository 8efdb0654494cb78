/** Protocol conformance (exact reference shapes), additive fields, bad input. Embedded store. */
import { request } from 'node:http';
import { startService, type RunningService } from '../src/start';
import { ADMIN_TOKEN, adminFetch } from './support/admin';
import { MemoryStore } from '../src/store/memory';
import { StoreError, type BucketStore } from '../src/store/types';

const RULES = JSON.stringify([
  { rate_limit_key_regex: '^regular-user', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 200 },
  {
    rate_limit_key_regex: '^subscriber',
    redis_expired_seconds: 600,
    fill_interval_second: 60,
    tokens_per_fill: 100,
    max_tokens: 1000,
    charge: 'completion_tokens',
  },
  { rate_limit_key_regex: 'prompt-only', redis_expired_seconds: 60, fill_interval_second: 60, tokens_per_fill: 10, max_tokens: 100, charge: 'prompt_tokens' },
]);

let now = 1_800_000_000_000_000;
let store: MemoryStore;
let svc: RunningService;

beforeEach(async () => {
  store = new MemoryStore({ nowUs: () => now, sweepIntervalMs: 0 });
  svc = await startService({ rules: RULES, store, adminTokens: [ADMIN_TOKEN] });
});
afterEach(() => svc.close());

/** The reference plugin's exact requests. */
const REF_CHECK = '/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D';
const REF_UPDATE = '{"ratelimit_keys":["regular-user"],"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}';

interface Reply {
  status: number;
  type?: string;
  body: string;
}

function raw(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(`${svc.url}${path}`, { method, headers }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const check = (keys: unknown[]) => raw('GET', `/ratelimit?ratelimit_keys=${encodeURIComponent(JSON.stringify(keys))}`);
const update = (body: unknown) => raw('POST', '/update_ratelimit_record', JSON.stringify(body), { 'content-type': 'application/json' });

describe('reference shapes', () => {
  test('check reply: 200, application/json, allow + description, additive fields', async () => {
    const r = await raw('GET', REF_CHECK);
    expect(r.status).toBe(200);
    expect(r.type).toMatch(/^application\/json/);
    expect(JSON.parse(r.body)).toEqual({ allow: true, description: 'ok', key: 'regular-user', limit: 200, remaining: 200 });
  });

  test('update with the reference body: 200 with an empty body; charges total_tokens by default', async () => {
    const r = await raw('POST', '/update_ratelimit_record', REF_UPDATE, { 'content-type': 'application/json' });
    expect(r).toMatchObject({ status: 200, body: '' });
    expect(JSON.parse((await raw('GET', REF_CHECK)).body)).toMatchObject({ allow: true, remaining: 95 });
  });

  test('limited reply names the key; retry_after_seconds = until the balance is above zero', async () => {
    await update({ ratelimit_keys: ['regular-user'], prompt_tokens: 0, completion_tokens: 0, total_tokens: 260 });
    now += 10_000_000; // 10 s into the first interval; balance -60 needs 2 fills → 60 s after fill → 50 s
    const r = await raw('GET', REF_CHECK);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({
      allow: false,
      description: 'regular-user is being rate-limited',
      key: 'regular-user',
      limit: 200,
      remaining: 0,
      retry_after_seconds: 50,
    });
    now += 50_000_000;
    expect(JSON.parse((await raw('GET', REF_CHECK)).body)).toMatchObject({ allow: true, remaining: 40 });
  });

  test('a balance of exactly zero is limited (allow while > 0)', async () => {
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 200 });
    expect(JSON.parse((await raw('GET', REF_CHECK)).body)).toMatchObject({ allow: false, retry_after_seconds: 30 });
  });

  test('several keys: first limited key in order decides; else the lowest remaining', async () => {
    await update({ ratelimit_keys: ['subscriber-a'], completion_tokens: 900 });
    expect(JSON.parse((await check(['regular-user', 'subscriber-a', 'nobody'])).body)).toEqual({
      allow: true,
      description: 'ok',
      key: 'subscriber-a',
      limit: 1000,
      remaining: 100,
    });
    await update({ ratelimit_keys: ['subscriber-a', 'regular-user'], completion_tokens: 200 });
    const r = JSON.parse((await check(['nobody', 'subscriber-a', 'regular-user'])).body);
    expect(r).toMatchObject({ allow: false, description: 'subscriber-a is being rate-limited', key: 'subscriber-a' });
  });

  test('keys with no rule are never limited, and updates for them store nothing', async () => {
    await update({ ratelimit_keys: ['nobody'], total_tokens: 1_000_000 });
    expect(store.size).toBe(0);
    expect(JSON.parse((await check(['nobody'])).body)).toEqual({ allow: true, description: 'ok' });
    expect(JSON.parse((await check([])).body)).toEqual({ allow: true, description: 'ok' });
  });

  test('charge field: completion_tokens and prompt_tokens rules', async () => {
    await update({ ratelimit_keys: ['subscriber-x', 'prompt-only'], prompt_tokens: 10, completion_tokens: 95, total_tokens: 105 });
    expect(JSON.parse((await check(['subscriber-x'])).body)).toMatchObject({ remaining: 905 });
    expect(JSON.parse((await check(['prompt-only'])).body)).toMatchObject({ remaining: 90 });
  });

  test('missing total_tokens is prompt + completion; missing counts are 0', async () => {
    await update({ ratelimit_keys: ['regular-user'], prompt_tokens: 10, completion_tokens: 20 });
    expect(JSON.parse((await raw('GET', REF_CHECK)).body)).toMatchObject({ remaining: 170 });
    await update({ ratelimit_keys: ['regular-user'] });
    expect(JSON.parse((await raw('GET', REF_CHECK)).body)).toMatchObject({ remaining: 170 });
  });

  test('update without a Content-Type header is accepted as JSON', async () => {
    expect((await raw('POST', '/update_ratelimit_record', REF_UPDATE)).status).toBe(200);
    expect(JSON.parse((await raw('GET', REF_CHECK)).body)).toMatchObject({ remaining: 95 });
  });
});

describe('bad input: 400 with a JSON error, state untouched', () => {
  const bad: [string, () => Promise<Reply>][] = [
    ['missing ratelimit_keys', () => raw('GET', '/ratelimit')],
    ['malformed ratelimit_keys', () => raw('GET', '/ratelimit?ratelimit_keys=%5B%22regular-user')],
    ['ratelimit_keys not an array', () => raw('GET', '/ratelimit?ratelimit_keys=%22regular-user%22')],
    ['a key not a string', () => check(['regular-user', 3])],
    ['more than 16 keys', () => check(Array.from({ length: 17 }, (_, i) => `k${i}`))],
    ['a key over 512 bytes', () => check(['regular-user' + 'x'.repeat(501)])],
    ['a key over 512 bytes in UTF-8 only', () => check(['regular-user' + 'é'.repeat(251)])],
    ['update: not JSON', () => raw('POST', '/update_ratelimit_record', '{', { 'content-type': 'application/json' })],
    ['update: JSON array body', () => raw('POST', '/update_ratelimit_record', '[]', { 'content-type': 'application/json' })],
    ['update: missing keys', () => update({ total_tokens: 5 })],
    ['update: negative tokens', () => update({ ratelimit_keys: ['regular-user'], total_tokens: -5 })],
    ['update: fractional tokens', () => update({ ratelimit_keys: ['regular-user'], total_tokens: 1.5 })],
    ['update: string tokens', () => update({ ratelimit_keys: ['regular-user'], total_tokens: '5' })],
    ['update: too many keys', () => update({ ratelimit_keys: Array.from({ length: 17 }, (_, i) => `k${i}`), total_tokens: 1 })],
    ['update: wrong content type', () => raw('POST', '/update_ratelimit_record', REF_UPDATE, { 'content-type': 'text/plain' })],
    [
      'buckets (admin port): key over 512 bytes',
      async () => {
        const r = await adminFetch(svc, `/buckets/${'x'.repeat(600)}`);
        return { status: r.status, type: r.headers.get('content-type') ?? undefined, body: await r.text() } as Reply;
      },
    ],
  ];
  test.each(bad)('%s', async (_name, send) => {
    const r = await send();
    expect(r.status).toBe(400);
    expect(r.type).toMatch(/^application\/json/);
    expect(typeof JSON.parse(r.body).error).toBe('string');
    expect(JSON.parse((await raw('GET', REF_CHECK)).body)).toMatchObject({ allow: true, remaining: 200 });
  });
});

describe('a body over 64 KiB: 413 with a JSON error, state untouched', () => {
  const big = JSON.stringify({ ratelimit_keys: ['regular-user'], total_tokens: 500, pad: 'x'.repeat(70_000) });
  test.each([
    ['declared (Content-Length)', {}],
    ['chunked (no Content-Length)', { 'transfer-encoding': 'chunked' }],
  ])('%s', async (_name, headers) => {
    const r = await raw('POST', '/update_ratelimit_record', big, { 'content-type': 'application/json', ...headers });
    expect(r.status).toBe(413);
    expect(r.type).toMatch(/^application\/json/);
    expect(JSON.parse(r.body)).toEqual({ error: 'body larger than 65536 bytes' });
    expect(JSON.parse((await raw('GET', REF_CHECK)).body)).toMatchObject({ allow: true, remaining: 200 });
  });
});

describe('store failure', () => {
  test('a store error answers 503 with JSON (check, update, buckets, readyz) and counts it', async () => {
    const failing: BucketStore = {
      kind: 'failing',
      run: async () => {
        throw new StoreError('boom');
      },
      ping: async () => {
        throw new StoreError('down');
      },
      close: async () => {},
    };
    const s2 = await startService({ rules: RULES, store: failing, adminTokens: [ADMIN_TOKEN] });
    try {
      const get = (p: string) => fetch(s2.url + p);
      for (const r of [
        await get(REF_CHECK),
        await fetch(`${s2.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: REF_UPDATE }),
        await adminFetch(s2, '/buckets/regular-user'),
        await get('/readyz'),
      ]) {
        expect(r.status).toBe(503);
        expect(r.headers.get('content-type')).toMatch(/^application\/json/);
        await r.json();
      }
      // Unruled keys never touch the store.
      expect((await get('/ratelimit?ratelimit_keys=%5B%22nobody%22%5D')).status).toBe(200);
      const m = await (await adminFetch(s2, '/metrics')).text();
      expect(m).toMatch(/llmrl_store_errors_total\{op="check"\} 1/);
      expect(m).toMatch(/llmrl_store_errors_total\{op="update"\} 1/);
    } finally {
      await s2.close();
    }
  });
});

describe('operations endpoints', () => {
  test('/buckets/{key}: rule and balance, read-only', async () => {
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 250 });
    const r = await adminFetch(svc, '/buckets/regular-user');
    expect(r.status).toBe(200);
    const v = await r.json();
    expect(v).toMatchObject({
      key: 'regular-user',
      rule: {
        index: 0,
        rate_limit_key_regex: '^regular-user',
        max_tokens: 200,
        tokens_per_fill: 50,
        fill_interval_second: 30,
        redis_expired_seconds: 300,
        charge: 'total_tokens',
      },
      balance: -50,
      retry_after_seconds: 60,
    });
    expect(await (await adminFetch(svc, '/buckets/nobody%2Fwith%20slash')).json()).toEqual({ key: 'nobody/with slash', rule: null });
    // Peeking a new key creates nothing.
    const before = store.size;
    await adminFetch(svc, '/buckets/regular-user-2');
    expect(store.size).toBe(before);
  });

  test('/healthz, /readyz, /metrics, 404', async () => {
    expect((await raw('GET', '/healthz')).status).toBe(200);
    expect(JSON.parse((await raw('GET', '/readyz')).body)).toEqual({ status: 'ready', store: 'memory' });
    await raw('GET', REF_CHECK);
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 105 });
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 100 });
    await raw('GET', REF_CHECK);
    const mr = await adminFetch(svc, '/metrics');
    const m = { type: mr.headers.get('content-type'), body: await mr.text() };
    expect(m.type).toMatch(/^text\/plain/);
    expect(m.body).toContain('llmrl_decisions_total{rule="^regular-user",result="allowed"} 1');
    expect(m.body).toContain('llmrl_decisions_total{rule="^regular-user",result="limited"} 1');
    expect(m.body).toContain('llmrl_tokens_charged_total{rule="^regular-user"} 205');
    expect(m.body).toMatch(/llmrl_request_duration_seconds_count\{route="\/ratelimit",status="200"\} 2/);
    const m405 = await raw('POST', REF_CHECK, '');
    expect([m405.status, m405.type?.startsWith('application/json')]).toEqual([405, true]);
    expect((await raw('GET', '/update_ratelimit_record')).status).toBe(405);
    const nf = await raw('GET', '/nope');
    expect(nf.status).toBe(404);
    expect(nf.type).toMatch(/^application\/json/);
  });
});

test('logs are JSON lines and never contain bodies or keys', async () => {
  const lines: string[] = [];
  const { createLogger } = await import('../src/log');
  const s2 = await startService({ rules: RULES, logger: createLogger('debug', (l) => lines.push(l)), accessLog: true });
  try {
    await fetch(`${s2.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: REF_UPDATE });
    await fetch(`${s2.url}${REF_CHECK}`);
    await fetch(`${s2.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"secret-body' });
  } finally {
    await s2.close();
  }
  const recs = lines.map((l) => JSON.parse(l));
  expect(recs.filter((r) => r.msg === 'request').map((r) => [r.route, r.status])).toEqual([
    ['/update_ratelimit_record', 200],
    ['/ratelimit', 200],
    ['/update_ratelimit_record', 400],
  ]);
  expect(lines.join('')).not.toMatch(/regular-user|prompt_tokens|secret-body/);
});
