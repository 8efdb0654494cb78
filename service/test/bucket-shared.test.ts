/** One suite, every store: the Lua and the TS bucket must agree case by case. */
import { MemoryStore } from '../src/store/memory';
import { RedisStore } from '../src/store/redis';
import type { BucketStore } from '../src/store/types';
import { CASES, runCase } from './bucket-cases';
import { startRedis, type RedisHandle } from './support/redis-server';

let redis: RedisHandle;
let redisStore: RedisStore;
const memory = new MemoryStore({ sweepIntervalMs: 0 });

beforeAll(async () => {
  redis = await startRedis();
  redisStore = new RedisStore({ urls: [redis.url] });
  await redisStore.connect();
});

afterAll(async () => {
  await redisStore?.close();
  await memory.close();
  await redis?.stop();
});

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
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
  const p = { maxTokens: 500, tokensPerFill: 7, fillIntervalUs: 3_000_000, ttlSeconds: 5 };
  let now = 1_800_000_000_000_000;
  for (let i = 0; i < 150; i++) {
    now += rnd(4_000_000);
    // check, charge, reserve, refund (a negative charge)
    const kind = rnd(4);
    const op = kind === 0 ? 'check' : kind === 2 ? 'reserve' : 'charge';
    const cost = kind === 3 ? -rnd(300) : rnd(120);
    // Redis expires records on its own clock, not the test's: mirror the embedded store's
    // expiry (refunds make full buckets, whose records live only redis_expired_seconds).
    if (memory.ttlMs('walk', now) === -2) await redisStore.raw.del('llmrl:{walk}');
    const a = await memory.run('walk', p, op, cost, now);
    const b = await redisStore.run('walk', p, op, cost, now);
    expect([i, b]).toEqual([i, a]);
    if (op === 'charge' || (op === 'reserve' && a.admitted)) {
      const memTtl = memory.ttlMs('walk', now);
      const redisTtl = await redisStore.raw.pTTL('llmrl:{walk}');
      expect(memTtl).toBeGreaterThanOrEqual(5000); // never below redis_expired_seconds
      expect(Math.abs(redisTtl - memTtl)).toBeLessThan(100);
    }
  }
});

test('a refused reservation writes nothing (no record created or extended)', async () => {
  const p = { maxTokens: 100, tokensPerFill: 10, fillIntervalUs: 1_000_000, ttlSeconds: 5 };
  const t = 1_800_000_000_000_000;
  for (const s of [memory, redisStore] as BucketStore[]) {
    await s.run('refused', p, 'charge', 100, t); // balance 0, record lives >= 10 s
    const r = await s.run('refused', p, 'reserve', 5, t + 1000);
    expect(r).toMatchObject({ admitted: false, balance: 0 });
  }
  expect(memory.ttlMs('refused', t + 1000)).toBe(10_000 - 1);
  // Redis: the stored fields are those of the charge.
  expect(await redisStore.raw.hGetAll('llmrl:{refused}')).toEqual({ b: '0', t: String(t) });
});
