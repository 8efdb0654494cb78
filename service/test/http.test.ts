/**
 * The service's HTTP behaviour over real TCP, as a client (or Envoy) sees it: framing,
 * keep-alive, pipelining, bodies, limits, timeouts and shutdown. Each case sends raw bytes to
 * a running service (startService, embedded store) and reads what comes back until the
 * service closes or the expected replies are in.
 */
import { connect, type Socket } from 'node:net';
import { startService, type RunningService, type ServiceOptions } from '../src/start';
import { MemoryStore } from '../src/store/memory';
import type { BucketStore } from '../src/store/types';

const RULES = JSON.stringify([
  { rate_limit_key_regex: '^(regular|slow|boom)-', redis_expired_seconds: 300, fill_interval_second: 60, tokens_per_fill: 50, max_tokens: 200 },
]);
const TOKEN = 'http-test-token-0123456789';

let svc: RunningService | undefined;
let port: number;
let memory: MemoryStore;

/**
 * The embedded store, except that keys `slow-…` answer after SLOW_MS (a request in flight)
 * and keys `boom-…` fail with a bug, not a store error (the service answers 500).
 */
const SLOW_MS = 200;
function store(): BucketStore {
  memory = new MemoryStore({ sweepIntervalMs: 0 });
  return {
    kind: 'memory',
    async run(key, p, op, cost, extra) {
      if (key.startsWith('slow-')) await new Promise((r) => setTimeout(r, SLOW_MS));
      if (key.startsWith('boom-')) throw new TypeError('a bug');
      return memory.run(key, p, op, cost, extra);
    },
    ping: () => memory.ping(),
    close: () => memory.close(),
  };
}

async function start(opts: Partial<ServiceOptions> = {}): Promise<void> {
  svc = await startService({ rules: RULES, store: store(), host: '127.0.0.1', adminPort: null, ...opts });
  port = svc.port;
}

afterEach(async () => {
  await svc?.close();
  svc = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const checkPath = (key: string) => `/ratelimit?ratelimit_keys=${encodeURIComponent(JSON.stringify([key]))}`;
const checkReq = (key: string, extra = '') => `GET ${checkPath(key)} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;
const updateBody = (key: string, tokens: number) => JSON.stringify({ ratelimit_keys: [key], total_tokens: tokens });
const updateReq = (key: string, tokens: number, extra = '') => {
  const body = updateBody(key, tokens);
  return `POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
};
/** A key's balance in the store (200 = untouched). */
const balance = async (key: string) => (await svc!.limiter.peek(key)).balance;

interface Exchange {
  text: string;
  closed: boolean;
  socket: Socket;
}

/** Sends `parts` (one write each, `gapMs` apart); resolves when `replies` responses arrived whole or the service closed. */
function exchange(parts: (string | Buffer)[], replies = 1, gapMs = 0, end = false): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let text = '';
    let closed = false;
    const done = () => resolve({ text, closed, socket: s });
    const count = () => (text.match(/HTTP\/1\.1 [2-5]\d\d /g) ?? []).length;
    const complete = () => {
      // Every reply that arrived is whole: its Content-Length of body bytes after its head.
      const raw = Buffer.from(text);
      let at = raw.indexOf('HTTP/1.1 ');
      while (at >= 0) {
        const end = raw.indexOf('\r\n\r\n', at);
        if (end < 0) return false;
        const len = Number(/Content-Length: (\d+)/i.exec(raw.toString('latin1', at, end))?.[1] ?? 0);
        if (raw.length < end + 4 + len) return false;
        at = raw.indexOf('HTTP/1.1 ', end + 4 + len);
      }
      return true;
    };
    s.on('data', (d) => {
      text += d.toString('utf8');
      if (count() >= replies && complete()) done();
    });
    s.on('end', () => {
      closed = true;
      done();
    });
    s.on('error', reject);
    s.on('connect', async () => {
      for (const p of parts) {
        s.write(p);
        if (gapMs) await sleep(gapMs);
      }
      if (end) s.end();
    });
  });
}

const replies = (text: string) =>
  text
    .split(/(?=HTTP\/1\.1 [1-5]\d\d )/)
    .filter((r) => r.startsWith('HTTP/1.1 '))
    .map((r) => ({
      status: Number(r.slice(9, 12)),
      head: r.slice(0, r.indexOf('\r\n\r\n') + 2),
      body: r.slice(r.indexOf('\r\n\r\n') + 4),
    }));
