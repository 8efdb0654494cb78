/** Entry point: `node service/dist/main.js`. See README.md for the environment. */
import cluster from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { startService, type RunningService, type ServiceOptions } from './start';
import { ConfigWatcher } from './config/watcher';
import { parseRules, type Rule } from './config/rules';
import { settingsFromEnv, type Settings } from './config/env';
import { runPrimary, WORKER_LISTENING, workerReadiness } from './cluster';
import { createLogger, type Logger } from './log';
import { Metrics } from './metrics';
import { MemoryStore } from './store/memory';
import { RedisStore } from './store/redis';
import type { BucketStore } from './store/types';
import { createUsageRecorder, type UsageRecorder } from './usage';

function die(msg: string): never {
  process.stderr.write(`llm-ratelimit: ${msg}\n`);
  process.exit(2);
}

/** The store of this process: its own Redis connection, or the embedded store. */
export async function openStore(settings: Settings, log: Logger): Promise<BucketStore> {
  if (settings.redis) {
    const rs = new RedisStore({ ...settings.redis, logger: log });
    await rs.connect(2000);
    return rs;
  }
  let lastFullLog = 0;
  const store = new MemoryStore({
    maxKeys: settings.memoryMaxKeys,
    onFull: () => {
      // At most one line per 10 s: a flood of new keys must not flood the log.
      if (Date.now() - lastFullLog < 10_000) return;
      lastFullLog = Date.now();
      log.error('embedded store full of balances at or below zero: new keys refused (checks denied, updates 503) rather than forget a debt', {
        max_keys: settings.memoryMaxKeys,
        hint: 'raise MEMORY_MAX_KEYS or use Redis',
      });
    },
  });
  if (settings.snapshotFile) {
    try {
      const n = store.persistTo(settings.snapshotFile, settings.snapshotIntervalMs, (err) =>
        log.error('snapshot save failed', { file: settings.snapshotFile, err: err.message }),
      );
      log.info('snapshot loaded', { file: settings.snapshotFile, records: n });
    } catch (err) {
      die((err as Error).message);
    }
  }
  return store;
}

/** USAGE_RECORDS: stdout, a file (opened here: a path that cannot be opened stops the start), or off. */
function usageRecorder(settings: Settings, log: Logger): UsageRecorder | undefined {
  if (!settings.usageRecords) return undefined;
  try {
    return createUsageRecorder(settings.usageRecords, log);
  } catch (err) {
    die(`USAGE_RECORDS=${JSON.stringify(settings.usageRecords)}: cannot open for appending: ${(err as Error).message}`);
  }
}

function serviceOptions(settings: Settings, rules: Rule[], configText: string, store: BucketStore, log: Logger, metrics: Metrics): ServiceOptions {
  return {
    rules,
    store,
    port: settings.port,
    host: settings.host,
    logger: log,
    metrics,
    configFile: settings.configFile ? { path: settings.configFile, text: configText, pollMs: settings.configPollMs } : undefined,
    shutdownTimeoutMs: settings.shutdownTimeoutMs,
    accessLog: settings.logLevel === 'debug',
    tokens: settings.tokens,
    adminPort: settings.adminPort,
    adminHost: settings.adminHost,
    adminTokens: settings.adminTokens,
    usage: usageRecorder(settings, log),
    limiter: {
      reservationTtlMs: settings.reservationTtlMs,
      requestWindowMs: settings.requestWindowMs,
      acceptRefundsWithoutReservationId: settings.acceptRefundsWithoutReservationId,
      maxUpdateTokens: settings.maxUpdateTokens,
    },
  };
}

/** Warnings about the configuration, printed once (by the primary, or the single process). */
function startWarnings(settings: Settings, log: Logger): void {
  if (settings.redis && settings.snapshotFile) log.warn('MEMORY_SNAPSHOT_FILE is ignored with Redis (Redis keeps the records)');
  if (settings.tokens.length === 0) {
    log.warn(
      'SERVICE_TOKENS is not set: /ratelimit and /update_ratelimit_record are open to any caller that can reach this port (set SERVICE_TOKENS or SERVICE_TOKENS_FILE)',
    );
  }
  if (settings.acceptRefundsWithoutReservationId) {
    log.warn(
      'ACCEPT_REFUNDS_WITHOUT_RESERVATION_ID=true: updates without reservation_id are refunded their reserved_tokens unverified (any caller can credit itself); for migrating from plugins that do not send reservation_id only',
    );
  }
  if (settings.adminTokens.length === 0) log.info('ADMIN_TOKENS is not set: /buckets is disabled on the admin port');
}

