/**
 * No way around the limit, round 2 (issue 23): what a client can do with the request body and
 * the connection — a compressed body, a body trickled without content-length, a WebSocket
 * session, an ambiguous body key — tried through the real Envoy with the real plugin.
 */
import * as http from 'http';
import * as net from 'net';
import * as zlib from 'zlib';
import { AddressInfo } from 'net';
import { startStack, Stack } from '../src/harness/stack';
import { chat, chatStream, errorMessage, request, HttpResult } from '../src/harness/http';
import { bucketOf, withCharge } from '../src/harness/service';
import { waitFor } from '../src/harness/process';
import { RLS_PORT, RLS_SERVICE, gzipDecompressor } from '../src/harness/envoy-config';
import { startWsUpstream, wsHandshake, framesText, DELTA_TEXT, WsUpstream } from '../src/harness/ws-upstream';

const HOST = 'dashscope.aliyuncs.com';
const RULES = [{ rate_limit_key_regex: '^(debtor|free)', redis_expired_seconds: 7200, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: 100000 }];
const config = (extra: Record<string, unknown> = {}) => ({
  matches: [{ host: { exact: HOST } }],
  rateLimitKeys: ['{{request.headers.user-type}}'],
  rateLimitService: { service: RLS_SERVICE, port: RLS_PORT },
  failOpen: true,
  ...extra,
});

/** Characters of the text the mock streamed (all CJK: one token each). */
function deliveredChars(body: string): number {
  let n = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    for (const c of JSON.parse(line.slice(6)).choices ?? []) n += [...(c.delta?.content ?? '')].length;
  }
  return n;
}

function post(port: number, headers: Record<string, string>, body: Buffer | string): Promise<HttpResult> {
  return request(port, {
    method: 'POST',
    path: '/v1/chat/completions',
    body,
    headers: { host: HOST, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers },
  });
}

const code = (r: HttpResult) => (JSON.parse(r.body) as { error: { code: string } }).error.code;

/** A 200,000-character prompt, streamed, without include_usage: 718 bytes gzipped. */
const BIG_PROMPT = { messages: [{ role: 'user', content: 'a'.repeat(200000) }], stream: true };
const PROMPT_TOKENS = 50000; // 200,000 Latin characters at 4 a token

describe('2. a compressed request body', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config() });
  });
  afterAll(() => stack?.stop());

  test.each([
    ['gzip', zlib.gzipSync],
    ['deflate', zlib.deflateSync],
    ['GZIP', zlib.gzipSync],
    ['br', zlib.brotliCompressSync],
  ] as [string, (b: Buffer) => Buffer][])('content-encoding: %s on a matched route: 415 naming the encoding, the LLM never reached', async (enc, compress) => {
    const n = stack.mock!.requests.length;
    const body = compress(Buffer.from(JSON.stringify(BIG_PROMPT)));
    const r = await post(stack.envoy.port, { 'user-type': 'free-c1', 'content-encoding': enc }, body);
    expect(r.status).toBe(415);
    expect(code(r)).toBe('unsupported_content_encoding');
    expect(errorMessage(r.body)).toContain(`content-encoding: ${enc}`);
    expect(stack.mock!.requests.length).toBe(n);
    expect(stack.mock!.aborted.length).toBe(0);
  });

  test('content-encoding: identity is no compression: served', async () => {
    const r = await post(
      stack.envoy.port,
      { 'user-type': 'free-c2', 'content-encoding': 'identity' },
      JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(r.status).toBe(200);
  });

  test("an unmatched host is not the plugin's business: passed on", async () => {
    const n = stack.mock!.requests.length;
    const r = await request(stack.envoy.port, {
      method: 'POST',
      path: '/v1/chat/completions',
      body: zlib.gzipSync('{}'),
      headers: { host: 'other.example', 'content-encoding': 'gzip', 'content-type': 'application/json' },
    });
    expect(r.status).not.toBe(415);
    expect(stack.mock!.requests.length).toBe(n + 1);
  });
});

describe('2. allowCompressedRequests: true', () => {
  let allowed: Stack;
  beforeAll(async () => {
    allowed = await startStack({ rules: RULES, pluginConfig: config({ allowCompressedRequests: true }) });
  });
  afterAll(() => allowed?.stop());

  test('lets a compressed body through, passed on unchanged', async () => {
    const body = zlib.gzipSync(Buffer.from(JSON.stringify(BIG_PROMPT)));
    const n = allowed.mock!.requests.length;
    await post(allowed.envoy.port, { 'user-type': 'free-c3', 'content-encoding': 'gzip' }, body);
    expect(allowed.mock!.requests.length).toBe(n + 1);
    expect(allowed.mock!.requests[n].headers['content-encoding']).toBe('gzip');
  });
});