const json = (r: { body: string }) => JSON.parse(r.body);

/** Waits until the service has closed `s` (our writes fail or its FIN arrives and we close), or `ms` passes. */
function closedWithin(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

describe('framing', () => {
  beforeEach(() => start());

  test('keep-alive: two requests on one connection, each answered with its length, a JSON type and a Date', async () => {
    const x = await exchange([checkReq('regular-a'), 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'], 2, 20);
    const [a, b] = replies(x.text);
    expect(json(a)).toMatchObject({ allow: true, key: 'regular-a', remaining: 200 });
    expect(json(b)).toEqual({ status: 'ok' });
    expect(a.head).toMatch(/\r\nContent-Type: application\/json\r\n/i);
    expect(a.head).toMatch(/\r\nContent-Length: \d+\r\n/i);
    expect(a.head).toMatch(/\r\nDate: \w{3}, \d\d \w{3} \d{4} /i);
    expect(x.closed).toBe(false);
    x.socket.destroy();
  });

  test('pipelined requests are answered in order even when the first is slower', async () => {
    const x = await exchange([checkReq('slow-a') + checkReq('regular-b')], 2);
    expect(replies(x.text).map((r) => json(r).key)).toEqual(['slow-a', 'regular-b']);
    x.socket.destroy();
  });

  test('an update body by Content-Length, split across writes, UTF-8 split inside a character', async () => {
    const body = Buffer.from(updateBody('regular-用户', 7));
    const head = `POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`;
    const cut = body.indexOf(Buffer.from('用')) + 1;
    const x = await exchange([head.slice(0, 10), head.slice(10), body.subarray(0, cut), body.subarray(cut)], 1, 10);
    expect(replies(x.text)[0].status).toBe(200);
    expect(await balance('regular-用户')).toBe(193);
    x.socket.destroy();
  });

  test('a chunked update body (extension, trailer), byte by byte, then a second request', async () => {
    const body = updateBody('regular-c', 9);
    const req =
      'POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
      `4;ext=1\r\n${body.slice(0, 4)}\r\n${(body.length - 4).toString(16)}\r\n${body.slice(4)}\r\n0\r\nX-Trailer: 1\r\n\r\n`;
    const x = await exchange([...req.split(''), checkReq('regular-c')], 2);
    const [u, c] = replies(x.text);
    expect(u.status).toBe(200);
    expect(json(c)).toMatchObject({ allow: true, remaining: 191 });
    x.socket.destroy();
  });

  test('Expect: 100-continue gets a 100 before the body is sent', async () => {
    const body = updateBody('regular-e', 3);
    const x = await exchange([`POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`], 0);
    expect(x.text).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    const rest = new Promise<string>((r) => x.socket.once('data', (d) => r(d.toString())));
    x.socket.write(body);
    expect(replies(await rest)[0].status).toBe(200);
    expect(await balance('regular-e')).toBe(197);
    x.socket.destroy();
  });

  test('HTTP/1.0 closes after the reply unless it asks for keep-alive', async () => {
    const a = await exchange([`GET ${checkPath('regular-a')} HTTP/1.0\r\n\r\n`], 99);
    expect(a.text).toMatch(/\r\nConnection: close\r\n/i);
    expect(a.closed).toBe(true);
    const b = await exchange([`GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n`, `GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n`], 2, 20);
    expect(b.text).toMatch(/\r\nConnection: keep-alive\r\n/i);
    expect(replies(b.text)).toHaveLength(2);
    b.socket.destroy();
  });

  test('Connection: close closes after the reply; a request pipelined after it is neither answered nor applied', async () => {
    const x = await exchange([checkReq('regular-d', 'Connection: close\r\n') + updateReq('regular-d', 50)], 2);
    expect(x.closed).toBe(true);
    expect(replies(x.text)).toHaveLength(1);
    await sleep(50);
    expect(await balance('regular-d')).toBe(200);
  });

  test('a client that half-closes after its request still gets the reply', async () => {
    const x = await exchange([checkReq('slow-h')], 1, 0, true);
    expect(json(replies(x.text)[0])).toMatchObject({ key: 'slow-h' });
  });

  test('HEAD on a probe: the length of the body, no body', async () => {
    const x = await exchange(['HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'], 2);
    const [h, after] = replies(x.text);
    expect(h.head).toMatch(/Content-Length: [1-9]/i);
    expect(h.body).toBe('');
    expect(json(after)).toEqual({ status: 'ok' });
    x.socket.destroy();
  });

  test('empty lines before a request line are ignored', async () => {
    const x = await exchange(['\r\n\r\n' + checkReq('regular-a')]);
    expect(json(replies(x.text)[0])).toMatchObject({ allow: true, key: 'regular-a' });
    x.socket.destroy();
  });

  test('a bug in the service: 500 JSON, logged, the connection goes on', async () => {
    const errors: unknown[] = [];
    const logger = { debug() {}, info() {}, warn() {}, always() {}, error: (msg: string, f?: unknown) => errors.push([msg, f]) };
    await svc!.close();
    await start({ logger: logger as any });
    const x = await exchange([checkReq('boom-a') + checkReq('regular-a')], 2);
    const [a, b] = replies(x.text);
    expect([a.status, json(a)]).toEqual([500, { error: 'internal error' }]);
    expect(b.status).toBe(200);
    expect(errors).toHaveLength(1);
    x.socket.destroy();
  });

  test('headers named like Object properties are plain headers; Connection tokens are read in a list', async () => {
    const x = await exchange([checkReq('regular-a', '__proto__: a\r\nconstructor: b\r\nConnection: x, Close\r\n')], 99);
    expect(json(replies(x.text)[0])).toMatchObject({ allow: true });
    expect(x.closed).toBe(true);
  });
});

describe('bearer tokens over raw HTTP', () => {
  beforeEach(() => start({ tokens: [TOKEN] }));

  test('with a repeated Authorization header the first one counts, on both routes', async () => {
    const good = `Authorization: Bearer ${TOKEN}\r\n`;
    const bad = 'Authorization: Bearer wrong-token-0123456789\r\n';
    const x = await exchange([checkReq('regular-a', good + bad), checkReq('regular-a', bad + good), updateReq('regular-a', 5, bad + good)], 3, 20);
    const r = replies(x.text);
    expect(r.map((y) => y.status)).toEqual([200, 401, 401]);
    expect(r[1].head).toMatch(/\r\nWWW-Authenticate: Bearer\r\n/i);
    expect(json(r[2]).error).toMatch(/bearer token/);
    expect(await balance('regular-a')).toBe(200);
    x.socket.destroy();
  });
});

describe('a client that floods', () => {
  beforeEach(() => start());

  test('10 000 pipelined checks in one write are all answered, in order', async () => {
    const n = 10_000;
    const x = await exchange([Array.from({ length: n }, (_, i) => checkReq(`regular-p${i}`)).join('')], n);
    const keys = replies(x.text).map((r) => json(r).key);
    expect(keys).toHaveLength(n);
    expect(keys[0]).toBe('regular-p0');
    expect(keys[n - 1]).toBe(`regular-p${n - 1}`);
    x.socket.destroy();
  });

  test('pipelining far ahead without reading the replies: the service stops reading', async () => {
    const s = connect(port, '127.0.0.1');
    await new Promise((r) => s.on('connect', r));
    s.write(checkReq('slow-f'));
    const chunk = checkReq('regular-f').repeat(1000);
    // Offers up to 200 MB for a second; once the service stops reading, writes stay queued
    // here (the kernel's buffers hold a few MB).
    let accepted = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 1000 && accepted < 200e6) {
      if (!s.write(chunk, () => (accepted += chunk.length))) await Promise.race([new Promise((r) => s.once('drain', r)), sleep(100)]);
      await new Promise((r) => setImmediate(r));
    }
    expect(accepted).toBeLessThan(32e6);
    s.destroy();
  });

  test('a head sent a byte at a time, close to the 64 KiB bound, is parsed', async () => {
    const req = checkReq('regular-b', `X-Pad: ${'a'.repeat(60_000)}\r\n`);
    const s = connect(port, '127.0.0.1');
    await new Promise((r) => s.on('connect', r));
    const got = new Promise<string>((r) => {
      let t = '';
      s.on('data', (d) => {
        t += d;
        if (replies(t).length && t.length >= t.indexOf('\r\n\r\n') + 4 + Number(/Content-Length: (\d+)/i.exec(t)?.[1] ?? 1e9)) r(t);
      });
    });
    for (const ch of req) s.write(ch);
    expect(json(replies(await got)[0])).toMatchObject({ key: 'regular-b' });
    s.destroy();
  });

  test('sixteen connections sending 60 KB header lines of spaces: refused, and the next request is answered', async () => {
    const attack = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a${' '.repeat(60_000)}\x01\r\n\r\n`;
    const xs = await Promise.all(Array.from({ length: 16 }, () => exchange([attack], 99)));
    expect(xs.map((x) => replies(x.text)[0].status)).toEqual(Array(16).fill(400));
    const y = await exchange([checkReq('regular-a')]);
    expect(json(replies(y.text)[0])).toMatchObject({ allow: true });
    y.socket.destroy();
  });
});

describe('accepted although unusual (what Envoy forwards)', () => {
  beforeEach(() => start());

  test('a Content-Length with leading zeros', async () => {
    for (const [key, pad] of [
      ['regular-z1', '00'],
      ['regular-z2', '0'.repeat(20)],
    ] as const) {
      const body = updateBody(key, 11);
      const x = await exchange([
        `POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${pad}${body.length}\r\n\r\n${body}`,
      ]);
      expect([key, replies(x.text)[0].status]).toEqual([key, 200]);
      expect(await balance(key)).toBe(189);
      x.socket.destroy();
    }
  });

  test('Content-Length: 0005 on a body of 5 bytes is read as 5 (the update then refused as JSON, not as framing)', async () => {
    const x = await exchange(['POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\nContent-Length: 0005\r\n\r\n[1,2]' + checkReq('regular-a')], 2);
    const [u, c] = replies(x.text);
    expect([u.status, json(u).error]).toEqual([400, 'body must be a JSON object']);
    expect(json(c)).toMatchObject({ allow: true });
    x.socket.destroy();
  });

  test('100 header lines from the client plus the three Envoy adds', async () => {
    const client = Array.from({ length: 99 }, (_, i) => `X-Client-${i}: v\r\n`).join('');
    const envoy = 'X-Forwarded-Proto: http\r\nX-Request-Id: 4d2a1b7c-0000-4000-8000-000000000000\r\nX-Envoy-Expected-Rq-Timeout-Ms: 1000\r\n';
    const x = await exchange([checkReq('regular-a', client + envoy)]);
    expect(replies(x.text)[0].status).toBe(200);
    x.socket.destroy();
  });
});

describe('refused: a JSON error, the connection closed, nothing applied', () => {
  beforeEach(() => start());

  const update = (extraHead: string, body: string) => `POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\n${extraHead}\r\n${body}`;
  const body = updateBody('regular-r', 100);
  const chunked = (b: string) => `${Buffer.byteLength(b).toString(16)}\r\n${b}\r\n0\r\n\r\n`;
  const cases: [string, string | Buffer, number][] = [
    ['not HTTP', 'NOT HTTP\r\n\r\n', 400],
    [
      'raw UTF-8 in the target',
      Buffer.concat([Buffer.from('GET /ratelimit?ratelimit_keys=["'), Buffer.from('用', 'utf8'), Buffer.from('"] HTTP/1.1\r\nHost: x\r\n\r\n')]),
      400,
    ],
    ['HTTP/2 request line', `POST /update_ratelimit_record HTTP/2.0\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 505],
    ['no Host in HTTP/1.1', `POST /update_ratelimit_record HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`, 400],
    ['a folded header line', update(`X-A: 1\r\n  2\r\nContent-Length: ${body.length}\r\n`, body), 400],
    ['a bare LF inside the head', update(`X-A: 1\nContent-Length: ${body.length}\r\n`, body), 400],
    ['a space before the colon', update(`Content-Length : ${body.length}\r\n`, body), 400],
    ['a control byte in a value', update(`X-A: a\x01b\r\nContent-Length: ${body.length}\r\n`, body), 400],
    ['Content-Length and Transfer-Encoding', update(`Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`, chunked(body)), 400],
    ['two different Content-Lengths', update(`Content-Length: ${body.length}\r\nContent-Length: ${body.length + 1}\r\n`, body + ' '), 400],
    ['a Content-Length that is not a number', update('Content-Length: -1\r\n', body), 400],
    ['Transfer-Encoding other than chunked', update('Transfer-Encoding: gzip, chunked\r\n', chunked(body)), 501],
    ['a malformed chunk size', update('Transfer-Encoding: chunked\r\n', `zz\r\n${body}\r\n0\r\n\r\n`), 400],
    ['a chunk without its CRLF', update('Transfer-Encoding: chunked\r\n', `2\r\n${body}\r\n0\r\n\r\n`), 400],
    ['a body over the 64 KiB bound (declared)', update('Content-Length: 65537\r\n', body + ' '.repeat(65537 - body.length)), 413],
    ['a chunked body over the 64 KiB bound', update('Transfer-Encoding: chunked\r\n', chunked(body + ' '.repeat(70_000))), 413],
    ['a head over the 64 KiB bound', `GET /ratelimit?x=${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431],
    ['a head over the bound, still arriving', `GET /ratelimit?x=${'a'.repeat(70_000)}`, 431],
  ];

  test.each(cases)('%s', async (_name, bytes, status) => {
    const x = await exchange([bytes], 99);
    expect(x.closed).toBe(true);
    const [r] = replies(x.text);
    expect(r.status).toBe(status);
    expect(r.head).toMatch(/\r\nContent-Type: application\/json/i);
    expect(r.head.match(/\r\nConnection: [^\r]*/gi)).toEqual(['\r\nConnection: close']);
    expect(typeof json(r).error).toBe('string');
    expect(await balance('regular-r')).toBe(200);
  });
});

describe('a client that would hold a connection or make the service read without end', () => {
  test('after Connection: close or an HTTP/1.0 reply, a client sending a byte now and then is disconnected', async () => {
    await start({ http: { keepAliveTimeoutMs: 300, requestTimeoutMs: 500, checkIntervalMs: 50 } });
    for (const req of [checkReq('regular-a', 'Connection: close\r\n'), `GET ${checkPath('regular-a')} HTTP/1.0\r\n\r\n`]) {
      // allowHalfOpen: the client keeps its side open after the service's FIN and goes on sending.
      const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      s.on('error', () => undefined);
      s.write(req);
      const timer = setInterval(() => s.writable && s.write('x'), 50);
      const closed = await closedWithin(s, 3000);
      clearInterval(timer);
      s.destroy();
      expect([req.split('\r\n')[0].slice(-8), closed]).toEqual([req.split('\r\n')[0].slice(-8), true]);
    }
  });

  test('a second Connection header line saying close is honoured', async () => {
    await start();
    const x = await exchange([checkReq('regular-a', 'Connection: keep-alive\r\nConnection: close\r\n') + updateReq('regular-a', 50)], 2);
    expect(replies(x.text)).toHaveLength(1);
    expect(replies(x.text)[0].head).toMatch(/\r\nConnection: close\r\n/i);
    expect(x.closed).toBe(true);
    await sleep(50);
    expect(await balance('regular-a')).toBe(200);
  });

  test('a 100 MB update body: 413 as soon as its head arrives, then the connection is closed (the rest is not read)', async () => {
    await start();
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    let failed = false;
    s.on('data', (d) => (text += d));
    s.on('error', () => (failed = true));
    s.write('POST /update_ratelimit_record HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n');
    for (let i = 0; i < 100 && !replies(text).length; i++) await sleep(20);
    const [r] = replies(text);
    // The body goes on as fast as the service reads it, until the connection fails.
    const chunk = Buffer.alloc(1 << 16, 32);
    let accepted = 0;
    while (accepted < 100e6 && !failed && !s.destroyed) {
      await new Promise<void>((resolve) => {
        const ok = s.write(chunk, (err) => {
          if (!err) accepted += chunk.length;
        });
        if (ok) setImmediate(resolve);
        else {
          const t = setTimeout(resolve, 1000);
          s.once('drain', () => (clearTimeout(t), resolve()));
        }
      });
      if (s.writableLength > 16e6) break; // not read: the service stopped reading
    }
    s.destroy();
    expect({ status: r?.status, error: r && json(r).error, readUnder20MB: accepted < 20e6 }).toEqual({
      status: 413,
      error: 'body larger than 65536 bytes',
      readUnder20MB: true,
    });
  });

  test('a request head that does not arrive whole in time: 408 JSON, the connection closed', async () => {
    await start({ http: { keepAliveTimeoutMs: 300, requestTimeoutMs: 300, checkIntervalMs: 50 } });
    const t0 = Date.now();
    const x = await exchange(['GET /healthz HTTP/1.1\r\nHost: x\r\n'], 99);
    expect(x.closed).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(replies(x.text).map((r) => [r.status, json(r).error])).toEqual([[408, 'request not received in time']]);
  });

  test('an update body that does not arrive whole in time: the connection closed, nothing applied', async () => {
    await start({ http: { keepAliveTimeoutMs: 300, requestTimeoutMs: 300, checkIntervalMs: 50 } });
    const req = updateReq('regular-t', 10);
    const x = await exchange([req.slice(0, -3), req.slice(-3, -2), req.slice(-2, -1)], 99, 200);
    expect(x.closed).toBe(true);
    expect(await balance('regular-t')).toBe(200);
  });

  test('an idle keep-alive connection is closed after keepAliveTimeoutMs', async () => {
    await start({ http: { keepAliveTimeoutMs: 300, requestTimeoutMs: 500, checkIntervalMs: 50 } });
    const x = await exchange([checkReq('regular-a')]);
    expect(await closedWithin(x.socket, 2000)).toBe(true);
  });

  test('an idle keep-alive connection fed empty lines is closed all the same', async () => {
    await start({ http: { keepAliveTimeoutMs: 300, requestTimeoutMs: 500, checkIntervalMs: 50 } });
    const x = await exchange([checkReq('regular-a')]);
    x.socket.on('error', () => undefined);
    const timer = setInterval(() => x.socket.writable && x.socket.write('\r\n'), 50);
    const closed = await closedWithin(x.socket, 3000);
    clearInterval(timer);
    expect(closed).toBe(true);
  });
});

describe('the admin port', () => {
  test('has the same protections: JSON refusals, bounded heads and bodies', async () => {
    await start({ adminPort: 0 });
    port = svc!.adminPort!;
    const cases: [string, number][] = [
      [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(70_000)}\r\n\r\n`, 431],
      ['GET /healthz HTTP/1.1\r\n\r\n', 400],
      ['POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n', 413],
      ['NOT HTTP\r\n\r\n', 400],
    ];
    for (const [bytes, status] of cases) {
      const x = await exchange([bytes], 99);
      const [r] = replies(x.text);
      expect([status, r.status, x.closed]).toEqual([status, status, true]);
      expect(typeof json(r).error).toBe('string');
    }
    const ok = await exchange(['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n']);
    expect(json(replies(ok.text)[0])).toEqual({ status: 'ok' });
    ok.socket.destroy();
  });
});

