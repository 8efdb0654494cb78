/** Scenarios 5, 6, 7 and 10: the service down or slow, Redis lost and back, invalid configuration. */
import { startStack, Stack } from '../src/harness/stack';
import { chat } from '../src/harness/http';
import { envoyRejects } from '../src/harness/envoy';
import { startService, withCharge } from '../src/harness/service';
import { startStandin, Standin } from '../src/harness/standin';
import { waitFor } from '../src/harness/process';
import { PLUGIN_WASM, PLUGIN_CONFIG_FILE, readJson } from '../src/harness/paths';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';
import { holdPort, HeldPort } from '../../test-support/ports';
import { startRedis } from '../../test-support/redis';

const HOST = 'dashscope.aliyuncs.com';
const seedConfig = readJson<Record<string, unknown>>(PLUGIN_CONFIG_FILE);
const withService = (extra: Record<string, unknown>) => ({
  ...seedConfig,
  ...extra,
  rateLimitService: { service: RLS_SERVICE, port: RLS_PORT, ...(extra.rateLimitService as object) },
});

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = Date.now();
  const r = await f();
  return [r, Date.now() - t0];
}

describe('rate-limit service unreachable', () => {
  let open: Stack;
  let closed: Stack;
  let dead: HeldPort;
  beforeAll(async () => {
    dead = await holdPort(); // refuses connections, and nothing else can listen there meanwhile
    const svc = { host: '127.0.0.1', port: dead.port };
    open = await startStack({ rateLimitService: svc, pluginConfig: withService({ failOpen: true }) });
    closed = await startStack({ rateLimitService: svc, pluginConfig: withService({ failOpen: false }) });
  });
  afterAll(async () => {
    await open?.stop();
    await closed?.stop();
    await dead?.release();
  });

  test('failOpen: true lets the request through to the LLM', async () => {
    const r = await chat(open.envoy.port, HOST, { 'user-type': 'regular-user' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).usage.total_tokens).toBe(105);
  });

  test('failOpen: false answers 503 quickly, without calling the LLM', async () => {
    const upstream = closed.mock!.requests.length;
    const [r, ms] = await timed(() => chat(closed.envoy.port, HOST, { 'user-type': 'regular-user' }));
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/rate.limit service/i);
    expect(ms).toBeLessThan(1500);
    expect(closed.mock!.requests.length).toBe(upstream);
  });
});

describe('rate-limit service slower than timeoutMs', () => {
  let slow: Standin;
  let open: Stack;
  let closed: Stack;
  beforeAll(async () => {
    slow = await startStandin();
    slow.delayMs = 3000;
    const svc = { host: '127.0.0.1', port: slow.port };
    open = await startStack({ rateLimitService: svc, pluginConfig: withService({ failOpen: true, rateLimitService: { timeoutMs: 300 } }) });
    closed = await startStack({ rateLimitService: svc, pluginConfig: withService({ fallOpen: false, rateLimitService: { timeoutMs: 300 } }) });
  });
  afterAll(async () => {
    await open?.stop();
    await closed?.stop();
    await slow?.close();
  });

  test('the decision comes within the timeout plus a small margin, per the fail setting', async () => {
    const [a, msOpen] = await timed(() => chat(open.envoy.port, HOST, { 'user-type': 'u1' }));
    expect(a.status).toBe(200);
    const [b, msClosed] = await timed(() => chat(closed.envoy.port, HOST, { 'user-type': 'u1' }));
    expect(b.status).toBe(503);
    for (const ms of [msOpen, msClosed]) {
      expect(ms).toBeGreaterThanOrEqual(280);
      expect(ms).toBeLessThan(300 + 700);
    }
  });
});

describe('Redis stopped mid-run and started again', () => {
  test('the plugin fails open while Redis is down; limiting resumes when it is back, with no restart', async () => {
    const redis = await startRedis();
    const rules = [{ rate_limit_key_regex: '^r-', redis_expired_seconds: 600, fill_interval_second: 60, tokens_per_fill: 10, max_tokens: 100 }];
    const stack = await startStack({ redisUrl: redis.url, rules });
    let redis2: Awaited<ReturnType<typeof startRedis>> | undefined;
    try {
      const first = await withCharge(stack.service.port, 'r-1', 100, () => chat(stack.envoy.port, HOST, { 'user-type': 'r-1' }));
      expect(first.after).toBe(100 - 105);

      await redis.stop();
      // The service answers 503 within its command timeout; the plugin (failOpen default) lets it through.
      const [down, ms] = await timed(() => chat(stack.envoy.port, HOST, { 'user-type': 'r-1' }));
      expect(down.status).toBe(200);
      expect(ms).toBeLessThan(1500);
      const stats = await stack.envoy.stats('llm_ratelimit');
      expect(
        Object.entries(stats)
          .filter(([k]) => /check.*fail|fail.*open/.test(k))
          .reduce((n, [, v]) => n + v, 0),
      ).toBeGreaterThan(0);

      redis2 = await startRedis({ port: redis.port }); // same address, empty data
      // Limiting resumes: a fresh bucket of 100, spent by one answer, then refused.
      await waitFor(
        'limiting to resume',
        async () => {
          const r = await chat(stack.envoy.port, HOST, { 'user-type': 'r-2' });
          return r.status === 429 ? r : undefined;
        },
        15000,
        200,
      );
    } finally {
      await stack.stop();
      await redis2?.stop();
    }
  }, 60000);
});

describe('invalid configuration', () => {
  test('Envoy rejects an invalid pluginConfig and the plugin log names the field and value', async () => {
    const bad = { ...seedConfig, rateLimitService: { service: RLS_SERVICE, port: 'eighty' } };
    const r = await envoyRejects({
      llm: { host: '127.0.0.1', port: 1 },
      rateLimitService: { host: '127.0.0.1', port: 1 },
      wasmPath: PLUGIN_WASM,
      pluginConfig: bad,
    });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBe('still running');
    expect(r.output).toContain('rateLimitService.port');
    expect(r.output).toContain('eighty');
  });

  test('the service refuses an invalid RATE_LIMIT_CONFIG, naming the rule and the field', async () => {
    const rules = [
      { rate_limit_key_regex: '^ok', redis_expired_seconds: 60, fill_interval_second: 10, tokens_per_fill: 5, max_tokens: 50 },
      { rate_limit_key_regex: '^bad', redis_expired_seconds: 60, fill_interval_second: 10, tokens_per_fill: -5, max_tokens: 50 },
    ];
    await expect(startService({ rules })).rejects.toThrow(/service exited \((?!0\))[^)]*\)[\s\S]*(rule\s*\[?1\]?|\[1\])[\s\S]*tokens_per_fill[\s\S]*-5/);
  });
});