/** An upstream that always answers gzip (as some do, whatever accept-encoding says), with usage 1234 + 567. */
async function gzipUpstream(): Promise<{ port: number; acceptEncoding: (string | undefined)[]; close(): Promise<void> }> {
  const acceptEncoding: (string | undefined)[] = [];
  const server = http.createServer((req, res) => {
    acceptEncoding.push(req.headers['accept-encoding']);
    req.resume();
    req.on('end', () => {
      const body = JSON.stringify({
        id: 'chatcmpl-gz',
        object: 'chat.completion',
        model: 'qwen-plus',
        choices: [{ index: 0, message: { role: 'assistant', content: 'z'.repeat(4000) }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 1234, completion_tokens: 567, total_tokens: 1801 },
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(zlib.gzipSync(body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, acceptEncoding, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("2. Envoy's gzip decompressor in front of the plugin (the README's recipe)", () => {
  let stack: Stack;
  let gz: Awaited<ReturnType<typeof gzipUpstream>>;
  let gzStack: Stack;
  const chain = { httpFilters: [gzipDecompressor('request')], httpFiltersAfterPlugin: [gzipDecompressor('response')] };
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config(), ...chain });
    gz = await gzipUpstream();
    gzStack = await startStack({ rules: RULES, pluginConfig: config(), upstream: { host: '127.0.0.1', port: gz.port }, ...chain });
  });
  afterAll(async () => {
    await stack?.stop();
    await gzStack?.stop();
    await gz?.close();
  });

  const gzipStream = (port: number, headers: Record<string, string>) => {
    const body = zlib.gzipSync(Buffer.from(JSON.stringify(BIG_PROMPT)));
    expect(body.length).toBeLessThan(1000);
    return post(port, { 'content-encoding': 'gzip', ...headers }, body);
  };

  test('a gzip streaming request reaches the plugin plain: include_usage is added and the usage charged', async () => {
    const n = stack.mock!.requests.length;
    const { result, spent } = await withCharge(stack.service.port, 'free-d1', 100000, () => gzipStream(stack.envoy.port, { 'user-type': 'free-d1' }));
    expect(result.status).toBe(200);
    const got = stack.mock!.requests[n];
    expect(got.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(got.body).stream_options).toEqual({ include_usage: true });
    expect(spent).toBe(105); // the mock's usage
  });

  test('the same without usage in the answer: the decompressed prompt is estimated (not its 718 bytes)', async () => {
    const { result, spent } = await withCharge(stack.service.port, 'free-d2', 100000, () =>
      gzipStream(stack.envoy.port, { 'user-type': 'free-d2', 'x-mock-omit-usage': '1' }),
    );
    expect(result.status).toBe(200);
    expect(spent).toBe(PROMPT_TOKENS + deliveredChars(result.body));
  });

  test('a plain body with trailers of its own: forwarded whole, include_usage added', async () => {
    const n = stack.mock!.requests.length;
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hello' }], stream: true });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port: stack.envoy.port,
          method: 'POST',
          path: '/v1/chat/completions',
          agent: false,
          headers: { host: HOST, 'user-type': 'free-d4', 'content-type': 'application/json', 'transfer-encoding': 'chunked', trailer: 'x-t' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.write(body);
      req.addTrailers({ 'x-t': '1' });
      req.end();
    });
    expect(status).toBe(200);
    expect(JSON.parse(stack.mock!.requests[n].body)).toEqual({ ...JSON.parse(body), stream_options: { include_usage: true } });
  });

  test('a gzip response is decompressed before the plugin: its usage is charged to the token', async () => {
    const { result, spent } = await withCharge(gzStack.service.port, 'free-d3', 100000, () => chat(gzStack.envoy.port, HOST, { 'user-type': 'free-d3' }));
    expect(result.status).toBe(200);
    expect(JSON.parse(result.body).usage.total_tokens).toBe(1801); // the client gets it plain too
    expect(spent).toBe(1801);
    expect(gz.acceptEncoding.at(-1)).toContain('gzip'); // the decompressor asked for it
  });
});

/** Sends `body` chunked (no content-length) in `piece`-byte writes, a tick apart. */
function chunkedPost(port: number, headers: Record<string, string>, body: Buffer, piece: number): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/chat/completions',
        agent: false,
        headers: { host: HOST, 'content-type': 'application/json', 'transfer-encoding': 'chunked', ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    void (async () => {
      for (let i = 0; i < body.length; i += piece) {
        req.write(body.subarray(i, i + piece));
        await new Promise((r) => setTimeout(r, 2));
      }
      req.end();
    })();
  });
}

describe('3. a large body trickled without content-length', () => {
  // 700 KB, stream: true: over maxRequestBodyBytes (256 KiB), so estimated from its length. (Below
  // the listener's 1 MiB buffer limit even with 256 KiB held: a bigger body sent in one burst can
  // meet Envoy's 413 while reserve mode holds its first 256 KiB.)
  const body = Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: 'b'.repeat(700000) }], stream: true }));
  const lengthTokens = Math.ceil(body.length / 4);
  for (const [name, extra] of [
    ['default', {}],
    ['reserve.enabled', { reserve: { enabled: true } }],
  ] as [string, Record<string, unknown>][]) {
    describe(name, () => {
      let stack: Stack;
      beforeAll(async () => {
        stack = await startStack({ rules: RULES, pluginConfig: config(extra) });
      });
      afterAll(() => stack?.stop());

      /** What `key` was charged once the report has landed (with reserve, the reservation comes first). */
      const settledSpent = async (key: string, expected: number) => {
        const spent = async () => 100000 - ((await bucketOf(stack.service.port, key)).balance ?? 100000);
        await waitFor(`${key} charged ${expected}`, async () => ((await spent()) === expected ? true : undefined), 3000).catch(() => undefined);
        return spent();
      };

      test('chunked in 16 KiB pieces costs what the same body with content-length does: every byte counted', async () => {
        const key = `free-t-${name}`;
        const withLength = await post(stack.envoy.port, { 'user-type': key + '-cl', 'x-mock-omit-usage': '1' }, body);
        const chunked = await chunkedPost(stack.envoy.port, { 'user-type': key, 'x-mock-omit-usage': '1' }, body, 16384);
        expect(withLength.status).toBe(200);
        expect(chunked.status).toBe(200);
        expect(stack.mock!.requests.at(-1)!.body.length).toBe(body.length);
        const expected = lengthTokens + deliveredChars(withLength.body);
        expect(deliveredChars(chunked.body)).toBe(deliveredChars(withLength.body));
        expect(await settledSpent(key + '-cl', expected)).toBe(expected);
        expect(await settledSpent(key, expected)).toBe(expected);
      });
    });
  }
});