describe('shutdown', () => {
  test('close(): idle connections close at once, a request in flight is answered with Connection: close', async () => {
    await start();
    const idle = await exchange([checkReq('regular-a')]);
    const idleClosed = closedWithin(idle.socket, 1000);
    const busy = exchange([checkReq('slow-b')]);
    await sleep(30);
    const closing = svc!.close();
    expect(await idleClosed).toBe(true);
    const b = await busy;
    expect(json(replies(b.text)[0])).toMatchObject({ key: 'slow-b' });
    expect(b.text).toMatch(/\r\nConnection: close\r\n/i);
    await closing;
    svc = undefined;
  });
});

describe('request targets', () => {
  beforeEach(() => start());

  test('the absolute form (RFC 9112 §3.2.2: a server must accept it) is the same request as its path', async () => {
    const upd = updateBody('regular-abs', 30);
    const x = await exchange(
      [
        `GET http://ratelimit.example${checkPath('regular-abs')} HTTP/1.1\r\nHost: ratelimit.example\r\n\r\n`,
        `POST HTTP://ratelimit.example/update_ratelimit_record HTTP/1.1\r\nHost: ratelimit.example\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(upd)}\r\n\r\n${upd}`,
        'GET https://ratelimit.example?x=1 HTTP/1.1\r\nHost: x\r\n\r\n',
        'GET http://ratelimit.example/healthz HTTP/1.1\r\nHost: x\r\n\r\n',
      ],
      4,
      20,
    );
    const [check, update, root, health] = replies(x.text);
    expect(json(check)).toMatchObject({ allow: true, key: 'regular-abs', remaining: 200 });
    expect(update.status).toBe(200);
    expect(await balance('regular-abs')).toBe(170);
    expect(root.status).toBe(404); // path "/" with a query
    expect(json(health)).toEqual({ status: 'ok' });
    x.socket.destroy();
  });
});
