import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { stringify } from 'yaml';
import { envoyBin } from './paths';
import { envoyAdminPort, envoyListenerPort } from './ports';
import { GiveUp, Proc, startProcess, waitFor } from './process';
import { request } from './http';
import { EnvoyConfigOptions, LISTENER, envoyConfig } from './envoy-config';

export interface Envoy {
  proc: Proc;
  port: number;
  adminPort: number;
  configFile: string;
  /** Envoy's counters and gauges (admin /stats), as name → value. */
  stats(filter?: string): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export type EnvoyOptions = Omit<EnvoyConfigOptions, 'listen' | 'admin'> & { concurrency?: number; logLevel?: string };

/** The arguments every Envoy here runs with; Envoy writes its admin address to `adminAddressFile`. */
export function envoyArgs(configFile: string, adminAddressFile: string, o: { concurrency?: number; logLevel?: string } = {}): string[] {
  return [
    '-c',
    configFile,
    '--disable-hot-restart',
    ...(o.concurrency ? ['--concurrency', String(o.concurrency)] : []),
    '-l',
    o.logLevel ?? 'warning',
    // The plugin's own log lines (configuration errors, call failures) come through this component.
    '--component-log-level',
    'wasm:info',
    '--admin-address-path',
    adminAddressFile,
  ];
}

/**
 * Waits until the Envoy that writes `adminAddressFile` is ready (admin /ready) and returns the
 * ports it bound: its admin port and the port of the listener (port 0 in the config: Envoy takes one).
 * `exited` tells, while waiting, whether the process has ended (then waiting stops at once).
 */
export async function envoyPorts(adminAddressFile: string, exited: () => string | undefined, timeoutMs = 30000): Promise<{ port: number; adminPort: number }> {
  return waitFor(
    'Envoy to be ready',
    async () => {
      const gone = exited();
      if (gone !== undefined) throw new GiveUp(gone);
      const adminPort = envoyAdminPort(adminAddressFile);
      if (adminPort === undefined) return undefined;
      if ((await request(adminPort, { path: '/ready', timeoutMs: 1000 })).status !== 200) return undefined;
      const port = await envoyListenerPort(adminPort, LISTENER);
      return port === undefined ? undefined : { port, adminPort };
    },
    timeoutMs,
    50,
  );
}

/** Writes the config (both ports 0: Envoy takes them) into a temp dir and starts Envoy on it; stop() also removes the dir. */
function launch(o: EnvoyOptions) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-envoy-'));
  const configFile = path.join(dir, 'envoy.yaml');
  const adminAddressFile = path.join(dir, 'admin-address');
  fs.writeFileSync(configFile, stringify(envoyConfig({ ...o, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } })));
  const proc = startProcess('envoy', envoyBin(), envoyArgs(configFile, adminAddressFile, { concurrency: o.concurrency ?? 2, logLevel: o.logLevel }));
  let exitCode: number | string | undefined;
  void proc.exited.then((c) => (exitCode = c));
  const stop = async () => {
    await proc.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return {
    configFile,
    adminAddressFile,
    proc,
    stop,
    exited: () => (exitCode === undefined ? undefined : `Envoy exited (${exitCode}):\n${proc.output().slice(-4000)}`),
  };
}

/** Starts a real Envoy on ports of its own and waits until it is ready. */
export async function startEnvoy(o: EnvoyOptions): Promise<Envoy> {
  const { configFile, adminAddressFile, proc, stop, exited } = launch(o);
  let ports: { port: number; adminPort: number };
  try {
    ports = await envoyPorts(adminAddressFile, exited);
  } catch (e) {
    await stop();
    if (String(e).includes('Envoy exited')) throw e;
    throw new Error(`${String(e)}\n--- envoy output ---\n${proc.output().slice(-4000)}`, { cause: e });
  }
  const { port, adminPort } = ports;
  return {
    proc,
    port,
    adminPort,
    configFile,
    async stats(filter = '') {
      const r = await request(adminPort, { path: `/stats?filter=${encodeURIComponent(filter)}` });
      const out: Record<string, number> = {};
      for (const line of r.body.split('\n')) {
        const m = /^(.+): (\d+)$/.exec(line.trim());
        if (m) out[m[1]] = Number(m[2]);
      }
      return out;
    },
    stop,
  };
}

/** Starts Envoy expecting it to refuse the configuration; resolves with its exit code and output. */
export async function envoyRejects(o: EnvoyOptions, timeoutMs = 20000): Promise<{ code: number | string; output: string }> {
  const { proc, stop } = launch({ concurrency: 1, ...o });
  const timer = new Promise<'running'>((r) => setTimeout(() => r('running'), timeoutMs).unref());
  const code = await Promise.race([proc.exited, timer]);
  await stop();
  return { code: code === 'running' ? 'still running' : code, output: proc.output() };
}
