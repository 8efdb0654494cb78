/**
 * Programmatic API: build and start the service in-process (tests, benches, main.ts).
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigWatcher } from './config/watcher';
import { parseRules, type Rule } from './config/rules';
import { Limiter, type LimiterOptions } from './limiter/limiter';
import { RuleSet } from './limiter/ruleset';
import { silentLogger, type Logger } from './log';
import { Metrics } from './metrics';
import { createAdminApp } from './server/admin-port';
import type { Readiness } from './server/replies';
import { createHttpServer, type HttpServer, type HttpTimeouts } from './server/http-server';
import { mainPortHandler } from './server/main-port';
import { MAX_BODY_BYTES } from './server/input';
import { Authenticator } from './server/auth';
import { MemoryStore } from './store/memory';
import type { BucketStore } from './store/types';
import type { UsageRecorder } from './usage';

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
  /** Bearer tokens required on /ratelimit and /update_ratelimit_record; empty/absent = open. */
  tokens?: string[];
  /** Admin port (/buckets, /metrics, probes). Default 0 (a free port); null = no admin server. */
  adminPort?: number | null;
  /** Admin listening address (default: `host`). */
  adminHost?: string;
  /** Bearer tokens for /buckets; empty/absent = /buckets disabled (403). */
  adminTokens?: string[];
  /** Reservation lifetime and request-id window. */
  limiter?: LimiterOptions;
  /** Usage records: one JSON line per applied update (closed with the service). */
  usage?: UsageRecorder;
  /**
   * A cluster worker: why its peers are not ready (a worker that cannot reach the store), or
   * undefined. /readyz then answers 503, so that the probe any one worker answers speaks for all.
   */
  peersNotReady?: () => string | undefined;
  /** Both ports' keep-alive and request timeouts (defaults: DEFAULT_TIMEOUTS in server/http-server.ts). */
  http?: Partial<HttpTimeouts>;
}

export interface RunningService {
  port: number;
  url: string;
  /** The main port's listener. */
  server: Server;
  /** The admin server's port and URL (undefined with adminPort: null). */
  adminPort?: number;
  adminUrl?: string;
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

export function createLimiter(rules: Rule[] | string, store: BucketStore, metrics: Metrics, opts?: LimiterOptions): Limiter {
  const list = typeof rules === 'string' ? parseRules(rules) : rules;
  return new Limiter(new RuleSet(list), store, metrics, opts);
}

/** Listens on port (0: a free one) and resolves with the port it got. */
export function listen(server: Server, port: number, host?: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Readiness: the store answers; with Redis, also whether its eviction policy can drop records
 * (logged at error level whenever the warning appears or changes).
 */
export function readiness(store: BucketStore, logger: Logger, peersNotReady?: () => string | undefined): () => Promise<Readiness> {
  let lastWarning = '';
  return async (): Promise<Readiness> => {
    await store.ping();
    const peers = peersNotReady?.();
    if (peers) throw new Error(peers);
    const risk = await (store as { evictionRisk?: () => Promise<{ warning?: string } | undefined> }).evictionRisk?.();
    const warning = risk?.warning ?? '';
    if (warning && warning !== lastWarning) logger.error(warning, { check: 'redis maxmemory-policy' });
    lastWarning = warning;
    return warning ? { warnings: [warning] } : {};
  };
}

export async function startService(opts: ServiceOptions): Promise<RunningService> {
  const logger = opts.logger ?? silentLogger;
  const metrics = opts.metrics ?? new Metrics();
  const store = opts.store ?? new MemoryStore();
  const limiter = createLimiter(opts.rules, store, metrics, { logger, ...opts.limiter });
  const setRules = (rules: Rule[]) => limiter.setRules(new RuleSet(rules));

  let watcher: ConfigWatcher | undefined;
  if (opts.configFile) {
    watcher = new ConfigWatcher(opts.configFile.path, opts.configFile.text, setRules, logger, (ok) =>
      metrics.configReloads.inc({ result: ok ? 'ok' : 'error' }),
    );
    watcher.start(opts.configFile.pollMs);
  }

  const auth = opts.tokens?.length ? new Authenticator(opts.tokens) : undefined;
  const adminAuth = opts.adminTokens?.length ? new Authenticator(opts.adminTokens) : undefined;
  const isReady = readiness(store, logger, opts.peersNotReady);
  const deps = { limiter, metrics, logger, auth, adminAuth, usage: opts.usage };
  const accessLog = opts.accessLog ?? false;
  const serverOpts = {
    maxBodyBytes: MAX_BODY_BYTES,
    timeouts: opts.http,
    onError: (err: unknown) => logger.error('internal error', { err: err as Error }),
  };
  const http = createHttpServer(mainPortHandler(deps, isReady, accessLog), serverOpts);
  const server = http.server;
  const port = await listen(server, opts.port ?? 0, opts.host);

  let admin: HttpServer | undefined;
  let adminPort: number | undefined;
  if (opts.adminPort !== null) {
    admin = createHttpServer(createAdminApp(deps, isReady, accessLog), serverOpts);
    try {
      adminPort = await listen(admin.server, opts.adminPort ?? 0, opts.adminHost ?? opts.host);
    } catch (err) {
      await http.close(0);
      throw new Error(`admin port ${opts.adminPort}: ${(err as Error).message}`, { cause: err });
    }
  }
  // At start: the eviction-policy warning, once (also on every /readyz that sees it change).
  isReady().catch(() => undefined);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      watcher?.stop();
      const adminClosed = admin?.close(0);
      await http.close(opts.shutdownTimeoutMs ?? 10_000);
      await adminClosed;
      await store.close();
      opts.usage?.close();
    })());

  return {
    port,
    url: `http://127.0.0.1:${port}`,
    server,
    adminPort,
    adminUrl: adminPort === undefined ? undefined : `http://127.0.0.1:${adminPort}`,
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
