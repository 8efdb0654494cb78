import { createClient, createCluster, defineScript } from 'redis';
import { BUCKET_LUA } from '../bucket/lua';
import type { BucketOp, BucketParams, BucketResult } from '../bucket/math';
import { requestWindowMs, reservationTtlMs, type RunExtra } from '../bucket/reservation';
import type { Logger } from '../log';
import { silentLogger } from '../log';
import { StoreError, type BucketStore } from './types';

export interface RedisStoreOptions {
  /** One redis:// URL, or the seed nodes of a cluster. */
  urls: string[];
  cluster?: boolean;
  password?: string;
  database?: number;
  /** Bound on every command, ms (default 500). */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Prefix of every record key (default "llmrl:"). */
  prefix?: string;
  logger?: Logger;
  /**
   * The clock (µs) the script runs at instead of Redis TIME. Unset in the service: every
   * replica then shares Redis's clock. Set where one clock must drive two stores (the suite that
   * proves the Lua and TypeScript buckets agree), like MemoryStore's `nowUs`.
   */
  nowUs?: () => number;
}

/** Commands queued per Redis connection (unsent + awaiting reply) before new ones fail fast. */
const MAX_QUEUED_COMMANDS = 20_000;

const bucketScript = defineScript({
  SCRIPT: BUCKET_LUA,
  NUMBER_OF_KEYS: 1,
  parseCommand(parser: any, key: string, args: string[]) {
    parser.pushKey(key);
    parser.push(...args);
  },
  transformReply: (reply: unknown) => reply as unknown as number[],
} as any);

/** The same script with its optional reservation and request-id keys (same hash tag). */
const bucketScript3 = defineScript({
  SCRIPT: BUCKET_LUA,
  NUMBER_OF_KEYS: 3,
  parseCommand(parser: any, keys: string[], args: string[]) {
    for (const k of keys) parser.pushKey(k);
    parser.push(...args);
  },
  transformReply: (reply: unknown) => reply as unknown as number[],
} as any);

/**
 * Redis record key: prefix + hash tag around the rate-limit key, so that every record of
 * one key lands in one Redis Cluster slot.
 */
export function recordKey(prefix: string, key: string): string {
  return `${prefix}{${key}}`;
}

/** Redis (standalone or cluster) through node-redis; EVALSHA with reload on NOSCRIPT. */
export class RedisStore implements BucketStore {
  readonly kind: string;
  private readonly client: any;
  private readonly timeoutMs: number;
  private readonly prefix: string;
  private readonly log: Logger;
  private connecting?: Promise<void>;
  private closed = false;
  private readonly argCache = new WeakMap<BucketParams, string[]>();
  private readonly clock?: () => number;

