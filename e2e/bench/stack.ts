/** The processes a run measures: Redis, the service, the mock LLM (in this process), and an Envoy per configuration. */
import { createMockLlm, MockLlm } from '../src/mock-llm';
import { Envoy, EnvoyOptions, startEnvoy } from '../src/harness/envoy';
import { PLUGIN_CONFIG_FILE, readJson } from '../src/harness/paths';
import { Service, startService } from '../src/harness/service';
import { startRedis, RedisHandle } from '../../test-support/redis';
import { pin } from './proc';
import type { Config } from './result';
import { BODY_KEY, ENVOY_CONCURRENCY, ENVOY_CPUS, MATCHED_HOST, OTHER_CPUS, RLS_CLUSTER, RULES, UNMATCHED_HOST } from './settings';

/** The Wasm files the Envoys load (private copies: a rebuild during the run must not change what is measured). */
export interface Modules {
  plugin: string;
  /** e2e/bench/noop-filter/index.ts: the plugin's callbacks, each returning at once. */
  noop: string;
  /** e2e/bench/noop-filter/read-host.ts: the same, reading :authority. */
  readHost: string;
}

export interface Stack {
  redis: RedisHandle;
  mock: MockLlm;
  service: Service;
  /** A fresh Envoy set up for configuration `c`, pinned to Envoy's core. */
  startEnvoy(c: Config): Promise<Envoy>;
}

/** The Envoys the throughput and fixed-rate phases share, by the configuration each serves. */
export type SharedEnvoys = Partial<Record<Config, Envoy>>;

type OnStop = (stop: () => Promise<void>) => void;

/** Starts Redis, the mock LLM and the service; `onStop` gets how to stop each, in start order. */
export async function startStack(wasm: Modules, onStop: OnStop): Promise<Stack> {
  pin(process.pid, OTHER_CPUS); // the mock LLM runs in this process
  const redis = await startRedis();
  onStop(() => redis.stop());
  pin(redis.pid, OTHER_CPUS);
  const mock = await createMockLlm();
  onStop(() => mock.close());
  const service = await startService({ rules: RULES, redisUrl: redis.url });
  onStop(() => service.stop());
  pin(service.proc.pid, OTHER_CPUS);
  const common = { llm: { host: '127.0.0.1', port: mock.port }, rateLimitService: { host: '127.0.0.1', port: service.port }, concurrency: ENVOY_CONCURRENCY };
  const withPlugin = { ...common, wasmPath: wasm.plugin, pluginConfig: readJson(PLUGIN_CONFIG_FILE) };
  const options = (c: Config): EnvoyOptions => {
    if (c === 'noop') return { ...common, wasmPath: wasm.noop, pluginConfig: {} };
    if (c === 'readhost') return { ...common, wasmPath: wasm.readHost, pluginConfig: {} };
    if (c === 'unmatched' || c === 'matched') return withPlugin;
    if (c === 'scoped') return { ...withPlugin, pluginOnlyForHosts: [MATCHED_HOST] };
    if (c === 'bodykey') return { ...withPlugin, pluginConfig: { ...readJson<object>(PLUGIN_CONFIG_FILE), rateLimitKeys: [BODY_KEY] } };
    return common;
  };
  const startFor = async (c: Config) => {
    const envoy = await startEnvoy(options(c));
    try {
      pin(envoy.proc.pid, ENVOY_CPUS);
    } catch (e) {
      await envoy.stop();
      throw e;
    }
    return envoy;
  };
  return { redis, mock, service, startEnvoy: startFor };
}

/** The shared Envoys, started in order; stop() stops them last started first. */
export async function startSharedEnvoys(stack: Stack, onStop: OnStop): Promise<{ envoys: SharedEnvoys; stop: () => Promise<void> }> {
  const started: Envoy[] = [];
  const start = async (c: Config) => {
    const envoy = await stack.startEnvoy(c);
    onStop(() => envoy.stop());
    started.push(envoy);
    return envoy;
  };
  const base = await start('baseline');
  const base2 = await start('baseline2'); // a second plain Envoy: the noise floor
  const noop = await start('noop');
  const plugin = await start('unmatched'); // also 'matched': only the Host header differs
  const scoped = await start('scoped');
  const bodykey = await start('bodykey');
  return {
    // 'baseline' sends the same request bytes as 'matched'; 'service' is not through Envoy (see measure()).
    envoys: { baseline: base, service: base, baseline2: base2, noop, unmatched: plugin, matched: plugin, scoped, bodykey },
    stop: async () => {
      for (const envoy of started.reverse()) await envoy.stop();
    },
  };
}

/** The Host header a configuration's requests carry: the plugin's own host, except where the point is not to match. */
export const hostOf = (c: Config) => (c === 'unmatched' || c === 'scoped' ? UNMATCHED_HOST : MATCHED_HOST);

/** Requests Envoy completed upstream and calls it made to the rate-limit service, from its cluster stats. */
export async function counters(envoy: Envoy): Promise<{ upstream: number; rls: number }> {
  const s = await envoy.stats('upstream_rq_completed');
  return { upstream: s['cluster.llm_upstream.upstream_rq_completed'] ?? 0, rls: s[`cluster.${RLS_CLUSTER}.upstream_rq_completed`] ?? 0 };
}
