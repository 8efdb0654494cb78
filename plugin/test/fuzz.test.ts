// Generated inputs (seeded, reproducible): nothing may trap the VM.
import { newHost, withConfig, ProxyWasmHost, reqHeaders, ALLOW, prng, HeaderList, utf8 } from './helpers';

const SEED = 20261127;
const ALPHABET = Buffer.from('{}[]":,\\ \n\r\t0123456789eE+-.abcdeflnrstuUx/\u0000');
const SAMPLES = [
  '{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}}',
  '{"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":7,"totalTokenCount":11}}',
  'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}\n\n' +
    'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n',
  'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\ndata: [DONE]\n\n',
  '{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":6,"total_tokens":11}}}',
];

function gen(rand: () => number) {
  const int = (n: number) => Math.floor(rand() * n);
  const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => (rand() < 0.5 ? ALPHABET[int(ALPHABET.length)] : int(256))));
  const mutate = (src: string | Buffer): Buffer => {
    let b = Buffer.from(src);
    const ops = 1 + int(4);
    for (let i = 0; i < ops; i++) {
      const at = int(b.length + 1);
      switch (int(6)) {
        case 0:
          b = b.subarray(0, at);
          break; // truncate
        case 1:
          if (b.length) b[int(b.length)] = int(256);
          break; // flip
        case 2:
          b = Buffer.concat([b.subarray(0, at), randomBytes(1 + int(8)), b.subarray(at)]);
          break; // insert
        case 3:
          b = Buffer.concat([b.subarray(0, at), b.subarray(int(b.length))]);
          break; // cut/duplicate
        case 4:
          b = Buffer.concat([b.subarray(0, at), Buffer.from('{"usage":{"total_tokens":' + '9'.repeat(int(40)) + '}}'), b.subarray(at)]);
          break;
        case 5:
          b = Buffer.concat([b.subarray(0, at), Buffer.from('['.repeat(int(200)) + '{'.repeat(int(200))), b.subarray(at)]);
          break;
      }
    }
    return b;
  };
  const body = (): Buffer => (rand() < 0.2 ? randomBytes(int(300)) : mutate(SAMPLES[int(SAMPLES.length)]));
  const chunks = (b: Buffer): Buffer[] => {
    const out: Buffer[] = [];
    let i = 0;
    while (i < b.length) {
      const n = 1 + int(rand() < 0.5 ? 8 : 200);
      out.push(b.subarray(i, i + n));
      i += n;
    }
    return out;
  };
  const headerValue = (): string => {
    const r = rand();
    if (r < 0.3) return randomBytes(int(40)).toString('latin1');
    if (r < 0.5) return utf8('用户"\\\n\r\t🙂' + 'x'.repeat(int(600)));
    if (r < 0.6) return '';
    return mutate('regular-user').toString('latin1');
  };
  return { int, body, chunks, headerValue, mutate, randomBytes };
}

