/** Bearer tokens, the admin port, and HTTP edges answered with JSON. Embedded store. */
import { connect } from 'node:net';
import { startService, type RunningService } from '../src/start';
import { ADMIN_TOKEN, adminFetch } from './support/admin';

const RULES = JSON.stringify([
  { rate_limit_key_regex: '^regular-user', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 200 },
]);
const T1 = 'service-token-one-0123456789';
const T2 = 'service-token-two-0123456789';
const CHECK = '/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D';
const UPDATE = '{"ratelimit_keys":["regular-user"],"total_tokens":105}';

let svc: RunningService;
afterEach(() => svc?.close());

const post = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: UPDATE });

/** Sends raw bytes and returns the raw reply (for what fetch refuses to send). */
function rawHttp(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.end(bytes));
    let out = '';
    s.on('data', (d) => (out += d.toString('utf8')));
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

describe('with SERVICE_TOKENS', () => {
  beforeEach(async () => {
    svc = await startService({ rules: RULES, tokens: [T1, T2], adminTokens: [ADMIN_TOKEN] });
  });

  test('check and update without a valid bearer token: 401 with a JSON error, nothing charged', async () => {
    const variants: Record<string, string>[] = [
      {},
      { authorization: 'Bearer wrong-token-0123456789' },
      { authorization: T1 },
      { authorization: `Basic ${T1}` },
    ];
    for (const headers of variants) {
      for (const r of [await fetch(`${svc.url}${CHECK}`, { headers }), await post(svc.url, headers)]) {
        expect(r.status).toBe(401);
        expect(r.headers.get('content-type')).toMatch(/^application\/json/);
        expect(r.headers.get('www-authenticate')).toBe('Bearer');
        expect((await r.json()).error).toMatch(/bearer token/);
      }
    }
    expect((await (await adminFetch(svc, '/buckets/regular-user')).json()).balance).toBe(200);
  });

  test('either token of a rotation is accepted; "bearer" is case-insensitive', async () => {
    expect((await post(svc.url, { authorization: `Bearer ${T1}` })).status).toBe(200);
    expect((await post(svc.url, { authorization: `bearer ${T2}` })).status).toBe(200);
    const r = await fetch(`${svc.url}${CHECK}`, { headers: { authorization: `Bearer ${T2}` } });
    expect(await r.json()).toMatchObject({ allow: false, remaining: 0 });
  });

  test('probes stay open on the main port', async () => {
    expect((await fetch(`${svc.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${svc.url}/readyz`)).status).toBe(200);
  });
});

describe('admin port', () => {
  test('/buckets and /metrics are on the admin port only; /buckets needs an admin token', async () => {
    svc = await startService({ rules: RULES, adminTokens: [ADMIN_TOKEN] });
    expect(svc.adminPort).not.toBe(svc.port);
    for (const p of ['/buckets/regular-user', '/metrics']) {
      const r = await fetch(`${svc.url}${p}`);
      expect(r.status).toBe(404);
      expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    }
    expect((await fetch(`${svc.adminUrl}/buckets/regular-user`)).status).toBe(401);
    expect((await fetch(`${svc.adminUrl}/buckets/regular-user`, { headers: { authorization: `Bearer ${T1}` } })).status).toBe(401);
    expect((await adminFetch(svc, '/buckets/regular-user')).status).toBe(200);
    expect((await fetch(`${svc.adminUrl}/metrics`)).status).toBe(200);
    expect((await fetch(`${svc.adminUrl}/healthz`)).status).toBe(200);
    expect((await fetch(`${svc.adminUrl}/readyz`)).status).toBe(200);
    // The protocol is not served on the admin port.
    expect((await fetch(`${svc.adminUrl}${CHECK}`)).status).toBe(404);
  });

  test('without ADMIN_TOKENS /buckets is disabled (403 JSON)', async () => {
    svc = await startService({ rules: RULES });
    const r = await fetch(`${svc.adminUrl}/buckets/regular-user`);
    expect(r.status).toBe(403);
    expect((await r.json()).error).toMatch(/ADMIN_TOKENS/);
  });
});

