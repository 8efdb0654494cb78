/**
 * Issue 23 in the emulator: compressed request bodies, bodies past the bound without
 * content-length, protocol upgrades, body fields spelt twice; and their configuration.
 */
import {
  ProxyWasmHost,
  newHost,
  withConfig,
  reqHeaders,
  checkedRequest,
  respond,
  reports,
  message,
  LogLevel,
  HeaderList,
  FilterDataStatus,
  ALLOW,
} from './helpers';

const UT: HeaderList = [['user-type', 'regular-user']];
const NO_USAGE_JSON = '{"choices":[{"message":{"content":""}}]}';

function configureError(config: object): string {
  const h = new ProxyWasmHost();
  expect(h.configure(config)).toBe(false);
  const errors = h.logsAt(LogLevel.error);
  expect(errors).toHaveLength(1);
  return errors[0];
}

describe('configuration of the new settings', () => {
  test.each([
    [{ allowCompressedRequests: 'yes' }, 'allowCompressedRequests: expected true or false, got "yes"'],
    [{ upgrades: 'metered' }, 'upgrades: expected "refuse" or "unmetered", got "metered"'],
    [{ upgrades: true }, 'upgrades: expected "refuse" or "unmetered", got true'],
  ])('%j is refused, naming the field and the value', (extra, msg) => {
    expect(configureError(withConfig(extra))).toContain('invalid pluginConfig: ' + msg);
  });

  test('the accepted values configure', () => {
    for (const extra of [{ allowCompressedRequests: true }, { allowCompressedRequests: false }, { upgrades: 'refuse' }, { upgrades: 'unmetered' }]) {
      expect(new ProxyWasmHost().configure(withConfig(extra))).toBe(true);
    }
  });
});

describe('a compressed request body', () => {
  test.each(['gzip', 'deflate', 'br', 'GZip', 'identity, gzip', 'x-anything'])('content-encoding: %s: 415 before any check', (enc) => {
    const h = newHost();
    const s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders([...UT, ['content-encoding', enc]]))).toBe(1);
    expect(s.localResponse!.status).toBe(415);
    expect(message(s.localResponse!)).toBe(`compressed request bodies are not accepted on this route (content-encoding: ${enc}); send the body uncompressed`);
    expect(h.httpCalls).toHaveLength(0);
  });

  test.each(['identity', ' Identity ', ''])('content-encoding: "%s" is no compression: checked as usual', (enc) => {
    const h = newHost();
    const s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders([...UT, ['content-encoding', enc]]))).toBe(1);
    expect(s.localResponse).toBeNull();
    expect(h.httpCalls).toHaveLength(1);
  });

  test("an unmatched host with a compressed body is not the plugin's business", () => {
    const h = newHost();
    const s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders([['content-encoding', 'gzip']], 'other.example'))).toBe(0);
    expect(s.localResponse).toBeNull();
  });

  test('allowCompressedRequests: the body passes unread and unchanged; without usage the prompt counts as a body of maxRequestBodyBytes', () => {
    const h = newHost(withConfig({ allowCompressedRequests: true, maxRequestBodyBytes: 4096 }));
    const s = checkedRequest(h, ALLOW, [...UT, ['content-encoding', 'gzip'], ['content-length', '20']]);
    const body = Buffer.from('\x1f\x8b not json, 20 b.', 'latin1');
    expect(s.sendRequestBody(body, true)).toBe(FilterDataStatus.Continue);
    expect(s.upstreamRequestBody()).toEqual(body);
    expect(s.requestHeaders().find(([k]) => k === 'content-length')).toBeDefined(); // not rewritten: framing kept
    respond(s, 'application/json', [NO_USAGE_JSON]);
    expect(reports(h)[0]).toMatchObject({ prompt_tokens: 1024, estimated: true }); // 4096 bytes at 4 a token
  });
});

describe('a body past the bound without content-length', () => {
  test('every chunk after the bound is counted: the estimate equals the one with content-length', () => {
    const run = (withLength: boolean) => {
      const h = newHost(withConfig({ maxRequestBodyBytes: 1024 }));
      const s = checkedRequest(h, ALLOW, withLength ? [...UT, ['content-length', '6000']] : UT);
      for (let i = 0; i < 10; i++) s.sendRequestBody('x'.repeat(600), i === 9);
      expect(s.upstreamRequestBody().length).toBe(6000);
      respond(s, 'application/json', [NO_USAGE_JSON]);
      return reports(h)[0].prompt_tokens;
    };
    expect(run(false)).toBe(1500);
    expect(run(true)).toBe(1500);
  });

  test('with reserve: the report charges every byte, not the bytes buffered at the check', () => {
    const h = newHost(withConfig({ maxRequestBodyBytes: 1024, reserve: { enabled: true } }));
    const s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders(UT))).toBe(0);
    expect(s.sendRequestBody('x'.repeat(600))).toBe(FilterDataStatus.StopIterationAndBuffer);
    expect(s.sendRequestBody('x'.repeat(600))).toBe(FilterDataStatus.StopIterationAndWatermark); // over the bound: the check goes out
    // Chunks that come while the check is pending are held by Envoy and never handed back: counted now.
    expect(s.sendRequestBody('x'.repeat(600))).toBe(FilterDataStatus.StopIterationAndWatermark);
    expect(s.sendRequestBody('x'.repeat(600))).toBe(FilterDataStatus.StopIterationAndWatermark);
    h.reply(h.pendingCalls()[0].token, { status: 200, body: '{"allow":true,"reserved_tokens":1324}' });
    for (let i = 0; i < 6; i++) s.sendRequestBody('x'.repeat(600), i === 5);
    respond(s, 'application/json', [NO_USAGE_JSON]);
    expect(reports(h)[0]).toMatchObject({ prompt_tokens: 1500 });
  });
});

