import { SERVICE_MAIN, requireBuilt } from './paths';
import { GiveUp, Proc, startProcess, waitFor } from './process';
import { request } from './http';
import { listeningLine } from './ports';

export interface Service {
  proc: Proc;
  port: number;
  /** The admin port (/buckets with ADMIN_TOKEN, /metrics). */
  adminPort: number;
  stop(): Promise<void>;
}

/** The admin token the harness gives every service it starts (for /buckets). */
export const ADMIN_TOKEN = 'e2e-admin-token-0123456789abcdef';

/** Service port → admin port of the services started here (bucketOf takes the service port). */
const adminPorts = new Map<number, number>();

export interface ServiceOptions {
  /** Rules (the RATE_LIMIT_CONFIG value); an object is JSON-encoded. */
  rules: unknown;
  /** Redis URL; omit for the embedded store. */
  redisUrl?: string;
  env?: Record<string, string>;
}

/** Starts `node service/dist/main.js` on ports it takes itself (PORT=0, ADMIN_PORT=0) and reads them from its "listening" log line. */
export async function startService(o: ServiceOptions): Promise<Service> {
  requireBuilt(SERVICE_MAIN, 'make service');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    PORT: '0',
    ADMIN_PORT: '0',
    ADMIN_TOKENS: ADMIN_TOKEN,
    RATE_LIMIT_CONFIG: typeof o.rules === 'string' ? o.rules : JSON.stringify(o.rules),
    ...(o.redisUrl ? { REDIS_URL: o.redisUrl } : {}),
    ...o.env,
  };
  const proc = startProcess('service', process.execPath, [SERVICE_MAIN], { env });
  try {
    const { port, adminPort } = await waitFor(
      'the service to listen',
      async () => {
        const done = await Promise.race([proc.exited.then((c) => c), new Promise((r) => setImmediate(() => r(undefined)))]);
        if (done !== undefined) throw new GiveUp(`service exited (${String(done)}):\n${proc.output().slice(-4000)}`);
        const listening = listeningLine(proc.output());
        return listening && { port: listening.port as number, adminPort: listening.admin_port as number };
      },
      15000,
    );
    adminPorts.set(port, adminPort);
    return {
      proc,
      port,
      adminPort,
      stop: () => {
        adminPorts.delete(port);
        return proc.stop();
      },
    };
  } catch (e) {
    await proc.stop();
    throw e;
  }
}

export interface Bucket {
  key: string;
  /** The rule that applies, or null when no rule matches the key. */
  rule: unknown;
  /** Current balance, or null when the key has no record yet. */
  balance: number | null;
}

/** GET on the admin port of the service listening on `servicePort`, with the admin token. */
export function adminRequest(servicePort: number, path: string) {
  const adminPort = adminPorts.get(servicePort);
  if (adminPort === undefined) throw new Error(`no service started by the harness on port ${servicePort}`);
  return request(adminPort, { path, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
}

/** The service's read-only view of a key's bucket (GET /buckets/{key} on the admin port). */
export async function bucketOf(servicePort: number, key: string): Promise<Bucket> {
  const r = await adminRequest(servicePort, `/buckets/${encodeURIComponent(key)}`);
  if (r.status !== 200) throw new Error(`GET /buckets/${key}: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

/** Waits until the key's balance differs from `before` (reports are asynchronous) and returns it. */
export async function balanceChange(servicePort: number, key: string, before: number | null, timeoutMs = 5000): Promise<number | null> {
  return waitFor(
    `a charge on ${key}`,
    async () => {
      const b = (await bucketOf(servicePort, key)).balance;
      return b !== before ? { b } : undefined;
    },
    timeoutMs,
  ).then((x) => x.b);
}

/**
 * Runs `action` (a request through Envoy) and waits for the asynchronous charge on `key`.
 * `spent` is how far the balance dropped; an unseen key counts as a full bucket of `capacity`.
 */
export async function withCharge<T>(
  servicePort: number,
  key: string,
  capacity: number,
  action: () => Promise<T>,
): Promise<{ result: T; spent: number; after: number }> {
  const before = (await bucketOf(servicePort, key)).balance;
  const result = await action();
  const after = (await balanceChange(servicePort, key, before)) ?? capacity;
  return { result, spent: (before ?? capacity) - after, after };
}