describe('6. a WebSocket session on a matched route', () => {
  let ws: WsUpstream;
  let stack: Stack;
  beforeAll(async () => {
    ws = await startWsUpstream(40); // 40 × 45 = 1,800 characters before any response.done
    stack = await startStack({ rules: RULES, pluginConfig: config(), upstream: { host: '127.0.0.1', port: ws.port } });
  });
  afterAll(async () => {
    await stack?.stop();
    await ws?.close();
  });

  test('Upgrade: websocket is refused (403, naming the setting); the upstream never sees it', async () => {
    const n = ws.sessions;
    const r = await wsHandshake(stack.envoy.port, HOST, '/v1/realtime?model=gpt-realtime', { 'user-type': 'free-w1' });
    expect(r.status).toBe(403);
    const err = JSON.parse(r.rest.toString('utf8')) as { error: { code: string; message: string } };
    expect(err.error.code).toBe('upgrade_not_allowed');
    expect(err.error.message).toContain('upgrades');
    expect(ws.sessions).toBe(n);
  });

  test('another host (not matched): the upgrade goes through', async () => {
    const r = await wsHandshake(stack.envoy.port, 'other.example', '/v1/realtime', {});
    expect(r.status).toBe(101);
    expect(framesText(r.rest).length).toBeGreaterThan(0);
  });
});