describe('a protocol upgrade on a matched route', () => {
  const upgrade = (extra: HeaderList, method = 'GET'): HeaderList => [
    [':method', method],
    [':path', '/v1/realtime'],
    [':authority', 'dashscope.aliyuncs.com'],
    ...UT,
    ...extra,
  ];

  test.each([
    [
      'Upgrade: websocket',
      upgrade([
        ['upgrade', 'websocket'],
        ['connection', 'Upgrade'],
      ]),
      'GET',
    ],
    ['CONNECT', upgrade([], 'CONNECT'), 'CONNECT'],
  ])('%s: 403 naming the setting, no check', (_n, headers) => {
    const h = newHost();
    const s = h.newStream();
    expect(s.sendRequestHeaders(headers)).toBe(1);
    expect(s.localResponse!.status).toBe(403);
    expect(message(s.localResponse!)).toContain('upgrades: "refuse"');
    expect(h.httpCalls).toHaveLength(0);
  });

  test('upgrades: "unmetered" lets it through to the usual check', () => {
    const h = newHost(withConfig({ upgrades: 'unmetered' }));
    const s = h.newStream();
    expect(s.sendRequestHeaders(upgrade([['upgrade', 'websocket']]))).toBe(1);
    expect(s.localResponse).toBeNull();
    expect(h.httpCalls).toHaveLength(1);
  });
});

describe('body fields spelt twice', () => {
  const send = (h: ProxyWasmHost, body: string, deferred = false) => {
    const s = deferred ? h.newStream() : checkedRequest(h);
    if (deferred) expect(s.sendRequestHeaders(reqHeaders(UT))).toBe(0);
    const r = s.sendRequestBody(body, true);
    return { s, r };
  };

  test.each([
    ['model', '{"model":"gpt-cheap","Model":"gpt-expensive"}'],
    ['model', '{"model":"a","model":"b"}'],
    ['model', '{"MODEL":"gpt-expensive"}'],
    ['stream', '{"stream":false,"ſtream":true,"messages":[]}'],
    ['max_tokens', '{"max_tokens":1,"max_to\u212Aens":100000}'],
    ['stream_options.include_usage', '{"stream":true,"stream_options":{"include_usage":true,"Include_Usage":false},"messages":[]}'],
  ])('%s in %s: 400, the body never forwarded', (field, body) => {
    const h = newHost();
    const { s, r } = send(h, body);
    expect(r).toBe(FilterDataStatus.StopIterationNoBuffer);
    expect(s.localResponse!.status).toBe(400);
    expect(message(s.localResponse!)).toBe(`request body field "${field}" appears more than once (names differing only in case count as the same)`);
    expect(s.upstreamRequestBody().length).toBe(0);
  });

  test('names the plugin does not read, in several spellings, pass; so does a body that is not JSON', () => {
    for (const body of ['{"model":"m","Temperature":1,"temperature":0,"messages":[{"content":"a","Content":"b"}]}', 'not json']) {
      const h = newHost();
      const { s, r } = send(h, body);
      expect(r).toBe(FilterDataStatus.Continue);
      expect(s.localResponse).toBeNull();
    }
  });

  test('a body key template: every level of its path is checked, before the check', () => {
    const cfg = withConfig({ rateLimitKeys: ['{{request.body.metadata.user_id}}'] });
    for (const [body, ok] of [
      ['{"metadata":{"user_id":"u1"}}', true],
      ['{"metadata":{"user_id":"u1","USER_ID":"u2"}}', false],
      ['{"metadata":{"user_id":"u1"},"Metadata":{"user_id":"u2"}}', false],
    ] as [string, boolean][]) {
      const h = newHost(cfg);
      const { s, r } = send(h, body, true);
      if (ok) {
        expect(r).toBe(FilterDataStatus.StopIterationAndBuffer); // the check is out
        expect(h.httpCalls).toHaveLength(1);
      } else {
        expect(r).toBe(FilterDataStatus.StopIterationNoBuffer);
        expect(s.localResponse!.status).toBe(400);
        expect(message(s.localResponse!)).toContain('"metadata.user_id"');
        expect(h.httpCalls).toHaveLength(0);
      }
    }
  });
});

describe('a held body followed by trailers', () => {
  test('read at the trailers, then resumed by the plugin (not by returning Continue)', () => {
    const h = newHost();
    const s = checkedRequest(h);
    expect(s.sendRequestBody('{"messages":[{"role":"user","content":"hi"}],"stream":true}')).toBe(FilterDataStatus.StopIterationAndBuffer);
    const before = s.requestContinued;
    expect(s.sendRequestTrailers([['x-envoy-decompressor-gzip-compressed-bytes', '85']])).toBe(1);
    expect(s.requestContinued).toBe(before + 1);
  });
});
