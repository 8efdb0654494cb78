/** Reservations: `&reserve=N` on the check, `reserved_tokens`/`estimated` on the update. Embedded store. */
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
]);

let now = 1_800_000_000_000_000;
let store: MemoryStore;
let svc: RunningService;

beforeEach(async () => {
  store = new MemoryStore({ nowUs: () => now, sweepIntervalMs: 0 });
  svc = await startService({ rules: RULES, store, adminTokens: [ADMIN_TOKEN] });
});
afterEach(() => svc.close());

const q = (keys: unknown[]) => encodeURIComponent(JSON.stringify(keys));
async function check(keys: unknown[], reserve?: string | number): Promise<{ status: number; body: any }> {
  const r = await fetch(`${svc.url}/ratelimit?ratelimit_keys=${q(keys)}${reserve === undefined ? '' : `&reserve=${reserve}`}`);
  const text = await r.text();
  return { status: r.status, body: JSON.parse(text) };
}
async function update(body: unknown): Promise<number> {
  const r = await fetch(`${svc.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await r.text();
  return r.status;
}
const balance = async (key: string) => (await (await adminFetch(svc, `/buckets/${encodeURIComponent(key)}`)).json()).balance;
const metrics = async () => (await adminFetch(svc, '/metrics')).text();

describe('check with reserve=N', () => {
  test('admitted: reserved echoed, N deducted at once, remaining after the reservation', async () => {
    expect(await check(['regular-user'], 150)).toEqual({
      status: 200,
      body: { allow: true, description: 'ok', reserved: 150, reservation_id: expect.any(String), key: 'regular-user', limit: 200, remaining: 50 },
    });
    expect(await balance('regular-user')).toBe(50);
  });

  test('refused below min(N, max_tokens): nothing deducted; remaining and retry_after for N', async () => {
    await check(['regular-user'], 150); // 50 left
    expect((await check(['regular-user'], 100)).body).toEqual({
      allow: false,
      description: 'regular-user is being rate-limited',
      key: 'regular-user',
      limit: 200,
      remaining: 50,
      retry_after_seconds: 30, // one fill → 100
    });
    expect(await balance('regular-user')).toBe(50);
    expect((await check(['regular-user'], 50)).body).toMatchObject({ allow: true, reserved: 50, remaining: 0 });
    expect((await check(['regular-user'], 1)).body).toMatchObject({ allow: false, remaining: 0, retry_after_seconds: 30 });
  });

  test('N above max_tokens needs a full bucket, then goes into debt', async () => {
    expect((await check(['regular-user'], 500)).body).toMatchObject({ allow: true, reserved: 500, remaining: -300 });
    const r = (await check(['regular-user'], 500)).body;
    expect(r).toMatchObject({ allow: false, remaining: 0, retry_after_seconds: 300 }); // -300 → 200: 10 fills
  });

  test('reserve=0 and no reserve: exactly the reference check (no reserved field, nothing deducted)', async () => {
    const ref = { allow: true, description: 'ok', key: 'regular-user', limit: 200, remaining: 200 };
    expect((await check(['regular-user'])).body).toEqual(ref);
    expect((await check(['regular-user'], 0)).body).toEqual(ref);
    expect(store.size).toBe(0);
    const raw = await fetch(`${svc.url}/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D`);
    expect(await raw.json()).toEqual(ref);
  });

  test('keys with no rule: unaffected; nothing reserved is said as reserved 0', async () => {
    expect((await check(['nobody'], 100)).body).toEqual({ allow: true, description: 'ok', reserved: 0 });
    expect((await check([], 100)).body).toEqual({ allow: true, description: 'ok', reserved: 0 });
    expect(store.size).toBe(0);
  });

  test('several keys: all must admit; a refusal on a later key returns the reservations made on the others', async () => {
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 150 }); // 50 left
    const r = (await check(['subscriber-a', 'nobody', 'regular-user', 'subscriber-b'], 100)).body;
    expect(r).toEqual({
      allow: false,
      description: 'regular-user is being rate-limited',
      key: 'regular-user',
      limit: 200,
      remaining: 50,
      retry_after_seconds: 30,
    });
    expect(await balance('subscriber-a')).toBe(1000);
    expect(await balance('subscriber-b')).toBe(1000);
    expect(await balance('regular-user')).toBe(50);
    expect(await metrics()).toContain('llmrl_tokens_refunded_total{rule="^subscriber",reason="rollback"} 200');
    // All admit: each ruled key reserves N; the lowest remaining is reported.
    expect((await check(['subscriber-a', 'regular-user'], 40)).body).toEqual({
      allow: true,
      description: 'ok',
      reserved: 40,
      reservation_id: expect.any(String),
      key: 'regular-user',
      limit: 200,
      remaining: 10,
    });
    expect(await balance('subscriber-a')).toBe(960);
  });

  test('the same key twice reserves twice; a refusal of the second returns the first', async () => {
    expect((await check(['regular-user', 'regular-user'], 150)).body).toMatchObject({ allow: false, remaining: 50 });
    expect(await balance('regular-user')).toBe(200);
  });

  test('the same key twice, both admitted: the report refunds both; a refusal elsewhere rolls both back', async () => {
    const r = (await check(['regular-user', 'regular-user'], 50)).body;
    expect(r).toMatchObject({ allow: true, reserved: 50, remaining: 100 });
    // Each occurrence is charged its usage and refunded its reservation: 200 − 2 × 10.
    await update({ ratelimit_keys: ['regular-user', 'regular-user'], total_tokens: 10, reserved_tokens: 50, reservation_id: r.reservation_id });
    expect(await balance('regular-user')).toBe(180);
    await update({ ratelimit_keys: ['regular-user-low'], total_tokens: 190 }); // 10 left
    expect((await check(['regular-user', 'regular-user', 'regular-user-low'], 50)).body).toMatchObject({ allow: false, key: 'regular-user-low' });
    expect(await balance('regular-user')).toBe(180);
    expect(await metrics()).not.toContain('llmrl_refunds_refused_total{rule="^regular-user"}');
  });

  const invalid = ['-1', '1.5', 'abc', '', '1e3', '%2B5', '0x10', '10000000000000001', '%20%207'];
  test.each(invalid)('reserve=%s: 400 JSON error naming reserve and the value, nothing reserved', async (v) => {
    const r = await fetch(`${svc.url}/ratelimit?ratelimit_keys=${q(['regular-user'])}&reserve=${v}`);
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    const { error } = await r.json();
    expect(error).toContain('reserve');
    expect(error).toContain(JSON.stringify(decodeURIComponent(v)));
    expect(store.size).toBe(0);
  });

  test('a store failure on one key rolls back the others and answers 503', async () => {
    const mem = new MemoryStore({ nowUs: () => now, sweepIntervalMs: 0 });
    const flaky: BucketStore = {
      kind: 'flaky',
      run: async (key, p, op, cost, extra) => {
        if (key === 'subscriber-bad' && op === 'reserve') throw new StoreError('boom');
        return mem.run(key, p, op, cost, extra);
      },
      ping: async () => {},
      close: () => mem.close(),
    };
    const s2 = await startService({ rules: RULES, store: flaky });
    try {
      const r = await fetch(`${s2.url}/ratelimit?ratelimit_keys=${q(['regular-user', 'subscriber-bad'])}&reserve=100`);
      expect(r.status).toBe(503);
      expect(
        (await mem.run('regular-user', { maxTokens: 200, tokensPerFill: 50, fillIntervalUs: 30e6, ttlSeconds: 300, maxDebt: 2000 }, 'check', 0)).balance,
      ).toBe(200);
    } finally {
      await s2.close();
    }
  });
});

describe('update with reserved_tokens', () => {
  test('charges actual − reserved: refund when the estimate was high, top-up when low', async () => {
    const id1 = (await check(['regular-user'], 150)).body.reservation_id; // 50
    expect(
      await update({
        ratelimit_keys: ['regular-user'],
        prompt_tokens: 10,
        completion_tokens: 90,
        total_tokens: 100,
        reserved_tokens: 150,
        reservation_id: id1,
      }),
    ).toBe(200);
    expect(await balance('regular-user')).toBe(100);
    const id2 = (await check(['regular-user'], 50)).body.reservation_id; // 50
    expect(id2).not.toBe(id1);
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 120, reserved_tokens: 50, reservation_id: id2 });
    expect(await balance('regular-user')).toBe(-20);
    const m = await metrics();
    expect(m).toContain('llmrl_tokens_reserved_total{rule="^regular-user"} 200');
    expect(m).toContain('llmrl_tokens_refunded_total{rule="^regular-user",reason="report"} 50');
    expect(m).toContain('llmrl_tokens_topped_up_total{rule="^regular-user"} 70');
    expect(m).toContain('llmrl_tokens_charged_total{rule="^regular-user"} 220');
  });

  test('a refund never raises the balance above max_tokens, and never exceeds the reservation', async () => {
    const id = (await check(['regular-user'], 150)).body.reservation_id; // 50
    now += 90_000_000; // three fills: 200
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 0, reserved_tokens: 150, reservation_id: id });
    expect(await balance('regular-user')).toBe(200);
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 100 }); // 100
    const id2 = (await check(['regular-user'], 5)).body.reservation_id; // 95
    await update({ ratelimit_keys: ['regular-user'], total_tokens: 0, reserved_tokens: 500, reservation_id: id2 });
    expect(await balance('regular-user')).toBe(100); // 5 back, not 500
  });

  test("the rule's charge field is what is corrected against the reservation", async () => {
    const id = (await check(['subscriber-x'], 300)).body.reservation_id; // 700
    await update({
      ratelimit_keys: ['subscriber-x'],
      prompt_tokens: 1000,
      completion_tokens: 100,
      total_tokens: 1100,
      reserved_tokens: 300,
      reservation_id: id,
    });
    expect(await balance('subscriber-x')).toBe(900);
  });

  test('estimated: true is counted by rule and otherwise treated the same; unknown fields ignored', async () => {
    const id = (await check(['regular-user', 'nobody'], 100)).body.reservation_id;
    expect(
      await update({
        ratelimit_keys: ['regular-user', 'nobody'],
        total_tokens: 60,
        reserved_tokens: 100,
        reservation_id: id,
        estimated: true,
        something_new: [1],
      }),
    ).toBe(200);
    expect(await balance('regular-user')).toBe(140);
    expect(await update({ ratelimit_keys: ['regular-user'], total_tokens: 10, estimated: false })).toBe(200);
    expect(await balance('regular-user')).toBe(130);
    const m = await metrics();
    expect(m).toContain('llmrl_estimated_reports_total{rule="^regular-user"} 1');
    expect(m).not.toContain('llmrl_estimated_reports_total{rule=""}');
  });

  test('estimated reports are logged at debug (counts only, no keys)', async () => {
    const lines: string[] = [];
    const { createLogger } = await import('../src/log');
    const s2 = await startService({ rules: RULES, logger: createLogger('debug', (l) => lines.push(l)) });
    try {
      await fetch(`${s2.url}/update_ratelimit_record`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ ratelimit_keys: ['regular-user'], total_tokens: 5, reserved_tokens: 9, estimated: true }),
      });
    } finally {
      await s2.close();
    }
    const rec = lines.map((l) => JSON.parse(l)).find((r) => r.msg === 'estimated report');
    expect(rec).toMatchObject({ level: 'debug', keys: 1, ruled: 1, reserved_tokens: 9 });
    expect(lines.join('')).not.toContain('regular-user');
  });

  const bad: [string, unknown][] = [
    ['reserved_tokens negative', -1],
    ['reserved_tokens fractional', 1.5],
    ['reserved_tokens a string', '5'],
  ];
  test.each(bad)('%s: 400, nothing charged', async (_n, v) => {
    expect(await update({ ratelimit_keys: ['regular-user'], total_tokens: 5, reserved_tokens: v })).toBe(400);
    // A bad count is refused even beside bad metadata (which alone would be left out, the counts charged).
    expect(await update({ ratelimit_keys: ['regular-user'], total_tokens: 5, reserved_tokens: v, estimated: 'yes' })).toBe(400);
    expect(store.size).toBe(0);
  });

  test('the reference update (no reserved_tokens) charges as before', async () => {
    await update({ ratelimit_keys: ['regular-user'], prompt_tokens: 10, completion_tokens: 95, total_tokens: 105 });
    expect(await balance('regular-user')).toBe(95);
  });
});

test('ACCEPT_REFUNDS_WITHOUT_RESERVATION_ID (migration only): an update without reservation_id is refunded unverified, counted', async () => {
  const s2 = await startService({ rules: RULES, adminTokens: [ADMIN_TOKEN], limiter: { acceptRefundsWithoutReservationId: true } });
  try {
    const post = (body: unknown) =>
      fetch(`${s2.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    await fetch(`${s2.url}/ratelimit?ratelimit_keys=${q(['regular-user'])}&reserve=150`); // 50
    expect((await post({ ratelimit_keys: ['regular-user'], total_tokens: 100, reserved_tokens: 150 })).status).toBe(200);
    const bal = async () => (await (await adminFetch(s2, '/buckets/regular-user')).json()).balance;
    expect(await bal()).toBe(100);
    // With an id, the verified path still applies: a made-up id refunds nothing.
    await post({ ratelimit_keys: ['regular-user'], total_tokens: 10, reserved_tokens: 150, reservation_id: 'made-up' });
    expect(await bal()).toBe(90);
    expect(await (await adminFetch(s2, '/metrics')).text()).toContain('llmrl_unverified_refunds_total{rule="^regular-user"} 1');
  } finally {
    await s2.close();
  }
});
