/**
 * Keys from who the caller really is and what it calls: verified JWT claims and other Envoy
 * dynamic metadata, filter state, and fields of the JSON request body.
 */
import { newHost, withConfig, reqHeaders, checkKeys, ProxyWasmHost, LogLevel, FilterDataStatus, ALLOW, respond, reports, message, HeaderList } from './helpers';

const JWT = 'metadata.filter_metadata.envoy.filters.http.jwt_authn.payload';
const double = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(n);
  return b;
};

/** The keys of the check made for a request without body, or the local reply's status. */
function keysWith(config: object, properties: Record<string, string | Buffer>): string[] | string {
  const h = newHost(withConfig(config), { properties });
  const s = h.newStream();
  s.sendRequestHeaders(reqHeaders([['user-type', 'u']]), true);
  if (s.localResponse) return `${s.localResponse.status} ${message(s.localResponse)}`;
  return checkKeys(h.httpCalls[0]);
}

describe('verified JWT claims and Envoy metadata', () => {
  const claims = {
    [`${JWT}.sub`]: 'alice',
    [`${JWT}.org.tenant`]: 'acme',
    [`${JWT}.n`]: double(42),
    [`${JWT}.big`]: double(12345678901),
    [`${JWT}.f`]: double(1.5),
    [`${JWT}.admin`]: Buffer.from([1]),
    [`${JWT}.guest`]: Buffer.from([0]),
    [`${JWT}.eight`]: 'abcdefgh', // an 8-byte text claim stays text
  };

  test('a claim by name, nested claims, numbers and booleans as text', () => {
    expect(
      keysWith(
        {
          rateLimitKeys: [
            'user-{{jwt.sub}}',
            't-{{jwt.org.tenant}}',
            "n-{{jwt['n']}}",
            'b-{{jwt.big}}',
            'f-{{jwt.f}}',
            'a-{{jwt.admin}}',
            'g-{{jwt.guest}}',
            'e-{{jwt.eight}}',
          ],
        },
        claims,
      ),
    ).toEqual(['user-alice', 't-acme', 'n-42', 'b-12345678901', 'f-1.5', 'a-true', 'g-false', 'e-abcdefgh']);
  });

  test('a missing claim (no token, or no such claim) follows onMissingKey', () => {
    expect(keysWith({ rateLimitKeys: ['user-{{jwt.sub}}'] }, {})).toBe('403 missing rate limit key attribute: user-{{jwt.sub}}');
    expect(keysWith({ rateLimitKeys: ['user-{{jwt.team}}'], onMissingKey: { default: 'anonymous' } }, claims)).toEqual(['user-anonymous']);
  });

  test("any filter's dynamic metadata and filter state, with ['...'] for names with dots", () => {
    const props = { 'metadata.filter_metadata.my.authz.tenant': 'blue', 'filter_state.my.tenant.state': 'green' };
    expect(keysWith({ rateLimitKeys: ["{{metadata['my.authz'].tenant}}", "{{filter_state['my.tenant.state']}}"] }, props)).toEqual(['blue', 'green']);
  });

  test.each([
    ['{{jwt}}', 'unknown template variable "jwt"'],
    ['{{jwt.}}', 'invalid path after jwt'],
    ["{{jwt['sub}}", 'invalid path after jwt'],
    ["{{metadata['envoy.filters.http.jwt_authn']}}", 'metadata needs a filter name and a key'],
    ['{{filter_state.a.b}}', 'filter_state takes one name'],
    ['{{request.body}}', 'unknown template variable "request.body"'],
    ['{{request.body.}}', 'invalid path after request.body'],
  ])('%s is refused at configure time', (tpl, err) => {
    const h = new ProxyWasmHost();
    expect(h.configure(withConfig({ rateLimitKeys: [tpl] }))).toBe(false);
    expect(h.logsAt(LogLevel.error)[0]).toContain(`rateLimitKeys[0]: ${err}`);
  });
});

