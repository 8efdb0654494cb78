/**
 * WORKERS > 1 (Redis only): the primary process forks the workers, which share the protocol
 * port (Node `cluster`) and each open their own store connection. The primary serves the
 * admin port itself: /metrics aggregates every worker's registry (prom-client's
 * AggregatorRegistry, over IPC), /buckets and the probes use the primary's own store
 * connection and rules. SIGTERM/SIGINT stop every worker gracefully; a worker that dies
 * otherwise is logged and replaced.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Settings } from './config/env';
import type { Rule } from './config/rules';
import { ConfigWatcher } from './config/watcher';
import { RuleSet } from './limiter/ruleset';
import { silentLogger, type Logger } from './log';
import { Metrics } from './metrics';
import { createAdminApp } from './server/admin-port';
import { createHttpServer } from './server/http-server';
import { MAX_BODY_BYTES } from './server/input';
import { Authenticator } from './server/auth';
import { createLimiter, listen, readiness } from './start';
import type { BucketStore } from './store/types';

/** IPC message a worker sends once its protocol port listens. */
export const WORKER_LISTENING = 'llmrl:listening';
/** IPC message a worker sends whenever its store connection goes up or down ({ up }). */
const WORKER_STORE = 'llmrl:store';
/** IPC message the primary sends every worker when the set of workers without a store changes ({ notReady }). */
const PEERS_STATE = 'llmrl:peers';

/**
 * A worker's half of the readiness every worker shares: reports its store's state to the
 * primary and returns why the group is not ready (per the primary's last word), or undefined.
 * Kubernetes probes one worker at random through the shared port; without this, a pod whose
 * other worker had not yet reconnected to Redis was marked ready and refused checks.
 */
export function workerReadiness(store: BucketStore): () => string | undefined {
  let notReady: string[] | undefined;
  process.on('message', (msg: { type?: string; notReady?: string[] }) => {
    if (msg?.type === PEERS_STATE) notReady = msg.notReady;
  });
  const report = (up: boolean) => {
    // A callback: a channel closing meanwhile (shutdown) is no error worth an 'error' event.
    if (process.connected) process.send!({ type: WORKER_STORE, up }, undefined, undefined, () => undefined);
  };
  if (store.onAvailability) store.onAvailability(report);
  else report(true); // a store without connection events: its own ping is its readiness
  return () => {
    if (notReady === undefined) return 'waiting for the other workers';
    return notReady.length ? notReadyReason(notReady) : undefined;
  };
}

function notReadyReason(names: string[]): string {
  return `${names.join(', ')}: cannot reach the store yet`;
}

/** A worker that dies within this long of its start is restarted after RESTART_DELAY_MS (no tight crash loop). */
const EARLY_DEATH_MS = 5_000;
const RESTART_DELAY_MS = 1_000;

export interface PrimaryOptions {
  settings: Settings;
  rules: Rule[];
  configText: string;
  log: Logger;
  openStore(): Promise<BucketStore>;
}

