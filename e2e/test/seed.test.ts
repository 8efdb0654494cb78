/**
 * The seed scenario (the vendor document's example) through a real Envoy running the real
 * plugin.wasm, the real service and a real redis-server, with the seed's pluginConfig unchanged.
 */
import { startStack, Stack } from '../src/harness/stack';
import { chat, errorMessage } from '../src/harness/http';
import { adminRequest, balanceChange, bucketOf } from '../src/harness/service';
import { SEED_USAGE } from '../src/mock-llm';
import { rawCommand, startRedis } from '../../test-support/redis';

const HOST = 'dashscope.aliyuncs.com';

const balance = async (stack: Stack, key: string) => (await bucketOf(stack.service.port, key)).balance;

/** Sends one chat as `userType` and, when it was answered, waits until the service has been charged. */
async function spend(stack: Stack, userType: string) {
  const before = await balance(stack, userType);
  const upstreamBefore = stack.mock!.requests.length;
  const r = await chat(stack.envoy.port, HOST, { 'user-type': userType });
  const reachedUpstream = stack.mock!.requests.length > upstreamBefore;
  // The report is asynchronous: wait for it rather than racing the next check.
  const after = r.status === 200 ? await balanceChange(stack.service.port, userType, before) : await balance(stack, userType);
  return { ...r, reachedUpstream, before, after };
}

for (const store of ['embedded', 'redis'] as const) {
  describe(`seed scenario through Envoy (${store} store)`, () => {
    let stack: Stack;
    let redis: Awaited<ReturnType<typeof startRedis>> | undefined;

    beforeAll(async () => {
      if (store === 'redis') redis = await startRedis();
      stack = await startStack({ redisUrl: redis?.url });
    }, 60000);

    afterAll(async () => {
      await stack?.stop();
      await redis?.stop();
    });

    test('regular-user is answered by the LLM until its 200 tokens are spent, then limited without reaching the upstream', async () => {
      // A new bucket starts full (200); each answer costs 105: two answers, then the balance is below zero.
      const first = await spend(stack, 'regular-user');
      expect(first.status).toBe(200);
      expect(JSON.parse(first.body).usage).toEqual(SEED_USAGE);
      const second = await spend(stack, 'regular-user');
      expect(second.status).toBe(200);
      expect(second.after).toBe(200 - 2 * SEED_USAGE.total_tokens);

      const third = await spend(stack, 'regular-user');
      expect(third.status).toBe(429);
      expect(errorMessage(third.body)).toMatch(/^regular-user is being rate-limited \(limit 200 tokens; enough tokens again in \d+ s\)$/);
      expect(third.reachedUpstream).toBe(false);
      expect(third.after).toBe(third.before); // nothing charged for a rejected request
    });

    test('each answered request lowers the record by exactly the reported total_tokens', async () => {
      const r = await spend(stack, 'subscriber');
      expect(r.status).toBe(200);
      expect(r.before === null ? 1000 : r.before).toBe(1000);
      expect(r.after).toBe(1000 - SEED_USAGE.total_tokens);
      if (redis) {
        // The same figure straight from the Redis record (a hash under the service's prefix).
        const raw = await rawCommand(redis.port, 'HGET llmrl:{subscriber} b');
        expect(raw.split('\r\n')[1]).toBe(String(1000 - SEED_USAGE.total_tokens));
      }
    });

    test('subscriber (capacity 1000) gets more answers than regular-user (capacity 200)', async () => {
      let answered = 1; // one in the previous test
      for (let i = 0; i < 20; i++) {
        const r = await spend(stack, 'subscriber');
        if (r.status !== 200) {
          expect(r.status).toBe(429);
          expect(errorMessage(r.body)).toMatch(/^subscriber is being rate-limited /);
          break;
        }
        answered++;
      }
      // 1000 tokens at 105 each: the 10th answer takes the balance below zero, the 11th is refused.
      expect(answered).toBe(10);
    });

    test('a request to another host is never checked, even for a limited key', async () => {
      const before = stack.mock!.requests.length;
      const r = await chat(stack.envoy.port, 'api.openai.example', { 'user-type': 'regular-user' });
      expect(r.status).toBe(200);
      expect(stack.mock!.requests.length).toBe(before + 1);
      expect(await balance(stack, 'regular-user')).toBe(200 - 2 * SEED_USAGE.total_tokens);
    });

    test('a key that matches no rule is never limited and leaves no record', async () => {
      for (let i = 0; i < 4; i++) {
        const r = await chat(stack.envoy.port, HOST, { 'user-type': 'guest' });
        expect(r.status).toBe(200);
      }
      const b = await adminRequest(stack.service.port, '/buckets/guest');
      expect(b.status).toBe(200);
      expect(JSON.parse(b.body).rule ?? null).toBeNull();
    });
  });
}