describe('fields of the JSON request body', () => {
  const cfg = (extra: object = {}) => withConfig({ rateLimitKeys: ['{{request.headers.user-type}}', 'model-{{request.body.model}}'], ...extra });
  const UT: HeaderList = [['user-type', 'alice']];

  /** Headers, then the body in chunks; returns the stream and the status of each callback. */
  function send(h: ProxyWasmHost, chunks: string[], headers: HeaderList = UT) {
    const s = h.newStream();
    const hs = s.sendRequestHeaders(reqHeaders(headers), chunks.length === 0);
    const ds = chunks.map((c, i) => s.sendRequestBody(c, i === chunks.length - 1));
    return { s, hs, ds };
  }

  test('the check waits for the body, then carries the field; the body goes upstream unchanged after the allow', () => {
    const h = newHost(cfg({ includeStreamUsage: false }));
    const body = '{"model":"qwen-max","messages":[{"role":"user","content":"hi"}]}';
    const { s, hs, ds } = send(h, [body.slice(0, 10), body.slice(10)]);
    expect(hs).toBe(0); // headers continue: Envoy hands over the body only after they do
    expect(ds).toEqual([FilterDataStatus.StopIterationAndBuffer, FilterDataStatus.StopIterationAndBuffer]);
    expect(checkKeys(h.pendingCalls()[0])).toEqual(['alice', 'model-qwen-max']);
    expect(s.upstreamRequestBody().length).toBe(0); // nothing upstream before the decision
    h.reply(h.pendingCalls()[0].token, ALLOW);
    expect(s.upstreamRequestBody().toString()).toBe(body);
  });

  test('two models for one user are two keys; dotted fields, numbers and booleans', () => {
    const h = newHost(
      withConfig({ rateLimitKeys: ['{{request.body.model}}', '{{request.body.metadata.user_id}}', '{{request.body.n}}', '{{request.body.stream}}'] }),
    );
    send(h, ['{"model":"a","metadata":{"user_id":"u-1"},"n":2,"stream":true}']);
    send(h, ['{"model":"b","metadata":{"user_id":"u-1"},"n":2,"stream":false}']);
    expect(h.pendingCalls().map(checkKeys)).toEqual([
      ['a', 'u-1', '2', 'true'],
      ['b', 'u-1', '2', 'false'],
    ]);
  });

  test.each([
    ['not JSON', ['model=qwen']],
    ['no such field', ['{"messages":[]}']],
    ['a field that is an object', ['{"model":{"id":"x"}}']],
    ['no body at all', []],
  ])('%s: the field is missing and onMissingKey decides', (_n, chunks) => {
    const deny = newHost(cfg());
    const { s } = send(deny, chunks);
    expect(deny.pendingCalls()).toHaveLength(0);
    expect(s.localResponse!.status).toBe(403);
    expect(message(s.localResponse!)).toBe('missing rate limit key attribute: model-{{request.body.model}}');
    const dflt = newHost(cfg({ onMissingKey: { default: 'unknown' } }));
    send(dflt, chunks);
    expect(checkKeys(dflt.pendingCalls()[0])).toEqual(['alice', 'model-unknown']);
  });

  test('a body over maxRequestBodyBytes is not read: the field is missing (and the body is held until the decision)', () => {
    const h = newHost(cfg({ maxRequestBodyBytes: 1024, onMissingKey: { default: 'big' } }));
    const big = '{"model":"m","pad":"' + 'x'.repeat(2000) + '"}';
    const { ds } = send(h, [big.slice(0, 1500), big.slice(1500)]);
    expect(ds[0]).toBe(FilterDataStatus.StopIterationAndWatermark);
    expect(checkKeys(h.pendingCalls()[0])).toEqual(['alice', 'model-big']);
  });

  test('templates that need no body do not delay the request: the check goes out with the headers', () => {
    const h = newHost(withConfig({ rateLimitKeys: ['{{request.headers.user-type}}'] }));
    const s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders(UT))).toBe(1);
    expect(h.pendingCalls()).toHaveLength(1);
  });

  test('a streaming request keyed by its model still streams, is asked for usage and is charged', () => {
    const h = newHost(cfg());
    const { s } = send(h, ['{"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]}']);
    h.reply(h.pendingCalls()[0].token, ALLOW);
    expect(JSON.parse(s.upstreamRequestBody().toString()).stream_options).toEqual({ include_usage: true });
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', 'text/event-stream'],
    ]);
    expect(s.sendResponseBody('data: {"choices":[{"delta":{"content":"a"}}]}\n\n')).toBe(0);
    expect(s.sendResponseBody('data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}\n\ndata: [DONE]\n\n', true)).toBe(0);
    expect(reports(h)).toEqual([{ ratelimit_keys: ['alice', 'model-m1'], prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 }]);
  });

  test('with reserve on, one read of the body serves both', () => {
    const h = newHost(cfg({ reserve: { enabled: true } }));
    send(h, ['{"model":"m2","messages":[{"role":"user","content":"' + 'a'.repeat(40) + '"}],"max_tokens":5}']);
    const call = h.pendingCalls()[0];
    expect(checkKeys(call)).toEqual(['alice', 'model-m2']);
    expect(call.headers.find(([k]) => k === ':path')![1]).toMatch(/&reserve=15$/);
  });

  test('denied by the service: the request is answered at the end of its body, never forwarded', () => {
    const h = newHost(cfg());
    const { s } = send(h, ['{"model":"m3"}']);
    h.reply(h.pendingCalls()[0].token, { status: 200, body: '{"allow":false,"description":"model-m3 is being rate-limited"}' });
    expect(s.localResponse!.status).toBe(429);
    expect(s.upstreamRequestBody().length).toBe(0);
    respond(s, 'application/json', []);
    expect(reports(h)).toEqual([]);
  });
});

