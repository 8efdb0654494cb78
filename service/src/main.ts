/** Entry point: `node service/dist/main.js`. See README.md for the environment. */
import { startService, type RunningService } from './start';
import { ConfigWatcher } from './config/watcher';
import { parseRules, type Rule } from './config/rules';
import { settingsFromEnv, type Settings } from './config/env';
import { createLogger } from './log';
import { Metrics } from './metrics';
import { MemoryStore } from './store/memory';
import { RedisStore } from './store/redis';
import type { BucketStore } from './store/types';

function die(msg: string): never {
  process.stderr.write(`llm-ratelimit: ${msg}\n`);
  process.exit(2);
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
  const log = createLogger(settings.logLevel);

  let store: BucketStore;
  if (settings.redis) {
    const rs = new RedisStore({ ...settings.redis, logger: log });
    await rs.connect(2000);
    store = rs;
  } else {
    let lastFullLog = 0;
    store = new MemoryStore({
      maxKeys: settings.memoryMaxKeys,
      onFull: () => {
        // At most one line per 10 s: a flood of new keys must not flood the log.
        if (Date.now() - lastFullLog < 10_000) return;
        lastFullLog = Date.now();
        log.error('embedded store full: new keys refused (checks denied, updates 503) rather than forget a balance', {
          max_keys: settings.memoryMaxKeys,
          hint: 'raise MEMORY_MAX_KEYS or use Redis',
        });
      },
    });
    if (settings.snapshotFile) {
      try {
        const n = (store as MemoryStore).persistTo(settings.snapshotFile, settings.snapshotIntervalMs, (err) =>
          log.error('snapshot save failed', { file: settings.snapshotFile, err: err.message }),
        );
        log.info('snapshot loaded', { file: settings.snapshotFile, records: n });
      } catch (err) {
        die((err as Error).message);
      }
    }
  }
  if (settings.redis && settings.snapshotFile) log.warn('MEMORY_SNAPSHOT_FILE is ignored with Redis (Redis keeps the records)');

  let svc: RunningService;
  try {
    svc = await startService({
      rules,
      store,
      port: settings.port,
      host: settings.host,
      logger: log,
      metrics: new Metrics(true),
      configFile: settings.configFile
        ? { path: settings.configFile, text: configText, pollMs: settings.configPollMs }
        : undefined,
      shutdownTimeoutMs: settings.shutdownTimeoutMs,
      accessLog: settings.logLevel === 'debug',
      tokens: settings.tokens,
      adminPort: settings.adminPort,
      adminHost: settings.adminHost,
      adminTokens: settings.adminTokens,
      limiter: {
        reservationTtlMs: settings.reservationTtlMs,
        requestWindowMs: settings.requestWindowMs,
        acceptRefundsWithoutReservationId: settings.acceptRefundsWithoutReservationId,
      },
    });
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
  });

  if (settings.tokens.length === 0) {
    log.warn('SERVICE_TOKENS is not set: /ratelimit and /update_ratelimit_record are open to any caller that can reach this port (set SERVICE_TOKENS or SERVICE_TOKENS_FILE)');
  }
  if (settings.acceptRefundsWithoutReservationId) {
    log.warn('ACCEPT_REFUNDS_WITHOUT_RESERVATION_ID=true: updates without reservation_id are refunded their reserved_tokens unverified (any caller can credit itself); for migrating from plugins that do not send reservation_id only');
  }
  if (settings.adminTokens.length === 0) log.info('ADMIN_TOKENS is not set: /buckets is disabled on the admin port');

  process.on('SIGHUP', () => {
    if (settings.configFile) svc.reloadConfigFile('SIGHUP');
    else log.warn('SIGHUP ignored: rules come from RATE_LIMIT_CONFIG, not a file');
  });
  const stop = (signal: string) => {
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
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

process.on('unhandledRejection', (err) => {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'unhandled rejection', err: String(err) }) + '\n');
});

main().catch((err) => die(`fatal: ${(err as Error).stack ?? err}`));
