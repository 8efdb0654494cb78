/**
 * The main port's HTTP/1.1 server (src/server/http1.ts) over real TCP: framing, keep-alive,
 * pipelining, chunked bodies, 100-continue, limits, timeouts and shutdown. Each case sends raw
 * bytes and reads what comes back until the server closes or the expected replies are in.
 */
import { connect, type Socket } from 'node:net';
import { Http1Server, type HttpRequest } from '../src/server/http1';
import { parseHead } from '../src/server/http1-parse';
import { listen } from '../src/start';

let srv: Http1Server | undefined;
let port: number;
let seen: HttpRequest[];
let errors: unknown[];
/** Releases of the `/hold` requests in flight. */
let holds: (() => void)[];

/** Echoes what it parsed; `/slow` answers after 100 ms, `/throw` throws. */
async function start(opts: Partial<ConstructorParameters<typeof Http1Server>[1]> = {}): Promise<void> {
  seen = [];
  errors = [];
  holds = [];
  srv = new Http1Server(
    (req) => {
      seen.push(req);
      if (req.url === '/throw') throw new Error('boom');
      const reply = { status: 200, json: JSON.stringify({ method: req.method, url: req.url, body: req.body }) };
      if (req.url === '/slow') return new Promise((r) => setTimeout(() => r(reply), 100));
      if (req.url === '/hold') return new Promise((r) => holds.push(() => r(reply)));
      return reply;
    },
    { maxHeaderBytes: 4096, maxBodyBytes: 1000, keepAliveMs: 60_000, requestTimeoutMs: 60_000, onError: (e) => errors.push(e), ...opts },
  );
  port = await listen(srv.server, 0, '127.0.0.1');
}

afterEach(async () => {
  await srv?.close(1000);
});

interface Exchange {
  text: string;
  closed: boolean;
  socket: Socket;
}

/** Sends `parts` (one write each, `gapMs` apart); resolves when `replies` responses arrived or the server closed. */
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
        const len = Number(/Content-Length: (\d+)/.exec(raw.toString('latin1', at, end))?.[1] ?? 0);
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
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
      if (end) s.end();
    });
  });
}

const bodies = (text: string) =>
  text
    .split(/HTTP\/1\.1 /)
    .slice(1)
    .map((r) => ({ status: Number(r.slice(0, 3)), head: r.slice(0, r.indexOf('\r\n\r\n')), body: r.slice(r.indexOf('\r\n\r\n') + 4) }));

describe('framing', () => {
  beforeEach(() => start());

  test('keep-alive: two requests on one connection, each answered with its length and a JSON type', async () => {
    const x = await exchange(['GET /a HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /b HTTP/1.1\r\nHost: x\r\n\r\n'], 2, 20);
    const r = bodies(x.text);
    expect(r.map((y) => JSON.parse(y.body).url)).toEqual(['/a', '/b']);
    expect(r[0].head).toMatch(/Content-Type: application\/json\r\nContent-Length: \d+/);
    expect(r[0].head).toMatch(/\r\nDate: \w{3}, \d\d \w{3} \d{4} /);
    expect(x.closed).toBe(false);
    x.socket.destroy();
  });

  test('pipelined requests are answered in order even when the first is slower', async () => {
    const x = await exchange(['GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n'], 2);
    expect(bodies(x.text).map((y) => JSON.parse(y.body).url)).toEqual(['/slow', '/fast']);
    x.socket.destroy();
  });

  test('a body by Content-Length, split across writes, UTF-8 split inside a character', async () => {
    const body = Buffer.from('{"k":"用户"}');
    const head = `POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`;
    const x = await exchange([head.slice(0, 10), head.slice(10), body.subarray(0, 8), body.subarray(8)], 1, 10);
    expect(JSON.parse(bodies(x.text)[0].body).body).toBe('{"k":"用户"}');
    x.socket.destroy();
  });

  test('a chunked body (extension, trailer), byte by byte, then a second request', async () => {
    const req = 'POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n';
    const x = await exchange([...req.split(''), 'GET /next HTTP/1.1\r\nHost: x\r\n\r\n'], 2);
    expect(bodies(x.text).map((y) => JSON.parse(y.body))).toEqual([
      { method: 'POST', url: '/c', body: 'abcdefg' },
      { method: 'GET', url: '/next', body: '' },
    ]);
    x.socket.destroy();
  });

  test('Expect: 100-continue gets a 100 before the body is sent', async () => {
    const x = await exchange(['POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n'], 0);
    expect(x.text).toBe('HTTP/1.1 100 Continue\r\n\r\n');
    const rest = new Promise<string>((r) => x.socket.once('data', (d) => r(d.toString())));
    x.socket.write('hi');
    expect(JSON.parse(bodies(await rest)[0].body).body).toBe('hi');
    x.socket.destroy();
  });

  test('HTTP/1.0 closes after the reply unless it asks for keep-alive; Connection: close closes', async () => {
    const a = await exchange(['GET /a HTTP/1.0\r\n\r\n'], 99);
    expect(a.text).toMatch(/Connection: close/);
    expect(a.closed).toBe(true);
    const b = await exchange(['GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n', 'GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'], 2, 20);
    expect(b.text).toMatch(/Connection: keep-alive/);
    expect(bodies(b.text)).toHaveLength(2);
    b.socket.destroy();
    const c = await exchange(['GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n'], 2);
    expect(c.closed).toBe(true);
    expect(bodies(c.text)).toHaveLength(1);
    expect(seen.map((s) => s.url)).not.toContain('/never');
  });

  test('a client that half-closes after its request still gets the reply', async () => {
    const x = await exchange(['GET /slow HTTP/1.1\r\nHost: x\r\n\r\n'], 1, 0, true);
    expect(JSON.parse(bodies(x.text)[0].body).url).toBe('/slow');
  });

  test('HEAD: the length of the body, no body', async () => {
    const x = await exchange(['HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n'], 2);
    const [h, after] = bodies(x.text);
    expect(h.head).toMatch(/Content-Length: [1-9]/);
    expect(h.body).toBe('');
    expect(JSON.parse(after.body).url).toBe('/after');
    x.socket.destroy();
  });

  test('empty lines before a request line are ignored; the first of repeated headers is kept', async () => {
    const x = await exchange(['\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nAuthorization: first\r\nauthorization: second\r\n\r\n']);
    expect(bodies(x.text)[0].status).toBe(200);
    expect(seen[0].headers.authorization).toBe('first');
    x.socket.destroy();
  });

  test('a handler that throws: 500 JSON, logged, the connection goes on', async () => {
    const x = await exchange(['GET /throw HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n'], 2);
    const [a, b] = bodies(x.text);
    expect([a.status, JSON.parse(a.body)]).toEqual([500, { error: 'internal error' }]);
    expect(b.status).toBe(200);
    expect(errors).toHaveLength(1);
    x.socket.destroy();
  });
});