describe('6. Upgrade: h2c (curl --http2 on http://)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config() });
  });
  afterAll(() => stack?.stop());

  test('Envoy drops the h2c upgrade before the filters: an ordinary request, served', async () => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] });
    const head = await new Promise<string>((resolve) => {
      const s = net.connect(stack.envoy.port, '127.0.0.1', () =>
        s.write(
          `POST /v1/chat/completions HTTP/1.1\r\nHost: ${HOST}\r\nuser-type: free-h1\r\nConnection: Upgrade, HTTP2-Settings\r\n` +
            `Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        ),
      );
      let out = '';
      s.on('data', (d: Buffer) => {
        out += d.toString('latin1');
        if (out.includes('\r\n\r\n')) {
          s.destroy();
          resolve(out);
        }
      });
      s.on('error', () => resolve(out));
    });
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
  });
});

describe('6. upgrades: "unmetered"', () => {
  let ws: WsUpstream;
  let unmetered: Stack;
  beforeAll(async () => {
    ws = await startWsUpstream(40);
    unmetered = await startStack({ rules: RULES, pluginConfig: config({ upgrades: 'unmetered' }), upstream: { host: '127.0.0.1', port: ws.port } });
  });
  afterAll(async () => {
    await unmetered?.stop();
    await ws?.close();
  });

  test('the session goes through and, as documented, is not charged', async () => {
    const before = (await bucketOf(unmetered.service.port, 'free-w2')).balance;
    const r = await wsHandshake(unmetered.envoy.port, HOST, '/v1/realtime', { 'user-type': 'free-w2' });
    expect(r.status).toBe(101);
    const frames = framesText(r.rest);
    expect(frames.join('')).toContain(DELTA_TEXT);
    await new Promise((res) => setTimeout(res, 300));
    expect((await bucketOf(unmetered.service.port, 'free-w2')).balance).toBe(before);
  });
});

describe('8. ambiguous body keys', () => {
  let stack: Stack;
  let byBody: Stack;
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config() });
    byBody = await startStack({ rules: RULES, pluginConfig: config({ rateLimitKeys: ['{{request.body.user}}', 'org-{{request.body.metadata.org}}'] }) });
  });
  afterAll(async () => {
    await stack?.stop();
    await byBody?.stop();
  });

  const messages = [{ role: 'user', content: 'hi' }];
  const cases: [string, string][] = [
    ['model / Model', `{"model":"gpt-cheap","Model":"gpt-expensive","messages":${JSON.stringify(messages)}}`],
    ['model twice', `{"model":"gpt-cheap","model":"gpt-expensive","messages":${JSON.stringify(messages)}}`],
    ['stream / ſtream (long s, U+017F)', `{"stream":false,"ſtream":true,"messages":${JSON.stringify(messages)}}`],
    ['max_tokens / max_to\u212Aens (Kelvin sign)', `{"max_tokens":10,"max_to\u212Aens":100000,"messages":${JSON.stringify(messages)}}`],
    ['Model alone', `{"Model":"gpt-expensive","messages":${JSON.stringify(messages)}}`],
  ];
  test.each(cases)('%s: refused (400), the LLM never reached', async (_n, body) => {
    const n = stack.mock!.requests.length;
    const r = await post(stack.envoy.port, { 'user-type': 'free-a1' }, body);
    expect(r.status).toBe(400);
    expect(code(r)).toBe('duplicate_body_field');
    expect(stack.mock!.requests.length).toBe(n);
  });

  test('a key read from the body, spelt twice (user / USER, metadata.org / metadata.Org): refused', async () => {
    const n = byBody.mock!.requests.length;
    for (const body of [
      { user: 'free-a2', USER: 'debtor-a2', metadata: { org: 'x' }, messages },
      { user: 'free-a2', metadata: { org: 'x', Org: 'y' }, messages },
      { user: 'free-a2', metadata: { org: 'x' }, messages, uſer: 'debtor-a2' },
    ]) {
      const r = await post(byBody.envoy.port, {}, JSON.stringify(body));
      expect([r.status, code(r), errorMessage(r.body)]).toEqual([400, 'duplicate_body_field', expect.stringMatching(/"(user|metadata\.org)"/)]);
    }
    expect(byBody.mock!.requests.length).toBe(n);
  });

  test('a plain body, and names the plugin does not read in several spellings: served', async () => {
    const r = await post(
      byBody.envoy.port,
      {},
      JSON.stringify({ user: 'free-a3', metadata: { org: 'x', note: 1, Note: 2 }, messages, Temperature: 1, temperature: 0 }),
    );
    expect(r.status).toBe(200);
    expect((await chatStream(stack.envoy.port, HOST, { 'user-type': 'free-a3' })).status).toBe(200);
  });
});
