/**
 * Throw-away Redis servers for every package's tests and benchmarks: free ports, temp dirs,
 * stopped by PID.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { createClient, createCluster } from 'redis';
import { freePort } from './ports';

export { freePort };
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface RedisHandle {
  port: number;
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export interface RedisClusterHandle {
  ports: number[];
  urls: string[];
  pids: number[];
  stop(): Promise<void>;
}

const INSTALL_HINT = 'redis-server is not installed: apt-get install -y redis-server';

/** Absolute path of a binary on the PATH, or an Error naming the install command. */
function requireBinary(name: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  throw new Error(`${name} not found on the PATH: ${INSTALL_HINT}`);
}


/** Sends one inline command and returns the raw reply (or throws). */
export function rawCommand(port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`redis on ${port}: no reply to ${command}`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(command + '\r\n'));
    sock.on('data', (d) => {
      buf += d.toString();
      // Simple string/error/integer: one line. Bulk: header line + payload.
      const m = /^\$(-?\d+)\r\n/.exec(buf);
      if (buf.endsWith('\r\n') && (!m || Number(m[1]) < 0 || buf.length >= m[0].length + Number(m[1]) + 2)) {
        clearTimeout(timer);
        sock.end();
        resolve(buf);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    });
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string, proc?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`${what}: process exited with code ${proc.exitCode}`);
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms (${(last as Error)?.message ?? 'no reply'})`);
}

function stopProcess(proc: ChildProcess, dir: string): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () =>
    (stopping ??= new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(kill);
        rmSync(dir, { recursive: true, force: true });
        resolve();
      };
      if (proc.exitCode !== null || proc.signalCode !== null) return done();
      proc.once('exit', done);
      const kill = setTimeout(() => {
        try {
          process.kill(proc.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 3000);
      try {
        process.kill(proc.pid!, 'SIGTERM');
      } catch {
        done();
      }
    }));
}

// Safety net: a test runner that exits without stopping its servers still kills them.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) {
    try {
      process.kill(p.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

function spawnRedis(port: number, dir: string, extra: string[]): ChildProcess {
  const bin = requireBinary('redis-server');
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra];
  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.stderr?.resume();
  proc.on('error', () => undefined);
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  return proc;
}

/** Starts a standalone redis-server on a free port (or `opts.port`, e.g. to restart one). */
export async function startRedis(opts: { port?: number } = {}): Promise<RedisHandle> {
  requireBinary('redis-server');
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'llmrl-redis-'));
  const proc = spawnRedis(port, dir, []);
  const stop = stopProcess(proc, dir);
  try {
    await waitFor(async () => (await rawCommand(port, 'PING', 300)).startsWith('+PONG'), 10_000, `redis-server on ${port}`, proc);
  } catch (e) {
    await stop();
    throw e;
  }
  return { port, url: `redis://127.0.0.1:${port}`, pid: proc.pid!, stop };
}

/** Starts a 3-master Redis Cluster (no replicas) on free ports. */
export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  requireBinary('redis-server');
  requireBinary('redis-cli');
  const nodes: { port: number; stop: () => Promise<void>; pid: number }[] = [];
  const stopAll = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'llmrl-redis-cluster-'));
      const proc = spawnRedis(port, dir, [
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, 'nodes.conf'),
        '--cluster-node-timeout', '2000',
      ]);
      nodes.push({ port, pid: proc.pid!, stop: stopProcess(proc, dir) });
      await waitFor(async () => (await rawCommand(port, 'PING', 300)).startsWith('+PONG'), 10_000, `redis-server on ${port}`, proc);
    }
    const create = spawnSync(
      requireBinary('redis-cli'),
      ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stderr || create.stdout}`);
    for (const n of nodes) {
      await waitFor(async () => (await rawCommand(n.port, 'CLUSTER INFO', 500)).includes('cluster_state:ok'), 15_000, `cluster node ${n.port}`);
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  return {
    ports: nodes.map((n) => n.port),
    urls: nodes.map((n) => `redis://127.0.0.1:${n.port}`),
    pids: nodes.map((n) => n.pid),
    stop: stopAll,
  };
}

/**
 * A client of the test's own, to read records and run commands behind a store's back (the
 * stores expose no client). The caller closes it.
 */
export async function directClient(url: string) {
  const c = createClient({ url });
  await c.connect();
  return c;
}

/** The same for a cluster: its masters and a client per node. */
export async function directCluster(urls: string[]) {
  const c = createCluster({ rootNodes: urls.map((url) => ({ url })) });
  await c.connect();
  return c;
}