describe('a client that floods', () => {
  beforeEach(() => start());

  test('10 000 pipelined requests in one write are all answered, in order', async () => {
    const n = 10_000;
    const reqs = Array.from({ length: n }, (_, i) => `GET /p${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join('');
    const x = await exchange([reqs], n);
    const urls = bodies(x.text).map((y) => JSON.parse(y.body).url);
    expect(urls).toHaveLength(n);
    expect(urls[0]).toBe('/p0');
    expect(urls[n - 1]).toBe(`/p${n - 1}`);
    x.socket.destroy();
  });

  test('sending far ahead of a request in flight: the server stops reading, its buffer stays bounded', async () => {
    const s = connect(port, '127.0.0.1');
    await new Promise((r) => s.on('connect', r));
    s.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
    const chunk = 'GET /p HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(1000);
    // 30 MB offered; the kernel's buffers take a few MB, the server holds at most its bound.
    for (let i = 0; i < 1000 && s.write(chunk); i++);
    await new Promise((r) => setTimeout(r, 300));
    const bound = 4096 + 2 * 1000 + 64 * 1024; // the server's bound plus one read
    expect(srv!.stats().buffered).toBeLessThanOrEqual(bound);
    expect(seen.map((q) => q.url)).toEqual(['/hold']);
    // Released, it goes on reading and answering.
    holds[0]();
    await new Promise((r) => setTimeout(r, 300));
    expect(seen.length).toBeGreaterThan(1);
    s.destroy();
  });

  test('a head sent a byte at a time, close to the bound, is parsed', async () => {
    const req = `GET /b HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(3900)}\r\n\r\n`;
    const s = connect(port, '127.0.0.1');
    await new Promise((r) => s.on('connect', r));
    const got = new Promise<string>((r) => s.on('data', (d) => r(d.toString())));
    for (const ch of req) s.write(ch);
    expect(JSON.parse(bodies(await got)[0].body).url).toBe('/b');
    s.destroy();
  });
});

describe('header lines an attacker shapes', () => {
  // A linear parse takes milliseconds; one regex with a lazy value and trailing spaces takes
  // minutes on these (quadratic backtracking), far past the test's timeout.
  test('parseHead: a 1 MB run of spaces before a bad byte is refused, in linear time', () => {
    const line = `X-A: a${' '.repeat(1_000_000)}\x01`;
    expect(() => parseHead(`GET / HTTP/1.1\r\nHost: x\r\n${line}`)).toThrow('malformed HTTP header line');
    const ok = parseHead(`GET / HTTP/1.1\r\nHost: x\r\nX-A: \t a b${' '.repeat(1_000_000)}`);
    expect(ok.headers['x-a']).toBe('a b');
  });

  test('sixteen connections sending 60 KB header lines of spaces: refused, and the next request is answered', async () => {
    // Quadratic parsing would take seconds per line, and the event loop with it: the last request
    // would wait past the test's timeout.
    await start({ maxHeaderBytes: 64 * 1024 });
    const attack = `GET / HTTP/1.1\r\nHost: x\r\nX-A: a${' '.repeat(60_000)}\x01\r\n\r\n`;
    const xs = await Promise.all(Array.from({ length: 16 }, () => exchange([attack], 99)));
    expect(xs.map((x) => bodies(x.text)[0].status)).toEqual(Array(16).fill(400));
    const y = await exchange(['GET /after HTTP/1.1\r\nHost: x\r\n\r\n']);
    expect(JSON.parse(bodies(y.text)[0].body).url).toBe('/after');
    y.socket.destroy();
  });

  test('headers named like Object properties are plain headers', () => {
    const h = parseHead('GET / HTTP/1.1\r\nHost: x\r\n__proto__: a\r\nconstructor: b\r\nConnection: x, Close\r\n\r\n'.slice(0, -4));
    expect(h.headers['__proto__']).toBe('a');
    expect(h.headers['constructor']).toBe('b');
    expect(Object.keys(h.headers).sort()).toEqual(['__proto__', 'connection', 'constructor', 'host']);
    expect(h.keepAlive).toBe(false);
  });
});

describe('refused: a JSON error, the connection closed, the handler not called', () => {
  beforeEach(() => start());

  const cases: [string, string | Buffer, number][] = [
    ['not HTTP', 'NOT HTTP\r\n\r\n', 400],
    ['raw UTF-8 in the target', Buffer.concat([Buffer.from('GET /'), Buffer.from('用', 'utf8'), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]), 400],
    ['HTTP/2 request line', 'GET / HTTP/2.0\r\nHost: x\r\n\r\n', 400],
    ['no Host in HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n', 400],
    ['a folded header line', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  2\r\n\r\n', 400],
    ['a bare LF inside the head', 'GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n', 400],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : x\r\n\r\n', 400],
    ['a control byte in a value', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n', 400],
    ['Content-Length and Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['two different Content-Lengths', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd', 400],
    ['a Content-Length that is not a number', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', 400],
    ['Transfer-Encoding other than chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
    ['a malformed chunk size', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400],
    ['a chunk-size line over 1 KiB', `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;${'e'.repeat(1100)}\r\na\r\n0\r\n\r\n`, 400],
    ['a chunk without its CRLF', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n', 400],
    ['a body over the bound (declared)', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n', 400],
    ['a chunked body over the bound', `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n${'a'.repeat(1001)}\r\n0\r\n\r\n`, 400],
    ['a head over the bound', `GET /${'a'.repeat(5000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431],
    ['a head over the bound, still arriving', `GET /${'a'.repeat(5000)}`, 431],
    ['more than 100 header lines', `GET / HTTP/1.1\r\nHost: x\r\n${'X-A: 1\r\n'.repeat(101)}\r\n`, 431],
  ];

  test.each(cases)('%s', async (_name, bytes, status) => {
    const x = await exchange([bytes], 99);
    expect(x.closed).toBe(true);
    const [r] = bodies(x.text);
    expect(r.status).toBe(status);
    expect(r.head).toMatch(/Content-Type: application\/json/);
    expect(r.head).toMatch(/Connection: close/);
    expect(typeof JSON.parse(r.body).error).toBe('string');
    expect(seen).toHaveLength(0);
  });
});

describe('timeouts and shutdown', () => {
  test('a request head that does not arrive whole in time: the connection is closed', async () => {
    await start({ requestTimeoutMs: 300 });
    const t0 = Date.now();
    const x = await exchange(['GET / HTTP/1.1\r\nHost: x\r\n'], 99);
    expect(x.closed).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(seen).toHaveLength(0);
  });

  test('an idle keep-alive connection is closed after keepAliveMs', async () => {
    await start({ keepAliveMs: 300 });
    const x = await exchange(['GET /a HTTP/1.1\r\nHost: x\r\n\r\n']);
    let timer: NodeJS.Timeout | undefined;
    const closed = await new Promise<boolean>((r) => {
      x.socket.on('close', () => r(true));
      timer = setTimeout(() => r(false), 2000);
    });
    clearTimeout(timer);
    expect(closed).toBe(true);
  });

  test('close(): idle connections close at once, a request in flight is answered with Connection: close', async () => {
    await start();
    const idle = await exchange(['GET /a HTTP/1.1\r\nHost: x\r\n\r\n']);
    const idleClosed = new Promise<void>((r) => idle.socket.on('close', () => r()));
    const busy = exchange(['GET /slow HTTP/1.1\r\nHost: x\r\n\r\n']);
    await new Promise((r) => setTimeout(r, 30));
    const closing = srv!.close(5000);
    await idleClosed;
    const b = await busy;
    expect(bodies(b.text)[0].status).toBe(200);
    expect(b.text).toMatch(/Connection: close/);
    await closing;
  });
});
