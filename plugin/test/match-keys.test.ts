import { newHost, withConfig, reqHeaders, checkKeys, utf8, header, HeaderList, ProxyWasmHost, message } from './helpers';

/** Sends request headers; returns the check call's keys, or null if no check was made. */
function keysFor(h: ProxyWasmHost, headers: HeaderList): string[] | null {
  const before = h.httpCalls.length;
  const s = h.newStream();
  const r = s.sendRequestHeaders(headers);
  if (h.httpCalls.length === before) {
    expect(r).toBe(s.localResponse ? 1 : 0);
    return null;
  }
  expect(r).toBe(1);
  return checkKeys(h.httpCalls[h.httpCalls.length - 1]);
}

describe('request matching', () => {
  const ut: HeaderList = [['user-type', 'u']];
  test('host exact: case and port are ignored', () => {
    const h = newHost();
    expect(keysFor(h, reqHeaders(ut, 'dashscope.aliyuncs.com'))).toEqual(['u']);
    expect(keysFor(h, reqHeaders(ut, 'DashScope.Aliyuncs.COM:443'))).toEqual(['u']);
    expect(keysFor(h, reqHeaders(ut, 'dashscope.aliyuncs.com.evil'))).toBeNull();
    expect(keysFor(h, reqHeaders(ut, 'x.dashscope.aliyuncs.com'))).toBeNull();
  });

  test('host prefix / suffix, path prefix without the query, any entry matches', () => {
    const h = newHost(
      withConfig({
        matches: [{ host: { suffix: '.openai.com' }, path: { prefix: '/v1/' } }, { host: { prefix: 'llm-' } }, { path: { exact: '/generate' } }],
      }),
    );
    expect(keysFor(h, reqHeaders(ut, 'api.openai.com', '/v1/chat'))).toEqual(['u']);
    expect(keysFor(h, reqHeaders(ut, 'api.openai.com', '/v2/chat'))).toBeNull();
    expect(keysFor(h, reqHeaders(ut, 'LLM-a:8080', '/x'))).toEqual(['u']);
    expect(keysFor(h, reqHeaders(ut, 'other', '/generate?stream=true'))).toEqual(['u']);
    expect(keysFor(h, reqHeaders(ut, 'other', '/generate/x'))).toBeNull();
    expect(keysFor(h, reqHeaders(ut, '[::1]:8080', '/generate'))).toEqual(['u']);
  });

  test('no matches configured: every request is handled', () => {
    const h = newHost(withConfig({ matches: [] }));
    expect(keysFor(h, reqHeaders(ut, 'anything'))).toEqual(['u']);
  });

  test('request without :authority does not match a host rule', () => {
    const h = newHost();
    expect(
      keysFor(h, [
        [':method', 'GET'],
        [':path', '/'],
        ['user-type', 'u'],
      ]),
    ).toBeNull();
  });
});

