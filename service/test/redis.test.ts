/** Integration against real redis-server processes started and stopped here. */
import { startService } from '../src/start';
import { ADMIN_TOKEN, adminFetch } from './support/admin';
import { RedisStore } from '../src/store/redis';
import { startRedis, startRedisCluster, directClient, directCluster } from '../../test-support/redis';

const RULES = JSON.stringify([
  { rate_limit_key_regex: '^regular-user', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 200 },
  { rate_limit_key_regex: '^big', redis_expired_seconds: 3600, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: 100000 },
]);
const CHECK = '/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D';
const post = (url: string, body: unknown) =>
  fetch(`${url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('records: one hash per key under llmrl:{key}, TTL set, unruled keys leave nothing, NOSCRIPT reloads', async () => {
  const redis = await startRedis();
  const store = new RedisStore({ urls: [redis.url] });
  await store.connect();
  const svc = await startService({ rules: RULES, store });
  try {
    expect((await post(svc.url, { ratelimit_keys: ['regular-user', 'nobody'], total_tokens: 105 })).status).toBe(200);
    const c = await directClient(redis.url);
    expect((await c.keys('*')).sort()).toEqual(['llmrl:{regular-user}']);
    const h = await c.hGetAll('llmrl:{regular-user}');
    expect(h.b).toBe('95');
    expect(Number(h.t)).toBeGreaterThan(1.7e15); // microseconds
    const ttl = await c.pTTL('llmrl:{regular-user}');
    expect(ttl).toBeGreaterThan(299_000);
    expect(ttl).toBeLessThanOrEqual(300_000);
    // A check does not write.
    await fetch(svc.url + '/ratelimit?ratelimit_keys=%5B%22regular-user-2%22%5D');
    expect(await c.exists('llmrl:{regular-user-2}')).toBe(0);
    // Script cache flushed (Redis restart, failover): EVALSHA → NOSCRIPT → EVAL, transparently.
    await c.scriptFlush();
    const r = await (await fetch(svc.url + CHECK)).json();
    expect(r).toMatchObject({ allow: true, remaining: 95 });
    await c.close();
  } finally {
    await svc.close();
    await redis.stop();
  }
});

test('200 parallel updates on one key lose nothing', async () => {
  const redis = await startRedis();
  const store = new RedisStore({ urls: [redis.url] });
  await store.connect();
  const svc = await startService({ rules: RULES, store });
  try {
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => post(svc.url, { ratelimit_keys: ['big-one'], total_tokens: i + 1 })));
    expect(replies.every((r) => r.status === 200)).toBe(true);
    const c = await directClient(redis.url);
    const h = await c.hGetAll('llmrl:{big-one}');
    await c.close();
    expect(Number(h.b)).toBe(100000 - (200 * 201) / 2);
  } finally {
    await svc.close();
    await redis.stop();
  }
});

test('Redis down: 503 within the command timeout, /readyz 503; service resumes when Redis returns', async () => {
  const redis = await startRedis();
  const store = new RedisStore({ urls: [redis.url], commandTimeoutMs: 300 });
  await store.connect();
  const svc = await startService({ rules: RULES, store });
  let redis2: Awaited<ReturnType<typeof startRedis>> | undefined;
  try {
    expect((await fetch(svc.url + CHECK)).status).toBe(200);
    await redis.stop();
    for (const send of [() => fetch(svc.url + CHECK), () => post(svc.url, { ratelimit_keys: ['regular-user'], total_tokens: 1 })]) {
      const t0 = Date.now();
      const r = await send();
      expect(r.status).toBe(503);
      expect(await r.json()).toEqual({ error: 'rate-limit store unavailable' });
      expect(Date.now() - t0).toBeLessThan(1000);
    }
    expect((await fetch(svc.url + '/readyz')).status).toBe(503);
    redis2 = await startRedis({ port: redis.port });
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await fetch(svc.url + CHECK)).status;
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
    expect((await fetch(svc.url + '/readyz')).status).toBe(200);
    // Hung Redis (process stopped, sockets open): the command timeout bounds the request.
    process.kill(redis2.pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      expect((await fetch(svc.url + CHECK)).status).toBe(503);
      expect(Date.now() - t0).toBeLessThan(1000);
    } finally {
      process.kill(redis2.pid, 'SIGCONT');
    }
    const deadline2 = Date.now() + 10_000;
    while (Date.now() < deadline2 && (await fetch(svc.url + CHECK)).status !== 200) await new Promise((r) => setTimeout(r, 100));
    expect((await fetch(svc.url + CHECK)).status).toBe(200);
  } finally {
    await svc.close();
    await redis.stop();
    await redis2?.stop();
  }
}, 20_000);

test('Redis Cluster (3 masters): buckets work across slots', async () => {
  const cluster = await startRedisCluster();
  const store = new RedisStore({ urls: cluster.urls, cluster: true });
  const svc = await startService({ rules: RULES, store, adminTokens: [ADMIN_TOKEN] });
  try {
    await store.connect(5000);
    await store.ping();
    // Enough keys to hit every master.
    const keys = Array.from({ length: 12 }, (_, i) => `regular-user-${i}`);
    for (const k of keys) expect((await post(svc.url, { ratelimit_keys: [k], total_tokens: 10 + keys.indexOf(k) })).status).toBe(200);
    const r = await (await fetch(`${svc.url}/ratelimit?ratelimit_keys=${encodeURIComponent(JSON.stringify(keys))}`)).json();
    expect(r).toEqual({ allow: true, description: 'ok', key: 'regular-user-11', limit: 200, remaining: 179 });
    let onNodes = 0;
    const direct = await directCluster(cluster.urls);
    for (const m of direct.masters) {
      const n = await (await direct.nodeClient(m)).dbSize();
      if (n > 0) onNodes++;
    }
    await direct.close();
    expect(onNodes).toBe(3);
    await post(svc.url, { ratelimit_keys: ['regular-user-3'], total_tokens: 500 });
    expect(await (await fetch(`${svc.url}/ratelimit?ratelimit_keys=${encodeURIComponent(JSON.stringify(keys))}`)).json()).toMatchObject({
      allow: false,
      key: 'regular-user-3',
    });
    // Reserve across slots: refused on regular-user-3, the reservations on the other masters are returned.
    const balances = async () => Promise.all(keys.map(async (k) => (await (await adminFetch(svc, `/buckets/${k}`)).json()).balance as number));
    const before = await balances();
    const reserveUrl = `${svc.url}/ratelimit?ratelimit_keys=${encodeURIComponent(JSON.stringify(keys))}&reserve=20`;
    expect(await (await fetch(reserveUrl)).json()).toMatchObject({ allow: false, key: 'regular-user-3' });
    expect(await balances()).toEqual(before);
    const others = keys.filter((k) => k !== 'regular-user-3');
    const ok = await (await fetch(`${svc.url}/ratelimit?ratelimit_keys=${encodeURIComponent(JSON.stringify(others))}&reserve=20`)).json();
    expect(ok).toMatchObject({ allow: true, reserved: 20, key: 'regular-user-11', remaining: 159 });
    expect((await fetch(svc.url + '/readyz')).status).toBe(200);
  } finally {
    await svc.close();
    await cluster.stop();
  }
}, 30_000);
