/**
 * Programmatic API: build and start the service in-process (tests, benches, main.ts).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigWatcher } from './config/watcher';
import { parseRules, type Rule } from './config/rules';
import { Limiter } from './limiter/limiter';
import { RuleSet } from './limiter/ruleset';
import { silentLogger, type Logger } from './log';
import { Metrics } from './metrics';
import { createHttpApp } from './server/app';
import { MemoryStore } from './store/memory';
import type { BucketStore } from './store/types';

export interface ServiceOptions {
  /** Validated rules, or the JSON text of the reference format. */
  rules: Rule[] | string;
  /** Default: a new embedded MemoryStore. */
  store?: BucketStore;
  /** Default 0 (a free port). */
  port?: number;
  host?: string;
  logger?: Logger;
  metrics?: Metrics;
  /** Watch this rules file and reload on change (fs.watch + poll). */
  configFile?: { path: string; text: string; pollMs: number };
  shutdownTimeoutMs?: number;
  /** Log every request at debug level (method, route, status, duration; never bodies). */
  accessLog?: boolean;
}

export interface RunningService {
  port: number;
  url: string;
  server: Server;
  limiter: Limiter;
  metrics: Metrics;
  store: BucketStore;
  /** Replace the rules (as a reload would). */
  setRules(rules: Rule[]): void;
  /** Re-read the config file now (SIGHUP). No-op without a config file. */
  reloadConfigFile(reason?: string): boolean;
  /** Graceful stop: stop accepting, finish in-flight, close the store. */
  close(): Promise<void>;
}

export function createLimiter(rules: Rule[] | string, store: BucketStore, metrics: Metrics): Limiter {
  const list = typeof rules === 'string' ? parseRules(rules) : rules;
  return new Limiter(new RuleSet(list), store, metrics);
}

export async function startService(opts: ServiceOptions): Promise<RunningService> {
  const logger = opts.logger ?? silentLogger;
  const metrics = opts.metrics ?? new Metrics();
  const store = opts.store ?? new MemoryStore();
  const limiter = createLimiter(opts.rules, store, metrics);
  const setRules = (rules: Rule[]) => limiter.setRules(new RuleSet(rules));

  let watcher: ConfigWatcher | undefined;
  if (opts.configFile) {
    watcher = new ConfigWatcher(opts.configFile.path, opts.configFile.text, setRules, logger, (ok) =>
      metrics.configReloads.inc({ result: ok ? 'ok' : 'error' }),
    );
    watcher.start(opts.configFile.pollMs);
  }

  const app = createHttpApp({ limiter, metrics, logger }, () => store.ping(), opts.accessLog ?? false);
  const server = createServer(app);
  // Idle keep-alive connections from Envoy are kept a while (Envoy reuses its pool).
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      watcher?.stop();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Connections that finish a response while closing are closed by Node right after.
      const idle = setInterval(() => server.closeIdleConnections(), 100);
      const force = setTimeout(() => server.closeAllConnections(), opts.shutdownTimeoutMs ?? 10_000);
      await done;
      clearInterval(idle);
      clearTimeout(force);
      await store.close();
    })());

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    server,
    limiter,
    metrics,
    store,
    setRules,
    reloadConfigFile: (reason = 'manual') => watcher?.reload(reason, true) ?? false,
    close,
  };
}

export { parseRules, ConfigError } from './config/rules';
export type { Rule, RuleConfig } from './config/rules';
export { MemoryStore } from './store/memory';
export { RedisStore } from './store/redis';
export type { BucketStore } from './store/types';
export { Metrics } from './metrics';
export { createLogger, silentLogger } from './log';