function onSignals(close: (signal: string) => void, hup: () => void): void {
  process.on('SIGHUP', hup);
  process.once('SIGTERM', () => close('SIGTERM'));
  process.once('SIGINT', () => close('SIGINT'));
}

/** One process: the protocol port and the admin port (embedded store, or WORKERS=1). */
async function runSingle(settings: Settings, rules: Rule[], configText: string, log: Logger): Promise<void> {
  const store = await openStore(settings, log);
  let svc: RunningService;
  try {
    svc = await startService(
      serviceOptions(
        settings,
        rules,
        configText,
        store,
        log,
        new Metrics({ defaultMetrics: true, topKeys: settings.topKeys, topKeysIntervalMs: settings.topKeysIntervalMs }),
      ),
    );
  } catch (err) {
    await store.close();
    die(`cannot listen on port ${settings.port}: ${(err as Error).message}`);
  }
  log.always('listening', {
    port: svc.port,
    admin_port: svc.adminPort,
    auth: settings.tokens.length > 0 ? `${settings.tokens.length} token(s)` : 'open',
    store: store.kind,
    rules: rules.length,
    config: settings.configFile ?? 'RATE_LIMIT_CONFIG',
    workers: 1,
  });
  if (!settings.redis && settings.workers > 1) {
    const fields = { workers: 1, requested: settings.workers, variable: settings.workersSet ? 'WORKERS' : 'WORKERS (default: cores)' };
    const msg =
      'one process with the embedded store: each process would hold its own buckets, so a client would get N times its limit (use Redis for several workers)';
    if (settings.workersSet) log.warn(msg, fields);
    else log.info(msg, fields);
  }
  startWarnings(settings, log);
  onSignals(
    (signal) => {
      log.always('shutting down', { signal });
      svc.close().then(
        () => {
          log.always('stopped');
          process.exit(0);
        },
        (err) => {
          log.error('shutdown failed', { err });
          process.exit(1);
        },
      );
    },
    () => {
      if (settings.configFile) svc.reloadConfigFile('SIGHUP');
      else log.warn('SIGHUP ignored: rules come from RATE_LIMIT_CONFIG, not a file');
    },
  );
}

/** A cluster worker: the protocol port (shared with the other workers), its own store connection, no admin port. */
async function runWorker(settings: Settings, rules: Rule[], configText: string, log: Logger): Promise<void> {
  const store = await openStore(settings, log);
  const metrics = new Metrics({ defaultMetrics: true, topKeys: settings.topKeys, topKeysIntervalMs: settings.topKeysIntervalMs });
  // The primary's /metrics asks every worker for its registry over IPC (prom-client's cluster support).
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
  let svc: RunningService;
  try {
    svc = await startService({ ...serviceOptions(settings, rules, configText, store, log, metrics), adminPort: null, peersNotReady: workerReadiness(store) });
  } catch (err) {
    await store.close();
    die(`cannot listen on port ${settings.port}: ${(err as Error).message}`);
  }
  process.send!({ type: WORKER_LISTENING, port: svc.port });
  onSignals(
    () => {
      svc.close().then(
        () => process.exit(0),
        (err) => {
          log.error('worker shutdown failed', { err });
          process.exit(1);
        },
      );
    },
    () => {
      if (settings.configFile) svc.reloadConfigFile('SIGHUP');
    },
  );
}

async function main(): Promise<void> {
  let settings: Settings;
  let rules: Rule[];
  let configText: string;
  try {
    settings = settingsFromEnv();
    if (settings.configFile) {
      const r = ConfigWatcher.readInitial(settings.configFile);
      rules = r.rules;
      configText = r.text;
    } else {
      configText = settings.configText!;
      rules = parseRules(configText);
    }
  } catch (err) {
    die((err as Error).message);
  }
  const log = cluster.isWorker ? createLogger(settings.logLevel, undefined, { worker: cluster.worker!.id, pid: process.pid }) : createLogger(settings.logLevel);
  if (cluster.isWorker) return runWorker(settings, rules, configText, log);
  // With the embedded store the buckets live in the process: one process only.
  if (!settings.redis || settings.workers <= 1) return runSingle(settings, rules, configText, log);
  usageRecorder(settings, log)?.close(); // each worker opens its own; a bad path stops the start here
  try {
    await runPrimary({ settings, rules, configText, log, openStore: () => openStore(settings, log) });
  } catch (err) {
    die((err as Error).message);
  }
  startWarnings(settings, log);
}

process.on('unhandledRejection', (err) => {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'unhandled rejection', err: String(err) }) + '\n');
});

main().catch((err) => die(`fatal: ${(err as Error).stack ?? err}`));
