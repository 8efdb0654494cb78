/** Service settings from the environment (names compatible with the reference service). */
import { readFileSync } from 'node:fs';
import type { Level } from '../log';
import { defaultWorkers } from './cpus';

/** RESERVATION_TTL_SECONDS unset: how long a reservation can be settled by its update (the limiter's default too). */
export const DEFAULT_RESERVATION_TTL_MS = 3_600_000;
/** REQUEST_ID_WINDOW_SECONDS unset: how long an update's request_id is remembered (the limiter's default too). */
export const DEFAULT_REQUEST_WINDOW_MS = 600_000;
/** MAX_UPDATE_TOKENS unset: the most one update charges a key, and one check reserves (the limiter's default too). */
export const DEFAULT_MAX_UPDATE_TOKENS = 1_000_000;
/** Bound on MAX_UPDATE_TOKENS: every balance stays exact in Lua and JS doubles (as the check's reserve bound). */
const MAX_MAX_UPDATE_TOKENS = 1e15;

export interface Settings {
  port: number;
  host?: string;
  configText?: string;
  configFile?: string;
  redis?: {
    urls: string[];
    cluster: boolean;
    password?: string;
    database?: number;
    commandTimeoutMs: number;
  };
  logLevel: Level;
  memoryMaxKeys: number;
  configPollMs: number;
  shutdownTimeoutMs: number;
  /** Bearer tokens for the protocol routes (empty: open). */
  tokens: string[];
  adminPort: number;
  adminHost?: string;
  /** Bearer tokens for /buckets (empty: /buckets disabled). */
  adminTokens: string[];
  reservationTtlMs: number;
  requestWindowMs: number;
  /** MAX_UPDATE_TOKENS: the most one update charges a key, and one check reserves. */
  maxUpdateTokens: number;
  /** Embedded store: keep balances across restarts in this file. */
  snapshotFile?: string;
  snapshotIntervalMs: number;
  acceptRefundsWithoutReservationId: boolean;
  /** Service processes (cluster workers) sharing the port; forced to 1 with the embedded store. */
  workers: number;
  /** WORKERS was set (not the default). */
  workersSet: boolean;
  /** llmrl_top_key_tokens: keys shown (0: none) and the interval summed. */
  topKeys: number;
  topKeysIntervalMs: number;
  /** Usage records: undefined (off), 'stdout', or a file path. */
  usageRecords?: string;
}

export class EnvError extends Error {}

function int(env: NodeJS.ProcessEnv, name: string, def: number, min = 0): number {
  const v = env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new EnvError(`${name}=${JSON.stringify(v)}: must be an integer >= ${min}`);
  return n;
}

/**
 * Tokens from `NAME` (comma-separated) and `NAME_FILE` (a file, e.g. a mounted Secret: one
 * token per line or comma-separated). Errors name the variable and the token's position,
 * never the token.
 */
function tokens(env: NodeJS.ProcessEnv, name: string): string[] {
  const out: string[] = [];
  const add = (text: string, from: string) => {
    const parts = text
      .split(/[,\r\n]+/)
      .map((t) => t.trim())
      .filter((t) => t !== '');
    parts.forEach((t, i) => {
      if (t.length < 16) throw new EnvError(`${from}: token ${i + 1} is shorter than 16 characters`);
      if (/[^\x21-\x7e]/.test(t)) throw new EnvError(`${from}: token ${i + 1} has characters outside printable ASCII (no spaces)`);
      out.push(t);
    });
  };
  if (env[name]) add(env[name]!, name);
  const file = env[`${name}_FILE`];
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new EnvError(`${name}_FILE=${JSON.stringify(file)}: cannot read: ${(e as Error).message}`);
    }
    add(text, `${name}_FILE=${JSON.stringify(file)}`);
    if (!text.trim()) throw new EnvError(`${name}_FILE=${JSON.stringify(file)}: the file holds no token`);
  }
  return out;
}

function bool(env: NodeJS.ProcessEnv, name: string): boolean {
  const v = env[name];
  if (v === undefined || v === '') return false;
  if (/^(1|true|yes)$/i.test(v)) return true;
  if (/^(0|false|no)$/i.test(v)) return false;
  throw new EnvError(`${name}=${JSON.stringify(v)}: must be true or false`);
}

/** Most worker processes accepted in WORKERS. */
export const MAX_WORKERS = 256;

