/**
 * The whole chain on one machine: mock LLM ← Envoy (+ plugin) → rate-limit service → store.
 * Everything on free loopback ports; stop() ends every process this started, by PID.
 */
import { createMockLlm, MockLlm } from '../mock-llm';
import { Envoy, startEnvoy } from './envoy';
import { Endpoint } from './envoy-config';
import { PLUGIN_CONFIG_FILE, PLUGIN_WASM, RULES_FILE, readJson, requireBuilt } from './paths';
import { Service, startService } from './service';

export interface StackOptions {
  pluginConfig?: unknown;
  rules?: unknown;
  redisUrl?: string;
  /** false: plain Envoy without the plugin (benchmark baseline). */
  plugin?: boolean;
  serviceEnv?: Record<string, string>;
  /** An upstream other than the mock LLM. */
  upstream?: Endpoint;
  /** Send the plugin's calls here instead of starting our service (a stand-in, a dead port). */
  rateLimitService?: Endpoint;
  /** Envoy runs the plugin only for these hosts (see EnvoyConfigOptions.pluginOnlyForHosts). */
  pluginOnlyForHosts?: string[];
  /** HTTP filters before the plugin (e.g. jwt_authn). */
  httpFilters?: object[];
  /** HTTP filters between the plugin and the router (e.g. a response decompressor). */
  httpFiltersAfterPlugin?: object[];
}

export interface Stack {
  envoy: Envoy;
  /** Our service, unless the stack was pointed at another rate-limit service. */
  service: Service;
  mock?: MockLlm;
  stop(): Promise<void>;
}

export async function startStack(o: StackOptions = {}): Promise<Stack> {
  const withPlugin = o.plugin !== false;
  if (withPlugin) requireBuilt(PLUGIN_WASM, 'make plugin');
  const started: { stop(): Promise<void> }[] = [];
  const stopAll = async () => {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
  };
  try {
    const mock = o.upstream ? undefined : await createMockLlm();
    if (mock) started.push({ stop: () => mock.close() });
    let service: Service | undefined;
    if (!o.rateLimitService) {
      service = await startService({ rules: o.rules ?? readJson(RULES_FILE), redisUrl: o.redisUrl, env: o.serviceEnv });
      started.push(service);
    }
    const envoy = await startEnvoy({
      llm: o.upstream ?? { host: '127.0.0.1', port: mock!.port },
      rateLimitService: o.rateLimitService ?? { host: '127.0.0.1', port: service!.port },
      wasmPath: withPlugin ? PLUGIN_WASM : undefined,
      pluginConfig: o.pluginConfig ?? readJson(PLUGIN_CONFIG_FILE),
      pluginOnlyForHosts: o.pluginOnlyForHosts,
      httpFilters: o.httpFilters,
      httpFiltersAfterPlugin: o.httpFiltersAfterPlugin,
    });
    started.push(envoy);
    return { envoy, service: service as Service, mock, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
