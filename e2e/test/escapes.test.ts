/**
 * No way around the limit: each test is a way a hostile client got tokens without being
 * charged (or past a limit it was over), tried through the real Envoy with the real plugin.
 * Every one of them passed before the plugin closed it.
 */
import * as net from 'net';
import { startStack, Stack } from '../src/harness/stack';
import { chat, chatStream, request } from '../src/harness/http';
import { bucketOf, startService, withCharge, Service } from '../src/harness/service';
import { envoyRejects } from '../src/harness/envoy';
import { RLS_PORT, RLS_SERVICE, LLM_ROUTE } from '../src/harness/envoy-config';
import { PLUGIN_WASM } from '../src/harness/paths';
import { waitFor } from '../src/harness/process';
import { startRedis, RedisHandle } from '../../test-support/redis';

const HOST = 'dashscope.aliyuncs.com';
const PROMPT = '介绍一下你自己'; // 7 CJK characters: 7 tokens estimated
const RULES = [{ rate_limit_key_regex: '^(debtor|free)', redis_expired_seconds: 7200, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: 100000 }];
const SERVICE = { service: RLS_SERVICE, port: RLS_PORT };
const config = (extra: Record<string, unknown> = {}) => ({
  matches: [{ host: { exact: HOST } }],
  rateLimitKeys: ['{{request.headers.user-type}}'],
  rateLimitService: SERVICE,
  failOpen: true,
  ...extra,
});

/** Characters of the text the mock delivered in a JSON answer or an SSE stream (all CJK: one token each). */
function deliveredChars(body: string): number {
  if (!body.startsWith('data:')) return [...JSON.parse(body).choices[0].message.content].length;
  let n = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: {')) continue;
    const ev = JSON.parse(line.slice(6));
    for (const c of ev.choices ?? []) n += [...(c.delta?.content ?? '')].length;
  }
  return n;
}

/** Raw HTTP/1.1 bytes to Envoy (for what Node's client will not send: two Host headers). */
function raw(port: number, head: string, body: string): Promise<string> {
  return new Promise((resolve) => {
    // latin1: every char of `head` is one byte on the wire (0xFF stays 0xFF).
    const s = net.connect(port, '127.0.0.1', () =>
      s.write(Buffer.concat([Buffer.from(`${head}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`, 'latin1'), Buffer.from(body)])),
    );
    let out = '';
    s.on('data', (d) => {
      out += d.toString('latin1');
      if (out.includes('\r\n\r\n')) s.destroy(); // the status line and headers are all a test reads
      if (s.destroyed) resolve(out);
    });
    s.on('end', () => resolve(out));
    s.on('error', () => resolve(out));
  });
}

async function putInDebt(stack: Stack, key: string, headers: Record<string, string> = {}): Promise<void> {
  const r = await withCharge(stack.service.port, key, 100000, () =>
    chat(stack.envoy.port, HOST, { 'user-type': key, 'x-mock-usage': '10,200000', ...headers }),
  );
  expect(r.result.status).toBe(200);
  expect(r.after).toBeLessThan(0);
}