describe('HTTP edges (no token configured: open, as the reference)', () => {
  beforeEach(async () => {
    svc = await startService({ rules: RULES });
  });

  test('a check with 16 keys of 512 bytes that all need escaping (~47 KB URL) is answered, not 431', async () => {
    const keys = Array.from({ length: 16 }, (_, i) => `regular-user-${i}`.padEnd(512, '"'));
    const url = `${svc.url}/ratelimit?ratelimit_keys=${encodeURIComponent(JSON.stringify(keys))}`;
    expect(url.length).toBeGreaterThan(40 * 1024); // Node's default limit is 16 KiB
    const r = await fetch(url);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ allow: true });
  });

  test('request heads over the limit, raw UTF-8 and malformed requests get JSON errors from the parser', async () => {
    const big = await rawHttp(svc.port, Buffer.from(`GET /ratelimit?x=${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`));
    expect(big).toMatch(/^HTTP\/1.1 431 /);
    expect(big).toMatch(/Content-Type: application\/json/);
    expect(JSON.parse(big.slice(big.indexOf('\r\n\r\n') + 4))).toEqual({ error: 'request headers too large' });
    const utf8 = await rawHttp(
      svc.port,
      Buffer.concat([Buffer.from('GET /ratelimit?ratelimit_keys=["'), Buffer.from('用户', 'utf8'), Buffer.from('"] HTTP/1.1\r\nHost: x\r\n\r\n')]),
    );
    expect(utf8).toMatch(/^HTTP\/1.1 400 /);
    expect(typeof JSON.parse(utf8.slice(utf8.indexOf('\r\n\r\n') + 4)).error).toBe('string');
    const junk = await rawHttp(svc.port, Buffer.from('NOT HTTP\r\n\r\n'));
    expect(junk).toMatch(/^HTTP\/1.1 400 [\s\S]*\r\n\r\n\{"error":/);
  });

  test('near-miss paths are 404 (JSON), not 405', async () => {
    for (const p of ['/ratelimit/', '/update_ratelimit_record/', '/RateLimit', '/ratelimit/x']) {
      for (const method of ['GET', 'POST']) {
        const r = await fetch(`${svc.url}${p}`, { method });
        expect([p, method, r.status]).toEqual([p, method, 404]);
        expect(r.headers.get('content-type')).toMatch(/^application\/json/);
      }
    }
    expect((await fetch(`${svc.url}/ratelimit`, { method: 'PUT' })).status).toBe(405);
  });

  test('update: new usage parts and ids are validated; they do not change the charge; bad ids are left out, the counts charged', async () => {
    const send = (body: unknown) =>
      fetch(`${svc.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const ok = await send({
      ratelimit_keys: ['regular-user'],
      total_tokens: 10,
      cache_read_tokens: 5,
      cache_write_tokens: 0,
      reasoning_tokens: 3,
      request_id: 'x'.repeat(128),
    });
    expect(ok.status).toBe(200);
    expect((await svc.limiter.peek('regular-user')).balance).toBe(190);
    for (const [body, field] of [
      [{ cache_read_tokens: -1 }, 'cache_read_tokens'],
      [{ cache_write_tokens: 1.5 }, 'cache_write_tokens'],
      [{ reasoning_tokens: '3' }, 'reasoning_tokens'],
    ] as const) {
      const r = await send({ ratelimit_keys: ['regular-user'], total_tokens: 10, ...body });
      expect(r.status).toBe(400);
      expect((await r.json()).error).toContain(field);
    }
    expect((await svc.limiter.peek('regular-user')).balance).toBe(190);
    for (const body of [{ request_id: 'x'.repeat(129) }, { request_id: 5 }, { reservation_id: '' }]) {
      const r = await send({ ratelimit_keys: ['regular-user'], total_tokens: 10, ...body });
      expect(r.status).toBe(200);
    }
    expect((await svc.limiter.peek('regular-user')).balance).toBe(160);
  });
});
