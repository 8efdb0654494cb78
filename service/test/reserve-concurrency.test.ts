/**
 * The point of reservations: concurrent requests on a fresh bucket. 64 parallel checks with
 * reserve=150 on a 2000-token bucket: admitted while balance >= 150, so exactly
 * floor(2000 / 150) = 13 are admitted and 50 tokens remain — on Redis and on the embedded store.
 */
import { Agent, request } from 'node:http';
import { startService } from '../src/start';
import { ADMIN_TOKEN, adminFetch } from './support/admin';
import { MemoryStore } from '../src/store/memory';
import { RedisStore } from '../src/store/redis';
import type { BucketStore } from '../src/store/types';
import { startRedis, type RedisHandle } from '../../test-support/redis';

const RULES = JSON.stringify([
  { rate_limit_key_regex: '^team-', redis_expired_seconds: 3600, fill_interval_second: 3600, tokens_per_fill: 100, max_tokens: 2000 },
]);

let redis: RedisHandle;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis?.stop());

function get(url: string, agent: Agent): Promise<any> {
  return new Promise((resolve, reject) => {
    request(url, { agent }, (res) => {
      let d = '';
      res.on('data', (c) => (d += c));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(d)) : reject(new Error(`${res.statusCode} ${d}`))));
    })
      .on('error', reject)
      .end();
  });
}

const stores: [string, () => Promise<BucketStore>][] = [
  ['memory', async () => new MemoryStore({ sweepIntervalMs: 0 })],
  [
    'redis',
    async () => {
      const s = new RedisStore({ urls: [redis.url] });
      await s.connect();
      return s;
    },
  ],
];

test.each(stores)('%s: 64 parallel reserve=150 checks on a fresh 2000-token bucket admit exactly 13', async (_name, make) => {
  const svc = await startService({ rules: RULES, store: await make(), adminTokens: [ADMIN_TOKEN] });
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  try {
    const url = `${svc.url}/ratelimit?ratelimit_keys=${encodeURIComponent('["team-a"]')}&reserve=150`;
    const replies = await Promise.all(Array.from({ length: 64 }, () => get(url, agent)));
    const admitted = replies.filter((r) => r.allow);
    expect(admitted.length).toBe(13);
    expect(admitted.every((r) => r.reserved === 150)).toBe(true);
    expect(replies.filter((r) => !r.allow).every((r) => r.remaining === 50 && r.reserved === undefined)).toBe(true);
    expect(new Set(admitted.map((r) => r.remaining))).toEqual(new Set(Array.from({ length: 13 }, (_, i) => 2000 - 150 * (i + 1))));
    const view = await (await adminFetch(svc, '/buckets/team-a')).json();
    expect(view.balance).toBe(50);
    // Without reserve (check-then-charge) all 64 would have been admitted.
    const plain = await Promise.all(Array.from({ length: 64 }, () => get(`${svc.url}/ratelimit?ratelimit_keys=${encodeURIComponent('["team-b"]')}`, agent)));
    expect(plain.every((r) => r.allow)).toBe(true);
  } finally {
    agent.destroy();
    await svc.close();
  }
});
