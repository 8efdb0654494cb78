/**
 * Ports for processes that cannot take one themselves. Whatever can bind port 0 and say which
 * port it got must do so (the service, Envoy, the mock LLM, Node servers): a number picked in
 * advance can be picked twice, or taken by another process before it is used. These are for the
 * rest: redis-server (its `--port 0` turns TCP off) and "a port where nothing listens".
 */
import * as net from 'node:net';

export interface HeldPort {
  port: number;
  /** Frees the port (at once: no TIME_WAIT is left on it), for a process that will bind it. */
  release(): Promise<void>;
}

// Every number this process handed out: never the same one twice, even if the kernel offers it again.
const handedOut = new Set<number>();

// Held ports are the local ends of connections to this server. One server for all of them: the
// kernel gives two connections to the same address two different local ports.
interface Anchor {
  port: number;
  /** The server's end of each held connection, by the held port. */
  accepted(port: number): Promise<net.Socket>;
}
let anchor: Promise<Anchor> | undefined;

function anchorServer(): Promise<Anchor> {
  anchor ??= new Promise((resolve, reject) => {
    const sockets = new Map<number, net.Socket>();
    const waiting = new Map<number, (s: net.Socket) => void>();
    const server = net.createServer((s) => {
      const port = s.remotePort!;
      s.on('error', () => undefined);
      s.unref();
      s.once('close', () => sockets.delete(port));
      sockets.set(port, s);
      waiting.get(port)?.(s);
      waiting.delete(port);
    });
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        accepted: (port) => new Promise((r) => (sockets.has(port) ? r(sockets.get(port)!) : waiting.set(port, r))),
      }),
    );
  });
  return anchor;
}

/** A port a listening socket could bind right now (the kernel's choice for port 0). */
function bindablePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function holdOnce(): Promise<HeldPort> {
  const a = await anchorServer();
  // The local port is chosen as a listener's would be, not as connect() chooses one: connect()
  // reuses ports that other connections left in TIME_WAIT, and redis-server cannot bind those
  // for a minute (about 1 in 70 held ports, measured). Taken in between: try another.
  let client: net.Socket;
  for (let tries = 0; ; tries++) {
    client = net.connect({ port: a.port, host: '127.0.0.1', localAddress: '127.0.0.1', localPort: await bindablePort() });
    const c = client;
    const err = await new Promise<Error | undefined>((resolve) => {
      c.once('connect', () => resolve(undefined));
      c.once('error', resolve);
    });
    if (!err) break;
    c.destroy();
    if (tries >= 20) throw err;
  }
  client.on('error', () => undefined);
  client.unref();
  const port = client.localPort!;
  const far = await a.accepted(port);
  return {
    port,
    release: () =>
      new Promise<void>((resolve) => {
        if (client.destroyed) return resolve();
        client.ref(); // until it has closed
        client.once('close', () => resolve());
        // The far end closes first: the TIME_WAIT goes to the server's side, not to this port.
        far.destroy();
      }),
  };
}

/**
 * A loopback port nothing listens on, which nobody can bind while it is held: connections to it
 * are refused, as by a service that is down. It is the local end of a connection this process
 * keeps open to a server of its own: the kernel picked it, and no other socket can bind it
 * meanwhile. Never the same number twice in this process.
 */
export async function holdPort(): Promise<HeldPort> {
  const seen: HeldPort[] = [];
  try {
    for (;;) {
      const held = await holdOnce();
      if (!handedOut.has(held.port)) {
        handedOut.add(held.port);
        return held;
      }
      seen.push(held); // keep it held meanwhile, so that the next try gets another number
    }
  } finally {
    await Promise.all(seen.map((h) => h.release()));
  }
}

/**
 * A port number for a process that can only be told which port to bind (redis-server): held
 * until this returns, never handed out twice by this process. Another process can still bind it
 * first: start yours so that a bind failure retries with another number (see startRedis).
 */
export async function freePort(): Promise<number> {
  const held = await holdPort();
  await held.release();
  return held.port;
}