describe('1. a response without usage is charged', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config() });
  });
  afterAll(() => stack?.stop());

  test('a stream without stream_options.include_usage (the SDK default): usage is asked for and charged', async () => {
    const { result, spent } = await withCharge(stack.service.port, 'free-1', 100000, () =>
      chatStream(stack.envoy.port, HOST, { 'user-type': 'free-1' }, { messages: [{ role: 'user', content: PROMPT }], stream: true }),
    );
    expect(result.status).toBe(200);
    expect(spent).toBe(105);
  });

  test('an upstream that omits usage (JSON): the prompt and the delivered text, estimated', async () => {
    const { result, spent } = await withCharge(stack.service.port, 'free-2', 100000, () =>
      chat(stack.envoy.port, HOST, { 'user-type': 'free-2', 'x-mock-omit-usage': '1' }),
    );
    expect(result.status).toBe(200);
    expect(spent).toBe(7 + deliveredChars(result.body));
  });

  test('an upstream that omits usage (stream): the same estimate from the streamed deltas', async () => {
    const { result, spent } = await withCharge(stack.service.port, 'free-3', 100000, () =>
      chatStream(stack.envoy.port, HOST, { 'user-type': 'free-3', 'x-mock-omit-usage': '1' }, { messages: [{ role: 'user', content: PROMPT }], stream: true }),
    );
    expect(result.status).toBe(200);
    expect(spent).toBe(7 + deliveredChars(result.body));
  });

  test('a client that hangs up before the usage chunk is charged for what was delivered', async () => {
    const before = (await stack.envoy.stats('usage_estimated'))['wasmcustom.llm_ratelimit.usage_estimated'] ?? 0;
    const { result, spent } = await withCharge(stack.service.port, 'free-4', 100000, () =>
      chatStream(
        stack.envoy.port,
        HOST,
        { 'user-type': 'free-4', 'x-mock-chunks': '10', 'x-mock-chunk-delay-ms': '100' },
        { messages: [{ role: 'user', content: PROMPT }], stream: true },
        200,
      ),
    );
    const delivered = deliveredChars(result.body.slice(0, result.body.lastIndexOf('\n\n') + 2));
    expect(delivered).toBeGreaterThan(0);
    expect(spent).toBeGreaterThanOrEqual(7 + delivered);
    expect(spent).toBeLessThan(105); // not the whole answer, not the usage it never saw
    expect((await stack.envoy.stats('usage_estimated'))['wasmcustom.llm_ratelimit.usage_estimated']).toBeGreaterThan(before);
  });

  test('a model list or health check costs nothing: nothing generated, nothing reported', async () => {
    const sent = async () => (await stack.envoy.stats('reports_sent'))['wasmcustom.llm_ratelimit.reports_sent'] ?? 0;
    const before = await sent();
    const r = await request(stack.envoy.port, { path: '/v1/models', headers: { host: HOST, 'user-type': 'free-5' } });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).object).toBe('list');
    await new Promise((res) => setTimeout(res, 300)); // time for a (wrong) report to arrive
    expect((await bucketOf(stack.service.port, 'free-5')).balance ?? 100000).toBe(100000);
    expect(await sent()).toBe(before);
  });
});

describe('2. client bytes never make the service refuse the check (and fail open)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      rules: RULES,
      pluginConfig: config({
        rateLimitKeys: ['{{request.headers.user-type}}', 'app-{{request.headers.x-app}}', 'q-{{request.query.app}}'],
        onMissingKey: 'skip',
      }),
    });
    await putInDebt(stack, 'debtor-2');
  });
  afterAll(() => stack?.stop());

  test('256 bytes of 0xFF in a client-set header: the user in debt is still refused', async () => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: PROMPT }] });
    const r = await raw(stack.envoy.port, `POST / HTTP/1.1\r\nHost: ${HOST}\r\nuser-type: debtor-2\r\nx-app: ${'\xff'.repeat(256)}\r\n`, body);
    expect(r.split('\r\n')[0]).toBe('HTTP/1.1 429 Too Many Requests');
  });

  test('%FF in a query parameter: the same', async () => {
    const payload = JSON.stringify({ messages: [{ role: 'user', content: PROMPT }] });
    const r = await request(stack.envoy.port, {
      method: 'POST',
      path: '/v1/chat/completions?app=' + '%FF'.repeat(300),
      body: payload,
      headers: { host: HOST, 'user-type': 'debtor-2', 'content-type': 'application/json' },
    });
    expect(r.status).toBe(429);
  });
});