describe('generated inputs never trap', () => {
  test('random and truncated response bodies (JSON and SSE), random chunking', () => {
    const rand = prng(SEED);
    const g = gen(rand);
    const h = newHost(withConfig({ maxBufferBytes: 256 }));
    let memAfterWarmup = 0;
    for (let i = 0; i < 4000; i++) {
      const s = h.newStream();
      s.sendRequestHeaders(reqHeaders([['user-type', 'u']]));
      h.reply(h.pendingCalls()[0].token, ALLOW);
      const sse = rand() < 0.5;
      const hdrs: HeaderList = [
        [':status', '200'],
        ['content-type', sse ? 'text/event-stream' : 'application/json'],
      ];
      if (rand() < 0.05) hdrs.push(['content-encoding', g.headerValue()]);
      s.sendResponseHeaders(hdrs);
      const cs = g.chunks(g.body());
      const cut = rand() < 0.2; // stream ends early sometimes
      cs.forEach((c, k) => {
        if (!cut || k < cs.length / 2) expect(s.sendResponseBody(c, !cut && k === cs.length - 1)).toBe(0);
      });
      if (cs.length === 0) s.sendResponseBody('', true);
      s.end();
      for (const c of h.pendingCalls()) h.reply(c.token, rand() < 0.5 ? 'fail' : { status: 200 });
      // Failed reports are retried on the tick (and may fail again).
      h.tick(6000);
      for (const c of h.pendingCalls()) h.reply(c.token, rand() < 0.5 ? 'fail' : { status: 200 });
      if (i === 500) memAfterWarmup = (h.instance.exports.memory as WebAssembly.Memory).buffer.byteLength;
    }
    expect(h.trapped).toBeNull();
    // No leak across 3,500 more streams of every outcome.
    expect((h.instance.exports.memory as WebAssembly.Memory).buffer.byteLength).toBe(memAfterWarmup);
    // Each report is well-formed with sane numbers.
    for (const c of h.httpCalls.filter((x) => x.body.length > 0)) {
      const r = JSON.parse(c.body.toString());
      for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
        expect(Number.isSafeInteger(r[k]) && r[k] >= 0).toBe(true);
      }
    }
  });

  test('odd request header values and paths: keys are valid JSON, decisions always made', () => {
    const rand = prng(SEED + 1);
    const g = gen(rand);
    const h = newHost(
      withConfig({
        matches: [],
        rateLimitKeys: ['{{request.headers.user-type}}', 'p{{request.path}}q{{request.query.k}}', '{{request.host}}', '{{source.ip}}'],
        onMissingKey: { default: '-' },
      }),
      { properties: { 'source.address': '[::1' } },
    );
    for (let i = 0; i < 3000; i++) {
      const s = h.newStream();
      const before = h.httpCalls.length;
      const path = rand() < 0.5 ? g.headerValue() : '/p?k=' + g.headerValue();
      s.sendRequestHeaders([
        [':method', g.headerValue()],
        [':path', path],
        [':authority', g.headerValue()],
        ['user-type', g.headerValue()],
      ]);
      expect(h.httpCalls.length).toBe(before + 1);
      const call = h.httpCalls[before];
      const p = call.headers.find(([k]) => k === ':path')![1];
      const keys = JSON.parse(decodeURIComponent(p.slice('/ratelimit?ratelimit_keys='.length)));
      expect(keys).toHaveLength(4);
      for (const k of keys) expect(Buffer.byteLength(k)).toBeLessThanOrEqual(256 + 3 * 64); // U+FFFD may triple invalid bytes
      h.reply(
        call.token,
        rand() < 0.5 ? ALLOW : { status: 200, body: g.mutate('{"allow":false,"description":"x","limit":1,"remaining":2,"retry_after_seconds":3}') },
      );
      expect(s.requestContinued + (s.localResponse ? 1 : 0)).toBe(1);
      s.end();
    }
    expect(h.trapped).toBeNull();
  });

  test('random check replies', () => {
    const rand = prng(SEED + 2);
    const g = gen(rand);
    const h = newHost();
    for (let i = 0; i < 3000; i++) {
      const s = h.newStream();
      s.sendRequestHeaders(reqHeaders([['user-type', 'u']]));
      const body =
        rand() < 0.3 ? g.randomBytes(g.int(100)) : g.mutate('{"allow":false,"description":"\\u9650 k","limit":200,"remaining":-3,"retry_after_seconds":1.5}');
      h.reply(h.pendingCalls()[0].token, { status: rand() < 0.9 ? 200 : g.int(600), body });
      expect(s.requestContinued + (s.localResponse ? 1 : 0)).toBe(1);
      s.end();
    }
    expect(h.trapped).toBeNull();
  });

  test('random configurations are accepted or refused with an error line, never trap', () => {
    const rand = prng(SEED + 3);
    const g = gen(rand);
    const base = JSON.stringify(withConfig({ onMissingKey: { default: 'x' }, failOpen: true, rejectStatus: 429, maxBufferBytes: 1024 }));
    let accepted = 0;
    for (let i = 0; i < 1500; i++) {
      const h = new ProxyWasmHost();
      const ok = h.configure(g.mutate(base));
      if (ok) accepted++;
      else expect(h.logsAt(4)).toHaveLength(1);
      expect(h.trapped).toBeNull();
    }
    expect(accepted).toBeGreaterThan(0);
  });

  test('a 10 MB JSON body in one chunk and in 64 KB chunks', () => {
    const big =
      '{"choices":[{"message":{"content":"' + 'é\\"{['.repeat(2 * 1024 * 1024) + '"}}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}';
    for (const size of [big.length, 65536]) {
      const h = newHost();
      const s = h.newStream();
      s.sendRequestHeaders(reqHeaders([['user-type', 'u']]));
      h.reply(h.pendingCalls()[0].token, ALLOW);
      s.sendResponseHeaders([
        [':status', '200'],
        ['content-type', 'application/json'],
      ]);
      const b = Buffer.from(big);
      for (let i = 0; i < b.length; i += size) s.sendResponseBody(b.subarray(i, i + size), i + size >= b.length);
      expect(JSON.parse(h.httpCalls[1].body.toString())).toMatchObject({ total_tokens: 3 });
    }
  });

  test('deep nesting and a usage object nested 100 levels does not confuse the scanner', () => {
    const h = newHost();
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders([['user-type', 'u']]));
    h.reply(h.pendingCalls()[0].token, ALLOW);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'application/json'],
    ]);
    s.sendResponseBody(
      '{"a":' + '['.repeat(100000) + ']'.repeat(100000) + ',"usage":{"total_tokens":1,"x":' + '{"y":'.repeat(100) + '1' + '}'.repeat(100) + '}}',
      true,
    );
    expect(h.trapped).toBeNull();
    // The usage object itself is deeper than the JSON parser's limit: dropped, not a trap.
    expect(h.metric('llm_ratelimit.usage_not_found')).toBe(1);
  });
});
