import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { stringify } from 'yaml';
import { envoyBin } from './paths';
import { freePort } from './ports';
import { GiveUp, Proc, startProcess, waitFor } from './process';
import { request } from './http';
import { EnvoyConfigOptions, envoyConfig } from './envoy-config';

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

/** Writes the config for free ports into a temp dir and starts Envoy on it; stop() also removes the dir. */
async function launch(o: EnvoyOptions) {
  const [port, adminPort] = [await freePort(), await freePort()];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-envoy-'));
  const configFile = path.join(dir, 'envoy.yaml');
  fs.writeFileSync(configFile, stringify(envoyConfig({ ...o, listen: { host: '127.0.0.1', port }, admin: { host: '127.0.0.1', port: adminPort } })));
  const proc = startProcess('envoy', envoyBin(), [
    '-c', configFile,
    '--disable-hot-restart',
    '--concurrency', String(o.concurrency ?? 2),
    '-l', o.logLevel ?? 'warning',
    // The plugin's own log lines (configuration errors, call failures) come through this component.
    '--component-log-level', 'wasm:info',
  ]);
  const stop = async () => {
    await proc.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { port, adminPort, configFile, proc, stop };
}

/** Starts a real Envoy on free ports and waits until its listener answers. */
export async function startEnvoy(o: EnvoyOptions): Promise<Envoy> {
  const { port, adminPort, configFile, proc, stop } = await launch(o);
  try {
    await waitFor('Envoy to be ready', async () => {
      const r = await Promise.race([proc.exited.then((c) => ({ exited: c })), request(adminPort, { path: '/ready', timeoutMs: 1000 })]);
      if ('exited' in r) throw new GiveUp(`Envoy exited (${r.exited}):\n${proc.output().slice(-4000)}`);
      return r.status === 200 ? true : undefined;
    }, 30000, 50);
  } catch (e) {
    await stop();
    if (String(e).includes('Envoy exited')) throw e;
    throw new Error(`${String(e)}\n--- envoy output ---\n${proc.output().slice(-4000)}`);
  }
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
  const { proc, stop } = await launch({ concurrency: 1, ...o });
  const timer = new Promise<'running'>((r) => setTimeout(() => r('running'), timeoutMs).unref());
  const code = await Promise.race([proc.exited, timer]);
  await stop();
  return { code: code === 'running' ? 'still running' : code, output: proc.output() };
}
