/** llmrl_top_key_tokens: the keys that spent most in the last completed interval, bounded. */
import { Metrics, MAX_TOP_KEYS } from '../src/metrics';
import { startService } from '../src/start';
import { settingsFromEnv } from '../src/config/env';

async function samples(m: Metrics): Promise<{ key: string; rule: string; value: number }[]> {
  const j = await m.registry.getSingleMetricAsString('llmrl_top_key_tokens');
  return j
    .split('\n')
    .filter((l) => l.startsWith('llmrl_top_key_tokens{'))
    .map((l) => {
      const m2 = /key="([^"]*)",rule="([^"]*)"\} (-?\d+)/.exec(l)!;
      return { key: m2[1], rule: m2[2], value: Number(m2[3]) };
    });
}

test('top N of the last completed interval; the current one does not show; an idle interval empties it', async () => {
  let t = 1_000_000; // an interval boundary (multiple of 60 000 + 40 000: not aligned on purpose)
  const m = new Metrics({ topKeys: 3, topKeysIntervalMs: 60_000, now: () => t });
  for (let i = 0; i < 10; i++) m.spend(`k${i}`, '^k', (i + 1) * 10);
  m.spend('k0', '^k', 1000); // k0: 1010 in all
  m.spend('k9', '^k', -40); // a refund: k9 60
  expect(await samples(m)).toEqual([]); // interval still running
  t += 60_000;
  expect(await samples(m)).toEqual([
    { key: 'k0', rule: '^k', value: 1010 },
    { key: 'k8', rule: '^k', value: 90 },
    { key: 'k7', rule: '^k', value: 80 },
  ]);
  m.spend('other', '^o', 5);
  t += 60_000;
  expect(await samples(m)).toEqual([{ key: 'other', rule: '^o', value: 5 }]);
  t += 120_000; // a whole interval without traffic
  m.spend('late', '^l', 1);
  expect(await samples(m)).toEqual([]);
});

test('the bound: TOP_KEYS at most 100 label sets; 0 shows none; bad values stop the start', async () => {
  let t = 0;
  const m = new Metrics({ topKeys: 1000, topKeysIntervalMs: 1000, now: () => t });
  for (let i = 0; i < 500; i++) m.spend(`k${i}`, 'r', i);
  t += 1000;
  const s = await samples(m);
  expect(s).toHaveLength(MAX_TOP_KEYS);
  expect(s[0]).toEqual({ key: 'k499', rule: 'r', value: 499 });
  const off = new Metrics({ topKeys: 0, topKeysIntervalMs: 1000, now: () => t });
  off.spend('a', 'r', 5);
  t += 1000;
  expect(await samples(off)).toEqual([]);
  const env = { RATE_LIMIT_CONFIG: '[]' };
  expect(settingsFromEnv(env)).toMatchObject({ topKeys: 20, topKeysIntervalMs: 60_000 });
  expect(() => settingsFromEnv({ ...env, TOP_KEYS: '101' })).toThrow('TOP_KEYS="101"');
  expect(() => settingsFromEnv({ ...env, TOP_KEYS_INTERVAL_SECONDS: '0' })).toThrow('TOP_KEYS_INTERVAL_SECONDS="0"');
});

test('fed by applied updates (the usage charged, as llmrl_tokens_charged_total), not by duplicates', async () => {
  let t = 0;
  const metrics = new Metrics({ topKeys: 5, topKeysIntervalMs: 1000, now: () => t });
  const svc = await startService({
    rules: JSON.stringify([{ rate_limit_key_regex: '^u', redis_expired_seconds: 60, fill_interval_second: 1, tokens_per_fill: 1, max_tokens: 1000 }]),
    metrics,
    adminPort: null,
  });
  try {
    const post = (b: unknown) =>
      fetch(`${svc.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(b) });
    const c = await (await fetch(`${svc.url}/ratelimit?ratelimit_keys=%5B%22u1%22%5D&reserve=100`)).json();
    await post({ ratelimit_keys: ['u1'], total_tokens: 30, reserved_tokens: 100, reservation_id: c.reservation_id, request_id: 'a' });
    await post({ ratelimit_keys: ['u2'], total_tokens: 50, request_id: 'b' });
    await post({ ratelimit_keys: ['u2'], total_tokens: 50, request_id: 'b' }); // duplicate
    await post({ ratelimit_keys: ['x'], total_tokens: 50 }); // no rule
    t += 1000;
    expect(await samples(metrics)).toEqual([
      { key: 'u2', rule: '^u', value: 50 },
      { key: 'u1', rule: '^u', value: 30 }, // its usage (the rule's charge count), whatever was reserved
    ]);
  } finally {
    await svc.close();
  }
});