describe('key templates', () => {
  const props = {
    'source.address': '10.1.2.3:45678',
    'destination.address': '[fd00::1]:8080',
    'connection.requested_server_name': 'api.example.com',
    'connection.uri_san_peer_certificate': 'spiffe://cluster.local/ns/default/sa/sleep',
    'xds.route_name': 'llm-route',
    'xds.cluster_name': 'outbound|443||api.example.com',
  };

  test('every variable, with literal text around placeholders', () => {
    const h = newHost(
      withConfig({
        matches: [],
        rateLimitKeys: [
          'user-{{request.headers.User-Type}}-x',
          '{{request.host}}|{{request.path}}|{{request.method}}',
          'q={{ request.query.tenant }}',
          '{{source.address}} {{source.ip}} {{destination.address}}',
          '{{connection.requested_server_name}}/{{source.principal}}',
          '{{xds.route_name}}@{{xds.cluster_name}}',
        ],
      }),
      { properties: props },
    );
    expect(keysFor(h, reqHeaders([['user-type', 'gold']], 'API.example.com:8443', '/v1/chat?tenant=a%20b+c&x=1'))).toEqual([
      'user-gold-x',
      'api.example.com|/v1/chat|POST',
      'q=a b c',
      '10.1.2.3:45678 10.1.2.3 [fd00::1]:8080',
      'api.example.com/spiffe://cluster.local/ns/default/sa/sleep',
      'llm-route@outbound|443||api.example.com',
    ]);
  });

  test('source.ip of an IPv6 peer has no brackets or port', () => {
    const h = newHost(withConfig({ matches: [], rateLimitKeys: ['{{source.ip}}'] }), { properties: { 'source.address': '[2001:db8::7]:5555' } });
    expect(keysFor(h, reqHeaders())).toEqual(['2001:db8::7']);
  });

  test('query parameter: first occurrence, exact name, fragment ignored', () => {
    const h = newHost(withConfig({ matches: [], rateLimitKeys: ['{{request.query.k}}'], onMissingKey: 'skip' }));
    expect(keysFor(h, reqHeaders([], 'h', '/p?kk=1&k=2&k=3'))).toEqual(['2']);
    expect(keysFor(h, reqHeaders([], 'h', '/p?k'))).toBeNull(); // present but empty -> missing -> skip
    expect(keysFor(h, reqHeaders([], 'h', '/p#k=1'))).toBeNull();
    expect(keysFor(h, reqHeaders([], 'h', '/p?k=%zz%4'))).toEqual(['%zz%4']);
  });

  describe('onMissingKey', () => {
    test('default is deny: 403 naming the template, no check call', () => {
      const h = newHost();
      const s = h.newStream();
      expect(s.sendRequestHeaders(reqHeaders())).toBe(1);
      expect(h.httpCalls).toHaveLength(0);
      expect(s.localResponse!.status).toBe(403);
      expect(message(s.localResponse!)).toBe('missing rate limit key attribute: {{request.headers.user-type}}');
      expect(h.metric('llm_ratelimit.missing_key_denied')).toBe(1);
    });

    test('an empty header value counts as missing', () => {
      const h = newHost();
      const s = h.newStream();
      s.sendRequestHeaders(reqHeaders([['user-type', '']]));
      expect(s.localResponse!.status).toBe(403);
    });

    test('skip drops that key; when all keys are skipped the request passes unchecked', () => {
      const h = newHost(withConfig({ rateLimitKeys: ['{{request.headers.a}}', 'fixed-{{request.method}}'], onMissingKey: 'skip' }));
      expect(keysFor(h, reqHeaders())).toEqual(['fixed-POST']);
      const h2 = newHost(withConfig({ onMissingKey: 'skip' }));
      const s = h2.newStream();
      expect(s.sendRequestHeaders(reqHeaders())).toBe(0);
      expect(h2.httpCalls).toHaveLength(0);
    });

    test('default literal fills the placeholder', () => {
      const h = newHost(withConfig({ rateLimitKeys: ['user-{{request.headers.user-type}}'], onMissingKey: { default: 'anonymous' } }));
      expect(keysFor(h, reqHeaders())).toEqual(['user-anonymous']);
    });

    test('missing property (no mTLS peer) is missing too', () => {
      const h = newHost(withConfig({ rateLimitKeys: ['{{source.principal}}'], onMissingKey: { default: 'none' } }));
      expect(keysFor(h, reqHeaders())).toEqual(['none']);
    });
  });

  // A key the service would refuse (over 512 bytes, not UTF-8) must never reach it: a
  // refused check is not the client's way past its limit. Long or invalid values become a
  // valid prefix + '~' + 128 bits of SHA-256 of the whole value.
  const digestOf = (raw: string) => require('crypto').createHash('sha256').update(Buffer.from(raw, 'latin1')).digest('hex').slice(0, 32).toUpperCase();

  test('a long value becomes its prefix plus a digest of the whole, within maxKeyBytes', () => {
    const h = newHost();
    const long = 'a'.repeat(1000);
    const [k] = keysFor(h, reqHeaders([['user-type', long]]))!;
    expect(k).toBe('a'.repeat(256 - 33) + '~' + digestOf(long));
    expect(Buffer.byteLength(k)).toBe(256);
    // Values that share the kept prefix stay distinct keys.
    expect(keysFor(h, reqHeaders([['user-type', long + 'b']]))![0]).not.toBe(k);
    // Within the bound: unchanged.
    expect(keysFor(h, reqHeaders([['user-type', 'a'.repeat(256)]]))).toEqual(['a'.repeat(256)]);
  });

  test('the prefix never splits a UTF-8 character; multi-byte values are bounded in bytes', () => {
    const h = newHost(withConfig({ maxKeyBytes: 64 }));
    const raw = utf8('a' + '漢'.repeat(40)); // 121 bytes
    const [k] = keysFor(h, reqHeaders([['user-type', raw]]))!;
    // 64 - 33 = 31 bytes of room: 'a' + 10 x 3 bytes.
    expect(k).toBe('a' + '漢'.repeat(10) + '~' + digestOf(raw));
    expect(Buffer.byteLength(k)).toBeLessThanOrEqual(64);
  });

  test('invalid UTF-8 (bytes 0x80-0xFF from a header or %FF in a query) keeps its valid prefix and a digest', () => {
    const h = newHost(withConfig({ rateLimitKeys: ['{{request.headers.user-type}}', 'app-{{request.query.app}}'] }));
    const raw = 'regular-user\xff' + '\xfe'.repeat(255);
    const keys = keysFor(h, reqHeaders([['user-type', raw]], 'dashscope.aliyuncs.com', '/v1/chat/completions?app=%FF%FE'));
    expect(keys).toEqual(['regular-user~' + digestOf(raw), 'app-~' + digestOf('app-\xff\xfe')]);
    // Each byte sequence has its own digest: two invalid values never share a key.
    expect(keysFor(h, reqHeaders([['user-type', 'regular-user\xfe']], 'dashscope.aliyuncs.com', '/v1/chat/completions?app=x'))![0]).toBe(
      'regular-user~' + digestOf('regular-user\xfe'),
    );
  });

  test('odd bytes become valid JSON: quotes, backslashes, controls, unicode', () => {
    const h = newHost();
    const cases: [string, string][] = [
      ['a"b', 'a"b'],
      ['a\\b', 'a\\b'],
      ['x\ty\u0001\u007f', 'x\ty\u0001\u007f'],
      [utf8('用户-ü-🙂'), '用户-ü-🙂'],
      ['\xff\xfe\xc0\xaf\xed\xa0\x80ok', '~' + digestOf('\xff\xfe\xc0\xaf\xed\xa0\x80ok')],
      ['%22]&ratelimit_keys=x', '%22]&ratelimit_keys=x'],
    ];
    for (const [raw, expected] of cases) {
      expect(keysFor(h, reqHeaders([['user-type', raw]]))).toEqual([expected]);
    }
  });

  test('the check path is fully percent-encoded (no raw JSON punctuation on the wire)', () => {
    const h = newHost();
    keysFor(h, reqHeaders([['user-type', 'a b&c']]));
    const path = header(h.httpCalls[0].headers, ':path')!;
    expect(path).toMatch(/^\/ratelimit\?ratelimit_keys=[A-Za-z0-9%._~-]+$/);
  });
});