describe('3. a configuration the service cannot serve is refused', () => {
  const base = { llm: { host: '127.0.0.1', port: 9 }, rateLimitService: { host: '127.0.0.1', port: 9 }, wasmPath: PLUGIN_WASM };

  test('17 key templates: Envoy refuses the plugin configuration, naming the field', async () => {
    const keys = Array.from({ length: 17 }, (_, i) => `k${i}-{{request.headers.user-type}}`);
    const r = await envoyRejects({ ...base, pluginConfig: config({ rateLimitKeys: keys }) });
    expect(r.code).not.toBe('still running');
    expect(r.output).toContain('invalid pluginConfig: rateLimitKeys: at most 16 key templates');
  });

  test('maxKeyBytes above the protocol bound (512): refused', async () => {
    const r = await envoyRejects({ ...base, pluginConfig: config({ maxKeyBytes: 600 }) });
    expect(r.code).not.toBe('still running');
    expect(r.output).toContain('invalid pluginConfig: maxKeyBytes: expected an integer from 64 to 512, got 600');
  });

  describe('a service cluster Envoy does not know', () => {
    let open: Stack;
    let closed: Stack;
    const misspelt = { service: 'asm-llm-token-rate-limit-exmaple.default.svc.cluster.local', port: 80 };
    beforeAll(async () => {
      open = await startStack({ rules: RULES, pluginConfig: config({ rateLimitService: misspelt, failOpen: true }) });
      closed = await startStack({ rules: RULES, pluginConfig: config({ rateLimitService: misspelt, failOpen: false }) });
    });
    afterAll(async () => {
      await open?.stop();
      await closed?.stop();
    });

    test('failOpen: false refuses the request', async () => {
      const n = closed.mock!.requests.length;
      const r = await chat(closed.envoy.port, HOST, { 'user-type': 'free-6' });
      expect(r.status).toBe(503);
      expect(closed.mock!.requests.length).toBe(n);
    });

    test('failOpen: true lets it through, but says so: an error log line (once, not per request) and a gauge', async () => {
      for (let i = 0; i < 5; i++) expect((await chat(open.envoy.port, HOST, { 'user-type': 'free-7' })).status).toBe(200);
      const stats = await open.envoy.stats('llm_ratelimit.service_unreachable');
      expect(stats['wasmcustom.llm_ratelimit.service_unreachable']).toBe(1);
      const lines = open.envoy.proc
        .output()
        .split('\n')
        .filter((l) => l.includes('cannot call the rate-limit service'));
      expect(lines.length).toBeGreaterThanOrEqual(1);
      expect(lines.length).toBeLessThanOrEqual(2); // one per worker VM at most, not one per request
      expect(lines[0]).toMatch(/\[error\]/);
      expect(lines[0]).toContain('outbound|80||asm-llm-token-rate-limit-exmaple.default.svc.cluster.local');
    });
  });
});

describe('4. another spelling of the host', () => {
  let stack: Stack;
  let byRoute: Stack;
  beforeAll(async () => {
    stack = await startStack({ rules: RULES, pluginConfig: config() });
    byRoute = await startStack({ rules: RULES, pluginConfig: config({ matches: [{ route: { exact: LLM_ROUTE } }] }) });
    await putInDebt(stack, 'debtor-4');
    await putInDebt(byRoute, 'debtor-4');
  });
  afterAll(async () => {
    await stack?.stop();
    await byRoute?.stop();
  });

  const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] });
  const head = (hostLines: string) => `POST /v1/chat/completions HTTP/1.1\r\n${hostLines}user-type: debtor-4\r\nContent-Type: application/json\r\n`;

  test('a trailing dot is the same host: limited', async () => {
    expect((await chat(stack.envoy.port, `${HOST}.`, { 'user-type': 'debtor-4' })).status).toBe(429);
    expect((await chat(stack.envoy.port, `${HOST.toUpperCase()}.:80`, { 'user-type': 'debtor-4' })).status).toBe(429);
  });

  test('userinfo in Host, or two Host headers: refused (400) before reaching the LLM', async () => {
    const n = stack.mock!.requests.length;
    expect(await raw(stack.envoy.port, head(`Host: x@${HOST}\r\n`), body)).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(stack.envoy.port, head(`Host: ${HOST}\r\nHost: other.example\r\n`), body)).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(stack.envoy.port, head(`Host: other.example\r\nHost: ${HOST}\r\n`), body)).toMatch(/^HTTP\/1\.1 400 /);
    expect(stack.mock!.requests.length).toBe(n);
  });

  test('matching on the route Envoy chose: every spelling that reaches the LLM is limited', async () => {
    for (const host of [HOST, `${HOST}.`, 'x@' + HOST, 'anything.example']) {
      const r = await raw(byRoute.envoy.port, head(`Host: ${host}\r\n`), body);
      expect([host, r.split('\r\n')[0]]).toEqual([host, 'HTTP/1.1 429 Too Many Requests']);
    }
  });
});

