/**
 * "No way around the limit" (service side): one test per way a caller got around it, each
 * against the embedded store and a real Redis where the case applies. Every test here fails
 * on the service before this change.
 */
import { startService, type RunningService } from '../src/start';
import { createLogger } from '../src/log';
import { MemoryStore } from '../src/store/memory';
import { RedisStore } from '../src/store/redis';
import type { BucketStore } from '../src/store/types';
import { ADMIN_TOKEN, adminFetch } from './support/admin';
import { startRedis, directClient, type RedisHandle } from '../../test-support/redis';

const SEED = { rate_limit_key_regex: '^regular-user', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 200 };
const SLOW = { rate_limit_key_regex: '^slow-', redis_expired_seconds: 3600, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: 10 };
const RULES = JSON.stringify([SEED, SLOW]);

let redis: RedisHandle;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

let redisPrefix = 0;
const stores: [string, () => Promise<BucketStore>][] = [
  ['embedded store', async () => new MemoryStore({ sweepIntervalMs: 0 })],
  [
    'redis',
    async () => {
      // A fresh prefix per service: tests do not see each other's records.
      const s = new RedisStore({ urls: [redis.url], prefix: `abuse${++redisPrefix}:` });
      await s.connect();
      return s;
    },
  ],
];

const q = (keys: string[]) => encodeURIComponent(JSON.stringify(keys));
async function check(svc: RunningService, keys: string[], reserve?: number): Promise<any> {
  const r = await fetch(`${svc.url}/ratelimit?ratelimit_keys=${q(keys)}${reserve === undefined ? '' : `&reserve=${reserve}`}`);
  expect(r.status).toBe(200);
  return r.json();
}
async function update(svc: RunningService, body: unknown): Promise<number> {
  const r = await fetch(`${svc.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await r.text();
  return r.status;
}
const balance = async (svc: RunningService, key: string) => (await (await adminFetch(svc, `/buckets/${encodeURIComponent(key)}`)).json()).balance;

describe.each(stores)('%s', (_name, makeStore) => {
  let svc: RunningService;
  beforeEach(async () => {
    svc = await startService({ rules: RULES, store: await makeStore(), adminTokens: [ADMIN_TOKEN] });
  });
  afterEach(() => svc.close());

  test('1. self-credit: reserved_tokens without a live reservation of the key refunds nothing', async () => {
    expect(await update(svc, { ratelimit_keys: ['regular-user-me'], total_tokens: 1000 })).toBe(200);
    expect(await balance(svc, 'regular-user-me')).toBe(-800);
    // The issue's request: no reservation at all.
    expect(await update(svc, { ratelimit_keys: ['regular-user-me'], total_tokens: 0, reserved_tokens: 1_000_000_000 })).toBe(200);
    expect(await balance(svc, 'regular-user-me')).toBe(-800);
    // A made-up id; another key's real reservation.
    expect(await update(svc, { ratelimit_keys: ['regular-user-me'], total_tokens: 0, reserved_tokens: 1_000_000_000, reservation_id: 'made-up' })).toBe(200);
    const other = await check(svc, ['regular-user-other'], 150);
    expect(other).toMatchObject({ allow: true, reserved: 150, reservation_id: expect.any(String) });
    expect(await update(svc, { ratelimit_keys: ['regular-user-me'], total_tokens: 0, reserved_tokens: 150, reservation_id: other.reservation_id })).toBe(200);
    expect(await balance(svc, 'regular-user-me')).toBe(-800);
    // The real owner gets at most its reservation back, once; and the charge still applies.
    const body = { ratelimit_keys: ['regular-user-other'], total_tokens: 20, reserved_tokens: 1_000_000, reservation_id: other.reservation_id };
    expect(await update(svc, body)).toBe(200);
    expect(await balance(svc, 'regular-user-other')).toBe(180);
    expect(await update(svc, body)).toBe(200);
    expect(await balance(svc, 'regular-user-other')).toBe(160);
    expect(await check(svc, ['regular-user-me'])).toMatchObject({ allow: false });
    expect(await (await adminFetch(svc, '/metrics')).text()).toContain('llmrl_refunds_refused_total{rule="^regular-user"} 4');
  });

  test('2. locking someone out: a 10^12 charge stops at max_debt (10 × max_tokens), retry_after bounded', async () => {
    expect(await update(svc, { ratelimit_keys: ['regular-user-victim'], total_tokens: 1e12 })).toBe(200);
    expect(await balance(svc, 'regular-user-victim')).toBe(-2000);
    const r = await check(svc, ['regular-user-victim']);
    // From -2000 back above zero: 41 fills of 50 every 30 s.
    expect(r).toMatchObject({ allow: false, remaining: 0, retry_after_seconds: 41 * 30 });
  });

  test('3. debt deleted by a big number: two charges of 2^53-1, one of 10^15 on a slow rule; the record stays', async () => {
    for (let i = 0; i < 2; i++) expect(await update(svc, { ratelimit_keys: ['regular-user-big'], total_tokens: Number.MAX_SAFE_INTEGER })).toBe(200);
    expect(await balance(svc, 'regular-user-big')).toBe(-2000);
    expect(await update(svc, { ratelimit_keys: ['slow-big'], total_tokens: 1e15 })).toBe(200);
    expect(await balance(svc, 'slow-big')).toBe(-100);
    expect(await check(svc, ['regular-user-big', 'slow-big'])).toMatchObject({ allow: false, key: 'regular-user-big' });
    expect(await check(svc, ['slow-big'])).toMatchObject({ allow: false, retry_after_seconds: 101 * 3600 });
    if (svc.store instanceof RedisStore) {
      const prefix = `abuse${redisPrefix}:`;
      const c = await directClient(redis.url);
      for (const k of ['regular-user-big', 'slow-big']) {
        const ttl = await c.pTTL(`${prefix}{${k}}`);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(1e12);
      }
      expect(await c.hGet(`${prefix}{regular-user-big}`, 'b')).toBe('-2000');
      await c.close();
    }
  });

  test('6. a retried update with the same request_id is charged once (per key), other ids each time', async () => {
    const body = { ratelimit_keys: ['regular-user-r', 'slow-r'], total_tokens: 7, request_id: 'req-1' };
    for (let i = 0; i < 3; i++) expect(await update(svc, body)).toBe(200);
    expect(await balance(svc, 'regular-user-r')).toBe(193);
    expect(await balance(svc, 'slow-r')).toBe(3);
    expect(await update(svc, { ...body, request_id: 'req-2' })).toBe(200);
    expect(await balance(svc, 'regular-user-r')).toBe(186);
    // A retry that settles a reservation does not refund twice either.
    const r = await check(svc, ['regular-user-r'], 100); // 86
    const settle = { ratelimit_keys: ['regular-user-r'], total_tokens: 10, reserved_tokens: 100, reservation_id: r.reservation_id, request_id: 'req-3' };
    expect(await update(svc, settle)).toBe(200);
    expect(await update(svc, settle)).toBe(200);
    expect(await balance(svc, 'regular-user-r')).toBe(176);
    expect(await (await adminFetch(svc, '/metrics')).text()).toContain('llmrl_duplicate_updates_total{rule="^regular-user"} 3');
    // Without request_id, as before: every update is charged.
    await update(svc, { ratelimit_keys: ['regular-user-r'], total_tokens: 1 });
    await update(svc, { ratelimit_keys: ['regular-user-r'], total_tokens: 1 });
    expect(await balance(svc, 'regular-user-r')).toBe(174);
  });

  test('8. a report with a bad field that is not a count is still charged: the field is dropped, never the report', async () => {
    const r = await check(svc, ['regular-user-m'], 100); // 200 - 100
    // The plugin reported "model":"" and the report was refused (400): charged 0. Now charged.
    expect(await update(svc, { ratelimit_keys: ['regular-user-m'], total_tokens: 30, model: '' })).toBe(200);
    expect(await balance(svc, 'regular-user-m')).toBe(70);
    // A malformed request_id cannot make reports duplicates (charged 0) or be refused: each is charged.
    for (const id of [42, '', 42]) expect(await update(svc, { ratelimit_keys: ['regular-user-m'], total_tokens: 10, request_id: id })).toBe(200);
    expect(await balance(svc, 'regular-user-m')).toBe(40);
    // A malformed reservation_id refunds nothing: the usage is charged in full; the reservation stays live.
    const badId = { ratelimit_keys: ['regular-user-m'], total_tokens: 5, reserved_tokens: 100, reservation_id: 'x'.repeat(129) };
    expect(await update(svc, badId)).toBe(200);
    expect(await balance(svc, 'regular-user-m')).toBe(35);
    const settle = { ratelimit_keys: ['regular-user-m'], total_tokens: 0, reserved_tokens: 100, reservation_id: r.reservation_id, estimated: 'yes' };
    expect(await update(svc, settle)).toBe(200);
    expect(await balance(svc, 'regular-user-m')).toBe(135);
    // Counts stay strict: a bad count is a 400 and charges nothing, whatever the metadata.
    expect(await update(svc, { ratelimit_keys: ['regular-user-m'], total_tokens: -1, model: 'm' })).toBe(400);
    expect(await update(svc, { ratelimit_keys: ['regular-user-m'], total_tokens: 5, reserved_tokens: 1.5, model: '' })).toBe(400);
    expect(await balance(svc, 'regular-user-m')).toBe(135);
    const m = await (await adminFetch(svc, '/metrics')).text();
    expect(m).toContain('llmrl_update_metadata_errors_total{field="model"} 1');
    expect(m).toContain('llmrl_update_metadata_errors_total{field="request_id"} 3');
    expect(m).toContain('llmrl_update_metadata_errors_total{field="reservation_id"} 1');
    expect(m).toContain('llmrl_update_metadata_errors_total{field="estimated"} 1');
  });

  test('9. MAX_UPDATE_TOKENS: one update charges a key at most the cap, one check reserves at most the cap; logged by rule, never by key', async () => {
    const lines: string[] = [];
    const capped = await startService({
      rules: RULES,
      store: await makeStore(),
      adminTokens: [ADMIN_TOKEN],
      limiter: { maxUpdateTokens: 1000 },
      logger: createLogger('info', (l) => lines.push(l)),
    });
    try {
      expect(await update(capped, { ratelimit_keys: ['regular-user-forged'], total_tokens: 1500 })).toBe(200);
      expect(await balance(capped, 'regular-user-forged')).toBe(-800); // 200 - 1000, not 200 - 1500
      expect(await update(capped, { ratelimit_keys: ['regular-user-exact'], total_tokens: 1000 })).toBe(200);
      expect(await balance(capped, 'regular-user-exact')).toBe(-800);
      const r = await check(capped, ['regular-user-big'], 5000);
      expect(r).toMatchObject({ allow: true, reserved: 1000 });
      expect(await balance(capped, 'regular-user-big')).toBe(-800);
      // Its report: the usage is capped too, the reservation refunded: one request cost the cap.
      const settle = { ratelimit_keys: ['regular-user-big'], total_tokens: 3000, reserved_tokens: 1000, reservation_id: r.reservation_id };
      expect(await update(capped, settle)).toBe(200);
      expect(await balance(capped, 'regular-user-big')).toBe(-800);
      const m = await (await adminFetch(capped, '/metrics')).text();
      expect(m).toContain('llmrl_capped_charges_total{rule="^regular-user",op="update"} 2');
      expect(m).toContain('llmrl_capped_charges_total{rule="^regular-user",op="reserve"} 1');
      const warned = lines.filter((l) => /MAX_UPDATE_TOKENS/.test(l));
      expect(warned).toHaveLength(1); // at most one line per 10 s
      expect(JSON.parse(warned[0])).toMatchObject({ level: 'warn', rule: '^regular-user', op: 'update', tokens: 1500, max_update_tokens: 1000 });
      expect(lines.join('\n')).not.toContain('regular-user-');
    } finally {
      await capped.close();
    }
    // The default cap is 1,000,000 (a rule big enough to show it).
    const big = { rate_limit_key_regex: '^big-', redis_expired_seconds: 60, fill_interval_second: 60, tokens_per_fill: 1, max_tokens: 10_000_000 };
    const dflt = await startService({ rules: JSON.stringify([big]), store: await makeStore(), adminTokens: [ADMIN_TOKEN] });
    try {
      expect(await update(dflt, { ratelimit_keys: ['big-a'], total_tokens: 2_500_000 })).toBe(200);
      expect(await balance(dflt, 'big-a')).toBe(9_000_000);
    } finally {
      await dflt.close();
    }
  });

  test('7. RE2 rules: patterns the reference (Go) accepts mean the same; a backtracking-shaped rule answers a 512-byte key within 100 ms', async () => {
    const base = { redis_expired_seconds: 60, fill_interval_second: 60, tokens_per_fill: 1, max_tokens: 1 };
    const rules = [
      { ...base, rate_limit_key_regex: '^digits-[[:digit:]]+\\z' },
      { ...base, rate_limit_key_regex: '^\\Qa.b*c\\E$' },
      { ...base, rate_limit_key_regex: '(?i)^vip-' },
      { ...base, rate_limit_key_regex: '^(?P<tier>gold|silver)-' },
      { ...base, rate_limit_key_regex: '^([a-z0-9]+-?)+$' },
    ];
    const s2 = await startService({ rules: JSON.stringify(rules), store: await makeStore(), adminPort: null });
    try {
      const rule = (k: string) => s2.limiter.rules.match(k)?.index ?? null;
      expect(rule('digits-7')).toBe(0); // JS RegExp: [[:digit:]] is a class of ':digt[' then ']'
      expect(rule('digits-7\n')).toBe(null); // \z: the very end (JS has no \z: it would mean a literal z)
      expect(rule('a.b*c')).toBe(1);
      expect(rule('aXbbc')).toBe(null);
      expect(rule('VIP-anna')).toBe(2);
      expect(rule('gold-acme')).toBe(3);
      expect(rule('regular-user-7')).toBe(4);
      const hostile = 'a'.repeat(511) + '!';
      const t0 = performance.now();
      const r = await fetch(`${s2.url}/ratelimit?ratelimit_keys=${q([hostile])}`);
      const ms = performance.now() - t0;
      expect(await r.json()).toEqual({ allow: true, description: 'ok' }); // matches no rule
      expect(ms).toBeLessThan(100);
    } finally {
      await s2.close();
    }
  });
});

test('6 (Redis). an update that timed out (503) is still applied when Redis resumes; its retry with the same request_id is not charged again', async () => {
  const store = new RedisStore({ urls: [redis.url], prefix: 'retry:', commandTimeoutMs: 200 });
  await store.connect();
  const svc = await startService({ rules: RULES, store, adminTokens: [ADMIN_TOKEN] });
  try {
    const body = { ratelimit_keys: ['regular-user-retry'], total_tokens: 105, request_id: 'plugin-report-1' };
    const c = await directClient(redis.url);
    await c.sendCommand(['CLIENT', 'PAUSE', '700', 'ALL']);
    const first = await fetch(`${svc.url}/update_ratelimit_record`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(first.status).toBe(503);
    expect(await first.json()).toEqual({ error: 'rate-limit store unavailable' });
    // Redis runs the queued script once the pause ends: the first attempt was applied after all.
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && (await c.hGet('retry:{regular-user-retry}', 'b').catch(() => null)) !== '95') await new Promise((r) => setTimeout(r, 50));
    expect(await c.hGet('retry:{regular-user-retry}', 'b')).toBe('95');
    await c.close();
    // The client retries the 503 with the same request_id: nothing more is charged.
    expect(await update(svc, body)).toBe(200);
    expect(await balance(svc, 'regular-user-retry')).toBe(95);
  } finally {
    await svc.close();
  }
});

describe('4. embedded store at its bound (MEMORY_MAX_KEYS 5,000), flooded with 6,250 new keys', () => {
  let store: MemoryStore;
  let svc: RunningService;
  beforeEach(async () => {
    store = new MemoryStore({ sweepIntervalMs: 0, maxKeys: 5000 });
    svc = await startService({ rules: RULES, store, adminTokens: [ADMIN_TOKEN] });
    // The slow rule (1 token an hour): no refill during the test, however slow the machine.
    expect(await update(svc, { ratelimit_keys: ['slow-debtor'], total_tokens: 100_000 })).toBe(200);
    expect(await balance(svc, 'slow-debtor')).toBe(-100);
  });
  afterEach(() => svc.close());

  async function flood(totalTokens: number): Promise<number[]> {
    const statuses: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < 6250) {
          const i = next++;
          statuses.push(await update(svc, { ratelimit_keys: [`slow-flood-${i}`], total_tokens: totalTokens }));
        }
      }),
    );
    return statuses;
  }

  test('each spending a little: every update is charged, newcomers are served, the debt stays', async () => {
    const statuses = await flood(4);
    expect(statuses.filter((s) => s === 200).length).toBe(6250);
    expect(store.size).toBe(5000);
    expect(await balance(svc, 'slow-debtor')).toBe(-100);
    expect(await check(svc, ['slow-debtor'])).toMatchObject({ allow: false });
    expect(await check(svc, ['slow-newcomer'], 8)).toMatchObject({ allow: true, reserved: 8, remaining: 2 });
    const m = await (await adminFetch(svc, '/metrics')).text();
    expect(m).not.toContain('llmrl_store_full_total{');
    // 1,251 flood records, then the newcomer's, made room: each had spent 4 of 10.
    expect(m).toContain('llmrl_store_forgiven_tokens_total 5008');
  }, 60_000);

  test('each driven into debt: new keys are refused (updates 503, checks denied) rather than a debt forgotten', async () => {
    const statuses = await flood(15);
    expect(statuses.filter((s) => s === 200).length).toBe(4999);
    expect(statuses.filter((s) => s === 503).length).toBe(6250 - 4999);
    expect(store.size).toBe(5000);
    expect(await balance(svc, 'slow-debtor')).toBe(-100);
    expect(await balance(svc, 'slow-flood-0')).toBe(-5);
    // A new key cannot be recorded, so it is denied rather than admitted for free.
    expect(await check(svc, ['slow-newcomer'])).toMatchObject({ allow: false, description: 'slow-newcomer is being rate-limited' });
    const m = await (await adminFetch(svc, '/metrics')).text();
    expect(m).toContain(`llmrl_store_full_total{op="update"} ${6250 - 4999}`);
    expect(m).toContain('llmrl_store_full_total{op="check"} 1');
  }, 60_000);
});

test('5. Redis maxmemory: an evicting policy is reported at start and on /readyz; with noeviction a flood fails (503 JSON) and evicts no debt', async () => {
  const lines: string[] = [];
  const store = new RedisStore({ urls: [redis.url], prefix: 'mm:' });
  await store.connect();
  const client = await directClient(redis.url);
  const svc = await startService({ rules: RULES, store, adminTokens: [ADMIN_TOKEN], logger: createLogger('info', (l) => lines.push(l)) });
  try {
    expect(await update(svc, { ratelimit_keys: ['regular-user-debtor'], total_tokens: 1000 })).toBe(200);
    const used = Number(/used_memory:(\d+)/.exec(await client.info('memory'))![1]);
    await client.configSet({ maxmemory: String(used + 400_000), 'maxmemory-policy': 'volatile-lru' });
    const ready = await (await fetch(`${svc.url}/readyz`)).json();
    expect(ready).toMatchObject({ status: 'ready', store: 'redis' });
    expect(ready.warnings[0]).toMatch(/maxmemory-policy is volatile-lru.*use maxmemory-policy noeviction/);
    const logged = lines.map((l) => JSON.parse(l)).find((l) => /maxmemory-policy is volatile-lru/.test(l.msg));
    expect(logged).toMatchObject({ level: 'error' });

    await client.configSet({ 'maxmemory-policy': 'noeviction' });
    expect(await (await fetch(`${svc.url}/readyz`)).json()).toEqual({ status: 'ready', store: 'redis' });
    let failed: Response | undefined;
    for (let i = 0; i < 50_000 && !failed; i += 32) {
      const rs = await Promise.all(
        Array.from({ length: 32 }, (_, j) =>
          fetch(`${svc.url}/update_ratelimit_record`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ ratelimit_keys: [`regular-user-flood-${i + j}`], total_tokens: 105 }),
          }),
        ),
      );
      for (const r of rs) {
        if (r.status !== 200 && !failed) failed = r;
        else await r.text();
      }
    }
    expect(failed?.status).toBe(503);
    expect(failed!.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await failed!.json()).toEqual({ error: 'rate-limit store unavailable' });
    expect(await client.hGet('mm:{regular-user-debtor}', 'b')).toBe('-800');
  } finally {
    await client.configSet({ maxmemory: '0', 'maxmemory-policy': 'noeviction' }).catch(() => undefined);
    await client.close();
    await svc.close();
  }
}, 60_000);
