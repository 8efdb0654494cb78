import { SERVICE_MAIN, requireBuilt } from './paths';
import { Proc, startProcess, waitFor } from './process';

export interface Service {
  proc: Proc;
  port: number;
  stop(): Promise<void>;
}

export interface ServiceOptions {
  /** Rules (the RATE_LIMIT_CONFIG value); an object is JSON-encoded. */
  rules: unknown;
  /** Redis URL; omit for the embedded store. */
  redisUrl?: string;
  env?: Record<string, string>;
}

/** Starts `node service/dist/main.js` on a free port and waits for its "listening" log line. */
export async function startService(o: ServiceOptions): Promise<Service> {
  requireBuilt(SERVICE_MAIN, 'make service');
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    PORT: '0',
    RATE_LIMIT_CONFIG: typeof o.rules === 'string' ? o.rules : JSON.stringify(o.rules),
    ...(o.redisUrl ? { REDIS_URL: o.redisUrl } : {}),
    ...o.env,
  };
  const proc = startProcess('service', process.execPath, [SERVICE_MAIN], { env });
  try {
    const port = await waitFor('the service to listen', async () => {
      const done = await Promise.race([proc.exited.then((c) => c), new Promise((r) => setImmediate(() => r(undefined)))]);
      if (done !== undefined) throw new Error(`service exited (${String(done)}):\n${proc.output().slice(-4000)}`);
      for (const line of proc.output().split('\n')) {
        if (!line.includes('"listening"')) continue;
        try {
          const port = JSON.parse(line).port;
          if (typeof port === 'number') return port;
        } catch {
          /* not JSON: keep looking */
        }
      }
      return undefined;
    }, 15000);
    return { proc, port, stop: () => proc.stop() };
  } catch (e) {
    await proc.stop();
    throw e;
  }
}