describe('5. reports survive a service outage', () => {
  let redis: RedisHandle;
  let service: Service | undefined;
  let stack: Stack;
  let port: number | undefined;
  const OUTAGE_RULES = [
    { rate_limit_key_regex: '^steady', redis_expired_seconds: 86400, fill_interval_second: 86400, tokens_per_fill: 1, max_tokens: 1000000000 },
  ];
  // The first start takes a free port (PORT=0); the restart comes back on the same one, where Envoy sends.
  const start = () => startService({ rules: OUTAGE_RULES, redisUrl: redis.url, env: { PORT: String(port ?? 0) } });
  beforeAll(async () => {
    redis = await startRedis();
    service = await start();
    port = service.port;
    stack = await startStack({ rules: OUTAGE_RULES, rateLimitService: { host: '127.0.0.1', port }, pluginConfig: config({ failOpen: true, matches: [] }) });
  });
  afterAll(async () => {
    await stack?.stop();
    await service?.stop();
    await redis?.stop();
  });

  test('the service killed (SIGKILL) for 5 s under steady load (failOpen: true): afterwards the charge equals the usage served, to the token', async () => {
    let served = 0;
    let expected = 0;
    let running = true;
    const load = (async () => {
      for (let i = 0; running; i++) {
        const p = 1 + (i % 7);
        const c = 10 + (i % 13);
        const r = await chat(stack.envoy.port, HOST, { 'user-type': 'steady', 'x-mock-usage': `${p},${c}` });
        if (r.status === 200) {
          served++;
          expected += p + c;
        }
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    await new Promise((res) => setTimeout(res, 1000));
    // Killed, not stopped: a report it applied just before may never get its reply, and comes
    // back as a retry with the same request_id (which the service applies once).
    process.kill(service!.proc.pid, 'SIGKILL');
    await service!.proc.exited;
    service = undefined;
    await new Promise((res) => setTimeout(res, 5000));
    service = await start();
    await new Promise((res) => setTimeout(res, 1000));
    running = false;
    await load;
    expect(served).toBeGreaterThan(100);
    const stats = await stack.envoy.stats('llm_ratelimit');
    expect(stats['wasmcustom.llm_ratelimit.reports_retried']).toBeGreaterThan(0);
    // Retries back off up to 5 s: wait until every report has landed.
    const spent = await waitFor(
      'every report to be applied',
      async () => {
        const b = (await bucketOf(service!.port, 'steady')).balance;
        const s = 1000000000 - (b ?? 1000000000);
        return s >= expected ? s : undefined;
      },
      15000,
      200,
    );
    expect(spent).toBe(expected);
    expect((await stack.envoy.stats('llm_ratelimit'))['wasmcustom.llm_ratelimit.reports_dropped'] ?? 0).toBe(0);
  });
});

describe('6. the service token', () => {
  const TOKEN = 'tok-' + 'x'.repeat(28);
  let withToken: Stack;
  let without: Stack;
  beforeAll(async () => {
    const serviceEnv = { SERVICE_TOKENS: TOKEN };
    withToken = await startStack({ rules: RULES, serviceEnv, pluginConfig: config({ rateLimitService: { ...SERVICE, token: TOKEN } }) });
    without = await startStack({ rules: RULES, serviceEnv, pluginConfig: config({ failOpen: true }) });
  });
  afterAll(async () => {
    await withToken?.stop();
    await without?.stop();
  });

  test('with the token, checks and reports go through', async () => {
    const { result, spent } = await withCharge(withToken.service.port, 'free-8', 100000, () => chat(withToken.envoy.port, HOST, { 'user-type': 'free-8' }));
    expect(result.status).toBe(200);
    expect(spent).toBe(105);
  });

  test('a plugin without it is refused by the service (401): requests are refused (403), never let through by failOpen', async () => {
    const n = without.mock!.requests.length;
    const r = await chat(without.envoy.port, HOST, { 'user-type': 'free-9' });
    expect(r.status).toBe(403);
    expect(without.mock!.requests.length).toBe(n);
  });
});
