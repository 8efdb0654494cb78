/** Bucket helpers and the embedded store's expiry and bounds, on a controllable clock. */
import { applyBucket, recordTtlMs, retryAfterSeconds } from '../src/bucket/math';
import { MemoryStore } from '../src/store/memory';
import { P, S, T0 } from './bucket-cases';

test('retry_after_seconds: until the balance is next above zero', () => {
  // balance 0 at 10 s into an interval: one fill, 20 s away.
  expect(retryAfterSeconds({ balance: 0, lastFillUs: T0, nowUs: T0 + 10 * S }, P)).toBe(20);
  // -50 needs two fills (the first only reaches 0).
  expect(retryAfterSeconds({ balance: -50, lastFillUs: T0, nowUs: T0 + 10 * S }, P)).toBe(50);
  expect(retryAfterSeconds({ balance: -49, lastFillUs: T0, nowUs: T0 + 10 * S }, P)).toBe(20);
  expect(retryAfterSeconds({ balance: -100, lastFillUs: T0, nowUs: T0 + 10 * S }, P)).toBe(80);
  // Sub-second remainder rounds up, never 0 while limited.
  expect(retryAfterSeconds({ balance: 0, lastFillUs: T0, nowUs: T0 + 29 * S + 999_999 }, P)).toBe(1);
  expect(retryAfterSeconds({ balance: 1, lastFillUs: T0, nowUs: T0 }, P)).toBe(0);
});

test('record TTL: redis_expired_seconds, extended until the bucket is full again', () => {
  expect(recordTtlMs(200, T0, T0, P)).toBe(300_000);
  expect(recordTtlMs(100, T0, T0, P)).toBe(300_000); // full after 60 s < 300 s
  expect(recordTtlMs(-500, T0, T0 + 10 * S, P)).toBe(14 * 30_000 - 10_000); // 700 tokens = 14 fills
  expect(applyBucket(undefined, P, T0, 'charge', 700).ttlMs).toBe(14 * 30_000); // 200 - 700 = -500
});

describe('embedded store', () => {
  let now = T0;
  const clock = () => now;

  test('idle records expire (lazily): the key starts full again', async () => {
    const m = new MemoryStore({ nowUs: clock, sweepIntervalMs: 0 });
    await m.run('k', P, 'charge', 150);
    now += 299 * S;
    expect((await m.run('k', P, 'check', 0)).balance).toBe(200); // refilled, record still there
    expect(m.ttlMs('k', now)).toBe(1000);
    now += 1 * S;
    expect(m.ttlMs('k', now)).toBe(-2);
    expect((await m.run('k', P, 'charge', 1)).balance).toBe(199);
    await m.close();
  });

  test('a record in debt outlives redis_expired_seconds until it would be full', async () => {
    const m = new MemoryStore({ nowUs: clock, sweepIntervalMs: 0 });
    await m.run('d', P, 'charge', 1000); // -800: 20 fills = 600 s to full
    now += 400 * S;
    expect((await m.run('d', P, 'check', 0)).balance).toBe(-800 + 13 * 50);
    await m.close();
  });

  test('the sweep drops expired records; at the bound a full bucket goes first, then the least spent one; never one at or below zero', async () => {
    let full = 0;
    const m = new MemoryStore({ nowUs: clock, sweepIntervalMs: 0, maxKeys: 3, onFull: () => full++ });
    await m.run('a', P, 'charge', 1); // 199
    await m.run('b', P, 'charge', 1);
    await m.run('c', P, 'charge', 50); // 150
    await m.run('b', P, 'charge', -1); // b is a full bucket again: carries no information
    const d = await m.run('d', P, 'charge', 1); // takes b's place, forgiving nothing
    expect(d.forgiven).toBeUndefined();
    expect(m.size).toBe(3);
    expect(m.ttlMs('b', now)).toBe(-2);
    expect(m.ttlMs('d', now)).toBeGreaterThan(0);
    // No full bucket: the new key takes the place of the least spent one (a or d: 1 token given back).
    expect(await m.run('e', P, 'charge', 300)).toMatchObject({ balance: -100, forgiven: 1 }); // e: in debt
    expect(await m.run('f', P, 'charge', 200)).toMatchObject({ balance: 0, forgiven: 1 }); // f: exhausted
    expect(m.ttlMs('c', now)).toBeGreaterThan(0); // c (50 spent) stayed
    expect(await m.run('g', P, 'charge', 1)).toMatchObject({ balance: 199, forgiven: 50 });
    expect(m.size).toBe(3);
    // g is the only positive one left: it goes next. Then only e (debt) and f (0) remain.
    expect(await m.run('h', P, 'charge', 250)).toMatchObject({ balance: -50, forgiven: 1 });
    expect(full).toBe(0);
    // Every record is at or below zero: a new key is refused, nothing is forgotten.
    expect(await m.run('i', P, 'charge', 5)).toMatchObject({ storeFull: true, balance: 0 });
    expect(await m.run('i', P, 'check', 0)).toMatchObject({ storeFull: true, balance: 0 });
    expect(await m.run('i', P, 'reserve', 5)).toMatchObject({ storeFull: true, admitted: false });
    expect(full).toBe(3);
    expect(m.ttlMs('i', now)).toBe(-2);
    expect((await m.run('e', P, 'check', 0)).balance).toBe(-100);
    expect((await m.run('f', P, 'check', 0)).balance).toBe(0);
    // Once a bucket has refilled above zero (one fill here: f at 50), it may make room.
    now += 30 * S;
    expect((await m.run('i', P, 'charge', 5)).balance).toBe(195);
    expect(m.size).toBe(3);
    now += 3600 * S;
    expect(m.sweep(now)).toBe(3);
    expect(m.size).toBe(0);
    await m.close();
  });

  test('a flood of 100,000 new keys that each spend a little leaves room for newcomers and keeps every debt', async () => {
    const m = new MemoryStore({ nowUs: clock, sweepIntervalMs: 0 }); // MEMORY_MAX_KEYS default: 100,000
    await m.run('debtor', P, 'charge', 1000); // -800
    for (let i = 0; i < 100_000; i++) await m.run(`flood-${i}`, P, 'charge', 1 + (i % 150));
    expect(m.size).toBe(100_000);
    for (let i = 0; i < 1000; i++) {
      const r = await m.run(`newcomer-${i}`, P, 'reserve', 100);
      expect(r.storeFull).toBeUndefined();
      expect(r).toMatchObject({ admitted: true, balance: 100 });
    }
    expect(m.size).toBe(100_000);
    expect((await m.run('debtor', P, 'check', 0)).balance).toBe(-800);
    await m.close();
  });

  test('checks never create records', async () => {
    const m = new MemoryStore({ nowUs: clock, sweepIntervalMs: 0 });
    for (let i = 0; i < 100; i++) await m.run(`new-${i}`, P, 'check', 0);
    expect(m.size).toBe(0);
    await m.close();
  });
});