/** Resolves once every worker listens and the admin port is open; rejects (start fails) if a worker dies before that. */
export async function runPrimary(opts: PrimaryOptions): Promise<void> {
  const { settings, rules, configText, log } = opts;
  const n = settings.workers;
  const store = await opts.openStore();
  const metrics = new Metrics(false);
  const limiter = createLimiter(rules, store, metrics, {
    reservationTtlMs: settings.reservationTtlMs,
    requestWindowMs: settings.requestWindowMs,
    acceptRefundsWithoutReservationId: settings.acceptRefundsWithoutReservationId,
    maxUpdateTokens: settings.maxUpdateTokens,
  });
  // The primary's rules serve /buckets; each worker watches the file itself.
  let watcher: ConfigWatcher | undefined;
  if (settings.configFile) {
    // Silent: the workers log every reload (and every rejected file) themselves.
    watcher = new ConfigWatcher(settings.configFile, configText, (r) => limiter.setRules(new RuleSet(r)), silentLogger);
    watcher.start(settings.configPollMs);
  }
  // Workers whose store connection is up (per their last report), and the primary's own (for
  // /buckets): every probe answers 503 until all of them are.
  const storeUp = new Map<number, boolean>();
  let stopping = false;
  let primaryUp = !store.onAvailability;
  const notReady = (): string[] => {
    const names = Object.values(cluster.workers ?? {})
      .filter((w): w is Worker => !!w && storeUp.get(w.id) !== true)
      .map((w) => `worker ${w.id}`);
    return primaryUp ? names : ['primary', ...names];
  };
  const tellWorkers = () => {
    if (stopping) return; // the workers are on their way out (and their channels closing)
    const state = { type: PEERS_STATE, notReady: notReady() };
    // A callback: a channel that closes meanwhile (a worker dying) must not become an 'error' event,
    // which would stop the primary (seen: EPIPE when the primary's store closed at SIGTERM).
    for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected()) w.send(state, undefined, undefined, () => undefined);
  };
  store.onAvailability?.((up) => {
    primaryUp = up;
    tellWorkers();
  });
  const aggregator = new AggregatorRegistry();
  const app = createAdminApp(
    {
      limiter,
      metrics,
      logger: log,
      adminAuth: settings.adminTokens.length ? new Authenticator(settings.adminTokens) : undefined,
      metricsSource: { contentType: aggregator.contentType, metrics: () => aggregator.clusterMetrics() },
    },
    readiness(store, log, () => {
      const names = notReady();
      return names.length ? notReadyReason(names) : undefined;
    }),
  );

  let started = false;
  const startedAt = new Map<number, number>();
  const fork = (): Worker => {
    const w = cluster.fork();
    startedAt.set(w.id, Date.now());
    tellWorkers();
    return w;
  };

  let port = 0;
  await new Promise<void>((resolve, reject) => {
    let listening = 0;
    cluster.on('message', (worker, msg: { type?: string; port?: number; up?: boolean }) => {
      if (msg?.type === WORKER_STORE) {
        storeUp.set(worker.id, msg.up === true);
        tellWorkers();
        return;
      }
      if (msg?.type !== WORKER_LISTENING) return;
      port = msg.port!;
      if (started) {
        log.info('worker listening', { worker: worker.id, pid: worker.process.pid });
        return;
      }
      if (++listening === n) resolve();
    });
    cluster.on('exit', (worker, code, signal) => {
      const lived = Date.now() - (startedAt.get(worker.id) ?? 0);
      startedAt.delete(worker.id);
      storeUp.delete(worker.id);
      if (stopping) return;
      tellWorkers();
      if (!started) {
        for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
        reject(new Error(`worker ${worker.id} exited during start (code ${code}, signal ${signal ?? 'none'}): see its message above`));
        return;
      }
      log.error('worker died; starting a new one', { worker: worker.id, pid: worker.process.pid, code, signal, lived_ms: lived });
      if (lived < EARLY_DEATH_MS) setTimeout(() => !stopping && fork(), RESTART_DELAY_MS);
      else fork();
    });
    for (let i = 0; i < n; i++) fork();
  }).catch(async (err) => {
    watcher?.stop();
    await store.close();
    throw err;
  });
  started = true;

  // The same protections (timeouts, bounded heads and bodies, JSON errors) as every other port.
  const admin = createHttpServer(app, { maxBodyBytes: MAX_BODY_BYTES, onError: (err) => log.error('internal error', { err: err as Error }) });
  let adminPort: number;
  try {
    adminPort = await listen(admin.server, settings.adminPort, settings.adminHost ?? settings.host);
  } catch (err) {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    throw new Error(`admin port ${settings.adminPort}: ${(err as Error).message}`, { cause: err });
  }
  readiness(store, log)().catch(() => undefined);
  log.always('listening', {
    port,
    admin_port: adminPort,
    auth: settings.tokens.length > 0 ? `${settings.tokens.length} token(s)` : 'open',
    store: store.kind,
    rules: rules.length,
    config: settings.configFile ?? 'RATE_LIMIT_CONFIG',
    workers: n,
  });

  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.always('shutting down', { signal, workers: Object.keys(cluster.workers ?? {}).length });
    watcher?.stop();
    void admin.close(0);
    const alive = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w);
    const exits = alive.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
    for (const w of alive) w.process.kill('SIGTERM');
    // A worker still running past its own shutdown timeout (plus a margin) is killed.
    const force = setTimeout(() => alive.forEach((w) => w.isDead() || w.process.kill('SIGKILL')), settings.shutdownTimeoutMs + 5_000);
    Promise.all(exits)
      .then(() => store.close())
      .then(
        () => {
          clearTimeout(force);
          log.always('stopped');
          process.exit(0);
        },
        (err) => {
          log.error('shutdown failed', { err });
          process.exit(1);
        },
      );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    watcher?.reload('SIGHUP', true);
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  });
}
