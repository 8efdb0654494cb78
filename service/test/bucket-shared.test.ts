/** One suite, every store: the Lua and the TS bucket must agree case by case. */
import { MemoryStore } from '../src/store/memory';
import { RedisStore } from '../src/store/redis';
import type { BucketStore } from '../src/store/types';
import { createClient } from 'redis';
import { CASES, runCase, clock } from './bucket-cases';
import { startRedis, type RedisHandle } from '../../test-support/redis';

let redis: RedisHandle;
let redisStore: RedisStore;
// The test's own client, to read and drop records behind the store's back.
let direct: ReturnType<typeof createClient>;
// Both stores run at the test's clock (clock.now, µs): the suite moves time itself.
const memory = new MemoryStore({ sweepIntervalMs: 0, nowUs: () => clock.now });

beforeAll(async () => {
  redis = await startRedis();
  redisStore = new RedisStore({ urls: [redis.url], nowUs: () => clock.now });
  await redisStore.connect();
  direct = createClient({ url: redis.url });
  await direct.connect();
});

afterAll(async () => {
  await direct?.close();
  await redisStore?.close();
  await memory.close();
  await redis?.stop();
});

/** One op on both stores at `now`. */
async function both(key: string, p: any, op: 'check' | 'charge' | 'reserve', cost: number, now: number, extra?: any) {
  clock.now = now;
  const a = await memory.run(key, p, op, cost, extra);
  const b = await redisStore.run(key, p, op, cost, extra);
  return [a, b];
}

const stores: [string, () => BucketStore][] = [
  ['memory', () => memory],
  ['redis', () => redisStore],
];

describe.each(stores)('%s store', (name, store) => {
  test.each(CASES.map((c, i) => [c.name, i] as const))('%s', async (_n, i) => {
    expect(await runCase(store(), `case-${i}`, CASES[i])).toEqual([]);
  });
});

test('both stores return identical results step by step, including the record TTL', async () => {
  // Same random walk on both stores.
  let seed = 42;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const p = { maxTokens: 500, tokensPerFill: 7, fillIntervalUs: 3_000_000, ttlSeconds: 5, maxDebt: 5000 };
  let now = 1_800_000_000_000_000;
  for (let i = 0; i < 150; i++) {
    now += rnd(4_000_000);
    // check, charge, reserve, refund (a negative charge)
    const kind = rnd(4);
    const op = kind === 0 ? 'check' : kind === 2 ? 'reserve' : 'charge';
    const cost = kind === 3 ? -rnd(300) : rnd(120);
    // Redis expires records on its own clock, not the test's: mirror the embedded store's
    // expiry (refunds make full buckets, whose records live only redis_expired_seconds).
    if (memory.ttlMs('walk', now) === -2) await direct.del('llmrl:{walk}');
    const [a, b] = await both('walk', p, op, cost, now);
    expect([i, b]).toEqual([i, a]);
    if (op === 'charge' || (op === 'reserve' && a.admitted)) {
      const memTtl = memory.ttlMs('walk', now);
      const redisTtl = await direct.pTTL('llmrl:{walk}');
      expect(memTtl).toBeGreaterThanOrEqual(5000); // never below redis_expired_seconds
      expect(Math.abs(redisTtl - memTtl)).toBeLessThan(100);
    }
  }
});

test('a refused reservation writes nothing (no record created or extended)', async () => {
  const p = { maxTokens: 100, tokensPerFill: 10, fillIntervalUs: 1_000_000, ttlSeconds: 5, maxDebt: 5000 };
  const t = 1_800_000_000_000_000;
  for (const s of [memory, redisStore] as BucketStore[]) {
    clock.now = t;
    await s.run('refused', p, 'charge', 100); // balance 0, record lives >= 10 s
    clock.now = t + 1000;
    const r = await s.run('refused', p, 'reserve', 5);
    expect(r).toMatchObject({ admitted: false, balance: 0 });
  }
  expect(memory.ttlMs('refused', t + 1000)).toBe(10_000 - 1);
  // Redis: the stored fields are those of the charge.
  expect(await direct.hGetAll('llmrl:{refused}')).toEqual({ b: '0', t: String(t) });
});