describe('hash(): a key per secret without the secret', () => {
  const sha = (s: string) => require('crypto').createHash('sha256').update(s).digest('hex').slice(0, 32).toUpperCase();

  test('hash(request.headers.authorization): one bucket per API key; the key never reaches the service', () => {
    const h = newHost(withConfig({ rateLimitKeys: ['apikey-{{hash(request.headers.authorization)}}'] }));
    for (const auth of ['Bearer sk-alice', 'Bearer sk-bob']) {
      const s = h.newStream();
      s.sendRequestHeaders(reqHeaders([['authorization', auth]]), true);
    }
    const calls = h.pendingCalls();
    expect(calls.map(checkKeys)).toEqual([[`apikey-${sha('Bearer sk-alice')}`], [`apikey-${sha('Bearer sk-bob')}`]]);
    for (const c of calls) expect(JSON.stringify(c.headers) + c.body.toString()).not.toContain('sk-');
  });

  test('any variable can be hashed (a claim, a body field); missing stays missing', () => {
    const props = { [`${JWT}.email`]: 'alice@example.com' };
    expect(keysWith({ rateLimitKeys: ['{{hash(jwt.email)}}'] }, props)).toEqual([sha('alice@example.com')]);
    expect(keysWith({ rateLimitKeys: ['{{hash( request.headers.x-none )}}'] }, {})).toBe(
      '403 missing rate limit key attribute: {{hash( request.headers.x-none )}}',
    );
  });

  test('hash of an unknown variable, or of hash, is refused at configure time', () => {
    for (const [tpl, err] of [
      ['{{hash(nope)}}', 'unknown template variable "nope"'],
      ['{{hash(hash(request.path))}}', 'hash() of hash() adds nothing'],
    ]) {
      const h = new ProxyWasmHost();
      expect(h.configure(withConfig({ rateLimitKeys: [tpl] }))).toBe(false);
      expect(h.logsAt(LogLevel.error)[0]).toContain(err);
    }
  });
});
