/**
 * The Grafana dashboard (deploy/grafana/llm-token-ratelimit.json) shows only what exists: the
 * real stack (Envoy + plugin + service with WORKERS=2 on Redis), a few requests (one limited),
 * then every metric name any panel query uses must be exported by the service's admin /metrics
 * or Envoy's /stats/prometheus (a misspelt or absent name fails the test, naming the query).
 */
import * as fs from 'fs';
import * as path from 'path';
import { startStack, Stack } from '../src/harness/stack';
import { chat, request } from '../src/harness/http';
import { REPO } from '../src/harness/paths';
import { exported, metricNames } from '../src/harness/prometheus';
import { startRedis, type RedisHandle } from '../../test-support/redis';

const fromEnvoy = (name: string) => !name.startsWith('llmrl_');
const DASHBOARD = path.join(REPO, 'deploy/grafana/llm-token-ratelimit.json');
const HOST = 'dashscope.aliyuncs.com';
const TOP_KEYS_SECONDS = 3;

/** Every expr of every panel (rows' nested panels included). */
function queries(d: any): string[] {
  const out: string[] = [];
  const walk = (ps: any[]) => {
    for (const p of ps ?? []) {
      for (const t of p.targets ?? []) if (t.expr) out.push(t.expr);
      walk(p.panels);
    }
  };
  walk(d.panels);
  return out;
}

let stack: Stack;
let redis: RedisHandle;
beforeAll(async () => {
  redis = await startRedis();
  stack = await startStack({ redisUrl: redis.url, serviceEnv: { WORKERS: '2', TOP_KEYS_INTERVAL_SECONDS: String(TOP_KEYS_SECONDS) } });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await redis?.stop();
});

test('metricNames reads names out of queries (and not label values)', () => {
  expect(metricNames('histogram_quantile(0.99, sum by (le) (rate(llmrl_request_duration_seconds_bucket{route="/ratelimit", x="envoy_fake"}[5m])))')).toEqual([
    'llmrl_request_duration_seconds_bucket',
  ]);
  expect(metricNames('sum(rate(llm_ratelimit_a[1m])) / sum(llmrl_b) + envoy_c')).toEqual(['llm_ratelimit_a', 'llmrl_b', 'envoy_c']);
});

test('every metric a dashboard query uses is exported by the running service or Envoy', async () => {
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  const exprs = queries(dashboard);
  expect(exprs.length).toBeGreaterThanOrEqual(10);
  // All the traffic inside one top-keys interval (they are aligned on the wall clock).
  const ms = TOP_KEYS_SECONDS * 1000;
  await new Promise((r) => setTimeout(r, ms - (Date.now() % ms) + 50));
  // regular-user: 200 tokens, 105 per answer: two answers, then 429 from Envoy.
  const statuses: number[] = [];
  for (let i = 0; i < 3; i++) {
    statuses.push((await chat(stack.envoy.port, HOST, { 'user-type': 'regular-user' })).status);
    await new Promise((r) => setTimeout(r, 300)); // the report is asynchronous
  }
  expect(statuses).toEqual([200, 200, 429]);
  // Until that interval has closed, llmrl_top_key_tokens has no sample.
  const end = Date.now() + 2 * ms;
  let svc = await request(stack.service.adminPort, { path: '/metrics' });
  while (!/^llmrl_top_key_tokens\{/m.test(svc.body) && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    svc = await request(stack.service.adminPort, { path: '/metrics' });
  }
  const env = await request(stack.envoy.adminPort, { path: '/stats/prometheus' });
  expect(svc.status).toBe(200);
  expect(env.status).toBe(200);
  const s = exported(svc.body);
  const e = exported(env.body);
  const missing: string[] = [];
  for (const expr of exprs) {
    for (const name of metricNames(expr)) {
      const from = fromEnvoy(name) ? e : s;
      if (!from.samples.has(name) && !from.declared.has(name)) missing.push(`${name} (in ${expr})`);
    }
  }
  expect(missing).toEqual([]);
  // What this traffic must have produced has samples, with the values it caused.
  expect(svc.body).toMatch(/^llmrl_tokens_charged_total\{rule="\^regular-user"\} 210$/m);
  expect(svc.body).toMatch(/^llmrl_decisions_total\{rule="\^regular-user",result="limited"\} 1$/m);
  expect(svc.body).toMatch(/^llmrl_top_key_tokens\{key="regular-user",rule="\^regular-user"\} 210$/m);
  expect(s.samples.has('llmrl_request_duration_seconds_bucket')).toBe(true);
  expect(env.body).toMatch(/^llm_ratelimit_requests_allowed(\{\})? 2$/m);
  expect(env.body).toMatch(/^llm_ratelimit_requests_limited(\{\})? 1$/m);
  expect(env.body).toMatch(/^llm_ratelimit_reports_sent(\{\})? 2$/m);
});