  constructor(opts: RedisStoreOptions) {
    this.timeoutMs = opts.commandTimeoutMs ?? 500;
    this.clock = opts.nowUs;
    this.prefix = opts.prefix ?? 'llmrl:';
    this.log = opts.logger ?? silentLogger;
    this.kind = opts.cluster ? 'redis-cluster' : 'redis';
    const socket = {
      connectTimeout: opts.connectTimeoutMs ?? 2000,
      // Reconnect forever with a capped back-off; commands fail fast meanwhile.
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 6), 2000),
      keepAlive: true,
      noDelay: true,
    };
    const common = {
      password: opts.password || undefined,
      disableOfflineQueue: true,
      // No node-redis per-command timeout: it arms an AbortSignal.timeout per command whose
      // timer fires (building a DOMException) even after the reply, about a fifth of the
      // service's CPU under load. run() bounds every command with one cleared setTimeout
      // instead, and the queue bound below keeps a hung Redis from piling commands up.
      commandsQueueMaxLength: MAX_QUEUED_COMMANDS,
      socket,
    };
    if (opts.cluster) {
      this.client = createCluster({
        rootNodes: opts.urls.map((url) => ({ url })),
        defaults: common as any,
        scripts: { bucket: bucketScript, bucket3: bucketScript3 },
      } as any);
    } else {
      this.client = createClient({
        url: opts.urls[0],
        database: opts.database || undefined,
        ...common,
        scripts: { bucket: bucketScript, bucket3: bucketScript3 },
      } as any);
    }
    let lastErr = '';
    this.client.on('error', (err: Error) => {
      // Logged once per distinct message to avoid a flood while Redis is down.
      if (err.message !== lastErr) this.log.warn('redis error', { err: err.message });
      lastErr = err.message;
      this.setUp(false);
    });
    this.client.on('end', () => this.setUp(false));
    this.client.on('ready', () => {
      if (lastErr) this.log.info('redis ready');
      lastErr = '';
      this.setUp(true);
    });
    if (!opts.cluster) {
      this.onAvailability = (listener) => {
        this.availability.push(listener);
        listener(this.up);
      };
    }
  }

  private up = false;
  private readonly availability: ((up: boolean) => void)[] = [];

  private setUp(up: boolean): void {
    if (up === this.up) return;
    this.up = up;
    for (const l of this.availability) l(up);
  }

  /** Standalone Redis only: a cluster client's nodes come and go one by one (its readiness is the ping of every master). */
  readonly onAvailability?: (listener: (up: boolean) => void) => void;

  /** Starts connecting; resolves when connected or after `waitMs` (keeps retrying in the background). */
  async connect(waitMs = 2000): Promise<void> {
    if (!this.connecting) {
      this.connecting = this.client.connect().then(
        () => undefined,
        (err: Error) => this.log.warn('redis connect failed', { err: err.message }),
      );
    }
    await withTimeout(this.connecting!, waitMs, 'connect').catch(() => undefined);
  }

  async run(key: string, p: BucketParams, op: BucketOp, cost: number, extra?: RunExtra): Promise<BucketResult> {
    // The rule part of the arguments is built once per rule (params objects live as long as their rule set).
    let ruleArgs = this.argCache.get(p);
    if (!ruleArgs) {
      ruleArgs = [String(p.maxTokens), String(p.tokensPerFill), String(p.fillIntervalUs), String(p.ttlSeconds), String(p.maxDebt)];
      this.argCache.set(p, ruleArgs);
    }
    // Redis's own TIME, unless a clock was given at construction (the shared tests drive both stores' time).
    const now = this.clock === undefined ? '' : String(this.clock());
    const rec = recordKey(this.prefix, key);
    let call: Promise<number[]>;
    const resMode = extra?.reservationId === undefined ? '' : op === 'reserve' ? 'new' : op === 'charge' ? 'use' : '';
    const window = extra?.requestId !== undefined && op === 'charge' ? String(requestWindowMs(extra)) : '';
    if (resMode === '' && window === '') {
      call = this.client.bucket(rec, [ruleArgs[0], ruleArgs[1], ruleArgs[2], ruleArgs[3], String(cost), op, now, ruleArgs[4]]);
    } else {
      const keys = [rec, `${rec}:r:${resMode ? extra!.reservationId : ''}`, `${rec}:u:${window ? extra!.requestId : ''}`];
      const args = [
        ruleArgs[0],
        ruleArgs[1],
        ruleArgs[2],
        ruleArgs[3],
        String(cost),
        op,
        now,
        ruleArgs[4],
        resMode,
        String(extra?.claimed ?? 0),
        resMode === 'new' ? String(reservationTtlMs(extra!)) : '',
        window,
      ];
      call = this.client.bucket3(keys, args);
    }
    let reply: number[];
    try {
      reply = await withTimeout(call, this.timeoutMs, 'bucket');
    } catch (err) {
      throw new StoreError(`redis: ${(err as Error).message}`, err);
    }
    const r: BucketResult = { balance: Number(reply[0]), lastFillUs: Number(reply[1]), nowUs: Number(reply[2]) };
    if (op === 'reserve') r.admitted = Number(reply[3]) === 1;
    if (resMode === 'use') r.refunded = Number(reply[4]);
    if (Number(reply[5]) === 1) r.duplicate = true;
    return r;
  }

  /**
   * Redis's `maxmemory` and `maxmemory-policy` (CONFIG GET; on a cluster, of each master),
   * and a warning when the policy can evict this service's records (they all carry a TTL,
   * so any policy but noeviction can drop a debt once maxmemory is reached). undefined when
   * CONFIG is refused (managed Redis).
   */
  async evictionRisk(): Promise<{ policy: string; maxmemory: number; warning?: string } | undefined> {
    const clients: any[] = this.kind === 'redis-cluster' ? await Promise.all(this.client.masters.map((m: any) => this.client.nodeClient(m))) : [this.client];
    let worst: { policy: string; maxmemory: number; warning?: string } | undefined;
    for (const c of clients) {
      let cfg: Record<string, string>;
      try {
        cfg = await withTimeout(c.configGet(['maxmemory', 'maxmemory-policy']), this.timeoutMs, 'config get');
      } catch {
        return undefined;
      }
      const policy = cfg['maxmemory-policy'] ?? '';
      const maxmemory = Number(cfg.maxmemory ?? 0);
      const out: { policy: string; maxmemory: number; warning?: string } = { policy, maxmemory };
      if (policy !== 'noeviction' && policy !== '' && maxmemory > 0) {
        out.warning =
          `redis maxmemory-policy is ${policy} with maxmemory ${maxmemory}: Redis may evict rate-limit ` +
          'records (they all carry a TTL) and forgive their debt; use maxmemory-policy noeviction';
      }
      if (!worst || (out.warning && !worst.warning)) worst = out;
    }
    return worst;
  }

  async ping(): Promise<void> {
    try {
      if (this.kind === 'redis-cluster') {
        // Every master must answer.
        await withTimeout(Promise.all(this.client.masters.map(async (m: any) => (await this.client.nodeClient(m)).ping())), this.timeoutMs, 'ping');
      } else {
        await withTimeout(this.client.ping(), this.timeoutMs, 'ping');
      }
    } catch (err) {
      throw new StoreError(`redis: ${(err as Error).message}`, err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.client.isOpen) await withTimeout(this.client.close(), 1000, 'close');
      else this.client.destroy?.();
    } catch {
      try {
        this.client.destroy?.();
      } catch {
        /* already gone */
      }
    }
  }
}

/** Rejects after `ms` unless `p` settles first (a safety net over node-redis' own timeouts). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}