export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env, cpus: () => number = defaultWorkers): Settings {
  const port = int(env, 'PORT', 8080);
  if (port > 65535) throw new EnvError(`PORT=${env.PORT}: must be <= 65535`);
  const configText = env.RATE_LIMIT_CONFIG || undefined;
  const configFile = env.RATE_LIMIT_CONFIG_FILE || undefined;
  if (!configText && !configFile) {
    throw new EnvError('no rules: set RATE_LIMIT_CONFIG (JSON) or RATE_LIMIT_CONFIG_FILE (path)');
  }
  if (configText && configFile) {
    throw new EnvError('set only one of RATE_LIMIT_CONFIG and RATE_LIMIT_CONFIG_FILE');
  }
  let redis: Settings['redis'];
  const cluster = /^(1|true|yes)$/i.test(env.REDIS_CLUSTER ?? '');
  const commandTimeoutMs = int(env, 'REDIS_TIMEOUT_MS', 500, 1);
  const database = int(env, 'REDIS_DB_INDEX', 0);
  const password = env.REDIS_PASSWORD || undefined;
  if (env.REDIS_URL) {
    redis = {
      urls: env.REDIS_URL.split(',')
        .map((s) => s.trim())
        .filter(Boolean),
      cluster,
      password,
      database,
      commandTimeoutMs,
    };
  } else if (env.REDIS_ADDRESS) {
    const urls = env.REDIS_ADDRESS.split(',').map((a) => `redis://${a.trim()}`);
    redis = { urls, cluster, password, database, commandTimeoutMs };
  }
  if (redis && cluster && database) throw new EnvError('REDIS_DB_INDEX must be 0 with REDIS_CLUSTER');
  const logLevel = (env.LOG_LEVEL ?? 'info') as Level;
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new EnvError(`LOG_LEVEL=${env.LOG_LEVEL}: debug|info|warn|error`);
  const adminPort = int(env, 'ADMIN_PORT', 9090);
  if (adminPort > 65535) throw new EnvError(`ADMIN_PORT=${env.ADMIN_PORT}: must be <= 65535`);
  if (adminPort !== 0 && adminPort === port) throw new EnvError(`ADMIN_PORT=${env.ADMIN_PORT}: must differ from PORT (${port})`);
  const workersSet = (env.WORKERS ?? '') !== '';
  const workers = workersSet ? int(env, 'WORKERS', 1, 1) : cpus();
  if (workers > MAX_WORKERS) throw new EnvError(`WORKERS=${JSON.stringify(env.WORKERS)}: must be an integer between 1 and ${MAX_WORKERS}`);
  const usageRecords = env.USAGE_RECORDS || undefined;
  const topKeys = int(env, 'TOP_KEYS', 20, 0);
  if (topKeys > 100) throw new EnvError(`TOP_KEYS=${JSON.stringify(env.TOP_KEYS)}: must be an integer between 0 and 100`);
  const topKeysIntervalMs = int(env, 'TOP_KEYS_INTERVAL_SECONDS', 60, 1) * 1000;
  const maxUpdateTokens = int(env, 'MAX_UPDATE_TOKENS', DEFAULT_MAX_UPDATE_TOKENS, 1);
  if (maxUpdateTokens > MAX_MAX_UPDATE_TOKENS) {
    throw new EnvError(`MAX_UPDATE_TOKENS=${JSON.stringify(env.MAX_UPDATE_TOKENS)}: must be an integer between 1 and ${MAX_MAX_UPDATE_TOKENS}`);
  }
  return {
    port,
    workers,
    workersSet,
    usageRecords,
    topKeys,
    topKeysIntervalMs,
    tokens: tokens(env, 'SERVICE_TOKENS'),
    adminPort,
    adminHost: env.ADMIN_HOST || undefined,
    adminTokens: tokens(env, 'ADMIN_TOKENS'),
    reservationTtlMs: int(env, 'RESERVATION_TTL_SECONDS', DEFAULT_RESERVATION_TTL_MS / 1000, 1) * 1000,
    requestWindowMs: int(env, 'REQUEST_ID_WINDOW_SECONDS', DEFAULT_REQUEST_WINDOW_MS / 1000, 1) * 1000,
    acceptRefundsWithoutReservationId: bool(env, 'ACCEPT_REFUNDS_WITHOUT_RESERVATION_ID'),
    maxUpdateTokens,
    snapshotFile: env.MEMORY_SNAPSHOT_FILE || undefined,
    snapshotIntervalMs: int(env, 'MEMORY_SNAPSHOT_INTERVAL_SECONDS', 30, 0) * 1000,
    host: env.HOST || undefined,
    configText,
    configFile,
    redis,
    logLevel,
    memoryMaxKeys: int(env, 'MEMORY_MAX_KEYS', 100_000, 1),
    configPollMs: int(env, 'CONFIG_POLL_MS', 5000, 0),
    shutdownTimeoutMs: int(env, 'SHUTDOWN_TIMEOUT_MS', 10_000, 0),
  };
}