describe('property: random sequences over the whole integer range give identical results in Lua and TS', () => {
  // Seeded so a failure replays; each seed is its own random rule and sequence.
  const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
  test.each(seeds)('seed %i', async (seed0) => {
    let seed = seed0 * 7919;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const int = (max: number) => Math.floor(rnd() * (max + 1));
    // Magnitudes spread over the whole range: 0, small, medium, up to `max`.
    const wide = (max: number) => {
      const r = rnd();
      if (r < 0.1) return 0;
      if (r < 0.4) return int(1000);
      if (r < 0.7) return Math.min(max, int(10 ** int(15)));
      if (r < 0.8) return max;
      return int(max);
    };
    const maxTokens = 1 + wide(1e12 - 1);
    const p = {
      maxTokens,
      tokensPerFill: 1 + wide(1e12 - 1),
      fillIntervalUs: (1 + wide(1e12 - 1)) * 1_000_000,
      ttlSeconds: 1 + wide(1e12 - 1),
      maxDebt: rnd() < 0.5 ? 10 * maxTokens : wide(1e13),
    };
    const key = `prop-${seed0}`;
    const extraBase = { reservationTtlMs: 1e13, requestWindowMs: 1e13 };
    let now = 1_800_000_000_000_000;
    const ids: string[] = [];
    for (let i = 0; i < 120; i++) {
      now += rnd() < 0.2 ? wide(1e12) : int(5_000_000);
      if (memory.ttlMs(key, now) === -2) await direct.del(`llmrl:{${key}}`);
      const kind = int(5);
      let op: 'check' | 'charge' | 'reserve' = 'check';
      let cost = 0;
      let extra: Record<string, unknown> | undefined;
      if (kind === 1) {
        op = 'charge';
        cost = wide(Number.MAX_SAFE_INTEGER);
      } else if (kind === 2) {
        op = 'reserve';
        cost = wide(1e15);
        // Sometimes the same id again (a key listed twice in one check): amounts add up.
        const id = ids.length && rnd() < 0.3 ? ids[ids.length - 1] : `r${i}`;
        ids.push(id);
        extra = { ...extraBase, reservationId: id };
      } else if (kind === 3) {
        // A report settling a reservation (live or not, maybe twice), maybe with a request id.
        op = 'charge';
        cost = wide(Number.MAX_SAFE_INTEGER);
        const id = ids.length && rnd() < 0.8 ? ids[int(ids.length - 1)] : 'none';
        extra = { ...extraBase, reservationId: id, claimed: wide(Number.MAX_SAFE_INTEGER) };
        if (rnd() < 0.5) extra.requestId = `q${int(3)}`;
      } else if (kind === 4) {
        op = 'charge'; // a rollback: a plain refund
        cost = -wide(1e15);
      }
      const [a, b] = await both(key, p, op, cost, now, extra);
      expect([i, op, cost, extra, b]).toEqual([i, op, cost, extra, a]);
      expect(a.balance).toBeGreaterThanOrEqual(Math.min(-p.maxDebt, 0));
      expect(a.balance).toBeLessThanOrEqual(p.maxTokens);
      const wrote = (op === 'charge' && !a.duplicate) || (op === 'reserve' && a.admitted);
      const memTtl = memory.ttlMs(key, now);
      const redisTtl = await direct.pTTL(`llmrl:{${key}}`);
      if (memTtl === -2) expect(redisTtl).toBe(-2);
      else if (wrote) {
        // Lifetimes set by this write: the same in both (Redis's counts down in real time).
        expect(memTtl).toBeGreaterThan(0);
        expect(memTtl).toBeLessThanOrEqual(1e12);
        expect(Math.abs(redisTtl - memTtl)).toBeLessThan(1000);
      }
    }
  });
});

test('no store supplies a default lifetime: a reservation id without reservationTtlMs, a request id without requestWindowMs, are refused by both', async () => {
  const p = { maxTokens: 100, tokensPerFill: 10, fillIntervalUs: 1_000_000, ttlSeconds: 5, maxDebt: 5000 };
  clock.now = 1_800_000_000_000_000;
  for (const s of [memory, redisStore] as BucketStore[]) {
    await expect(s.run('no-ttl', p, 'reserve', 5, { reservationId: 'r1' })).rejects.toThrow(/reservationTtlMs/);
    await expect(s.run('no-ttl', p, 'charge', 5, { requestId: 'q1' })).rejects.toThrow(/requestWindowMs/);
  }
  // Nothing was written by either.
  expect(memory.ttlMs('no-ttl', clock.now)).toBe(-2);
  expect(await direct.exists('llmrl:{no-ttl}')).toBe(0);
});
