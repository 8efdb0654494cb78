import { startRedis } from '../../test-support/redis';
import { startService, RedisStore } from '../src/start';

const RULES = JSON.stringify([
  { rate_limit_key_regex: '^regular-user', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 200 },
]);

test('walking skeleton: check, update, limited, against a real redis-server', async () => {
  const redis = await startRedis();
  const store = new RedisStore({ urls: [redis.url] });
  await store.connect();
  const svc = await startService({ rules: RULES, store });
  try {
    const check = () => fetch(`${svc.url}/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D`).then((r) => r.json());
    expect(await check()).toMatchObject({ allow: true, description: 'ok' });
    const up = await fetch(`${svc.url}/update_ratelimit_record`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ratelimit_keys: ['regular-user'], prompt_tokens: 10, completion_tokens: 95, total_tokens: 200 }),
    });
    expect(up.status).toBe(200);
    expect(await check()).toMatchObject({ allow: false, description: 'regular-user is being rate-limited' });
  } finally {
    await svc.close();
    await redis.stop();
  }
});
