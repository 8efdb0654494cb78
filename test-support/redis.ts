/**
 * Throw-away Redis servers for every package's tests and benchmarks: free ports, temp dirs,
 * stopped by PID.
 */
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { createClient, createCluster } from 'redis';
import { freePort } from './ports';
import { Exited, requireBinary, startProcess, waitFor } from './process';

// service/test/main.test.ts takes its port from here (a Redis that comes up later on it).
export { freePort };

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

const INSTALL_HINT = 'apt-get install -y redis-server';

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

/**
 * redis-server on a port of its own. It cannot bind port 0 and say which port it got (`--port 0`
 * turns TCP off), so it is given a number; another process may bind that number first, and then
 * it starts again on another one. A port given by the caller (`port`, a restart) is tried once.
 */
async function startNode(port: number | undefined, what: string, extra: () => Promise<string[]>) {
  const bin = requireBinary('redis-server', INSTALL_HINT);
  for (let attempt = 1; ; attempt++) {
    const p = port ?? (await freePort());
    const more = await extra();
    const proc = startProcess('llmrl-redis', bin, (dir) => [
      '--port',
      String(p),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      ...more,
    ]);
    try {
      await waitFor(`${what} on ${p}`, async () => ((await rawCommand(p, 'PING', 300)).startsWith('+PONG') ? true : undefined), 10_000, proc);
      return { port: p, pid: proc.pid, stop: proc.stop };
    } catch (e) {
      await proc.stop();
      const taken = e instanceof Exited && /Address already in use/.test(e.output);
      if (!taken || port !== undefined || attempt === 5) throw e;
    }
  }
}

/** Starts a standalone redis-server on a free port (or `opts.port`, e.g. to restart one). */
export async function startRedis(opts: { port?: number } = {}): Promise<RedisHandle> {
  const { port, pid, stop } = await startNode(opts.port, 'redis-server', async () => []);
  return { port, url: `redis://127.0.0.1:${port}`, pid, stop };
}

/** Starts a 3-master Redis Cluster (no replicas) on free ports. */
export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  const cli = requireBinary('redis-cli', INSTALL_HINT);
  const nodes: { port: number; stop: () => Promise<void>; pid: number }[] = [];
  const stopAll = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (let i = 0; i < masters; i++) {
      nodes.push(
        await startNode(undefined, 'cluster node', async () => [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf', // in its --dir
          '--cluster-node-timeout',
          '2000',
          // A bus port of its own: the default (port + 10000) is nobody's, and past 65535 for ports above 55535.
          '--cluster-port',
          String(await freePort()),
        ]),
      );
    }
    const create = spawnSync(cli, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stderr || create.stdout}`);
    for (const n of nodes) {
      await waitFor(
        `cluster node ${n.port}`,
        async () => ((await rawCommand(n.port, 'CLUSTER INFO', 500)).includes('cluster_state:ok') ? true : undefined),
        15_000,
      );
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
