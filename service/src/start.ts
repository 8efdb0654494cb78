/**
 * Programmatic API: build and start the service in-process (tests, benches, main.ts).
 */
import { createServer, type Server } from 'node:http';
import type { Server as NetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { ConfigWatcher } from './config/watcher';
import { parseRules, type Rule } from './config/rules';
import { Limiter, type LimiterOptions } from './limiter/limiter';
import { RuleSet } from './limiter/ruleset';
import { silentLogger, type Logger } from './log';
import { Metrics } from './metrics';
import { createAdminApp, jsonClientError } from './server/routes';
import type { Readiness } from './server/replies';
import { Http1Server } from './server/http1';
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
}

/** Largest request head accepted (Node's default is 16 KiB; a check of 16 keys of 512 bytes, percent-encoded, is up to ~25 KiB). */
export const MAX_HEADER_BYTES = 64 * 1024;

export interface RunningService {
  port: number;
  url: string;
  /** The main port's listener. */
  server: NetServer;
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
export function listen(server: Server | NetServer, port: number, host?: string): Promise<number> {
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
  const limiter = createLimiter(opts.rules, store, metrics, opts.limiter);
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
  const http = new Http1Server(mainPortHandler(deps, isReady, opts.accessLog ?? false), {
    maxHeaderBytes: MAX_HEADER_BYTES,
    maxBodyBytes: MAX_BODY_BYTES,
    // Idle keep-alive connections from Envoy are kept a while (Envoy reuses its pool).
    keepAliveMs: 65_000,
    requestTimeoutMs: 66_000,
    onError: (err) => logger.error('internal error', { err: err as Error }),
  });
  const server = http.server;
  const port = await listen(server, opts.port ?? 0, opts.host);

  let admin: Server | undefined;
  let adminPort: number | undefined;
  if (opts.adminPort !== null) {
    admin = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, createAdminApp(deps, isReady));
    admin.on('clientError', jsonClientError);
    try {
      adminPort = await listen(admin, opts.adminPort ?? 0, opts.adminHost ?? opts.host);
    } catch (err) {
      server.close();
      throw new Error(`admin port ${opts.adminPort}: ${(err as Error).message}`);
    }
  }
  // At start: the eviction-policy warning, once (also on every /readyz that sees it change).
  isReady().catch(() => undefined);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      watcher?.stop();
      admin?.close();
      admin?.closeAllConnections();
      await http.close(opts.shutdownTimeoutMs ?? 10_000);
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
