import { ProxyWasmHost, SEED_CONFIG, SEED_CLUSTER, newHost, withConfig, checkedRequest, reqHeaders, header, LogLevel } from './helpers';

function configureError(config: object | string | Buffer): string {
  const h = new ProxyWasmHost();
  expect(h.configure(config)).toBe(false);
  const errors = h.logsAt(LogLevel.error);
  expect(errors).toHaveLength(1);
  return errors[0];
}

describe('configuration', () => {
  test('the seed configuration works unchanged and uses the Istio outbound cluster', () => {
    const h = newHost(SEED_CONFIG);
    const s = h.newStream();
    expect(s.sendRequestHeaders(reqHeaders([['user-type', 'regular-user']]))).toBe(1);
    const call = h.httpCalls[0];
    expect(call.cluster).toBe(SEED_CLUSTER);
    expect(header(call.headers, ':authority')).toBe('asm-llm-token-rate-limit-example.default.svc.cluster.local');
    expect(call.timeoutMs).toBe(1000);
  });

  test('a good configuration is logged once at info level', () => {
    const h = newHost();
    expect(h.logsAt(LogLevel.info)).toEqual([
      'llm-token-ratelimit: configured: 1 match rule(s), 1 key template(s), service cluster ' +
        SEED_CLUSTER +
        ', failOpen true, ' +
        'estimateMissingUsage true, includeStreamUsage true, maxRequestBodyBytes 262144, reserve off',
    ]);
  });

  test('proxy_validate_configuration applies the same checks without configuring', () => {
    const h = new ProxyWasmHost();
    expect(h.configure(SEED_CONFIG)).toBe(true);
    expect(h.call('proxy_validate_configuration', h.rootId, h.rootId, JSON.stringify(SEED_CONFIG).length)).toBe(1);
    expect(h.call('proxy_validate_configuration', h.rootId, h.rootId, 0)).toBe(0); // empty config is invalid
  });

  test('cluster, authority and timeout overrides', () => {
    const h = newHost(withConfig({ rateLimitService: { cluster: 'rl', authority: 'rl.local:8080', timeoutMs: 250 } }));
    const s = h.newStream();
    s.sendRequestHeaders(reqHeaders([['user-type', 'u']]));
    expect(h.httpCalls[0]).toMatchObject({ cluster: 'rl', timeoutMs: 250 });
    expect(header(h.httpCalls[0].headers, ':authority')).toBe('rl.local:8080');
  });

  test('reconfiguring replaces the configuration; a bad one is refused and logged', () => {
    const h = newHost();
    expect(h.configure(withConfig({ rejectStatus: 403 }))).toBe(true);
    const s = checkedRequest(h, { status: 200, body: '{"allow":false,"description":"no"}' });
    expect(s.localResponse!.status).toBe(403);
    expect(h.configure(withConfig({ rejectStatus: 'x' }))).toBe(false);
  });

  test('fallOpen (the reference spelling) is accepted', () => {
    const h = newHost(withConfig({ fallOpen: false }));
    const s = checkedRequest(h, 'fail');
    expect(s.localResponse!.status).toBe(503);
  });

  const invalid: [string, object | string, RegExp][] = [
    ['not JSON', '{"matches": [', /pluginConfig: not valid JSON/],
    ['empty', '', /pluginConfig: empty/],
    ['not an object', '[1]', /pluginConfig: expected a JSON object, got \[1\]/],
    ['unknown top-level field', withConfig({ rateLimitkeys: [] }), /rateLimitkeys: unknown field.*got \[\]/],
    ['missing keys', { rateLimitService: SEED_CONFIG.rateLimitService }, /rateLimitKeys: required/],
    ['keys not an array', withConfig({ rateLimitKeys: 'x' }), /rateLimitKeys: expected a non-empty array of strings, got "x"/],
    ['empty keys', withConfig({ rateLimitKeys: [] }), /rateLimitKeys: expected a non-empty array/],
    ['key not a string', withConfig({ rateLimitKeys: ['a', 7] }), /rateLimitKeys\[1\]: expected a non-empty string, got 7/],
    [
      'unknown template variable',
      withConfig({ rateLimitKeys: ['{{request.header.user}}'] }),
      /rateLimitKeys\[0\]: unknown template variable "request.header.user".*got "\{\{request.header.user\}\}"/,
    ],
    ['unclosed placeholder', withConfig({ rateLimitKeys: ['a-{{request.host'] }), /rateLimitKeys\[0\]: unclosed/],
    ['bad header name', withConfig({ rateLimitKeys: ['{{request.headers.a b}}'] }), /rateLimitKeys\[0\]: invalid header name "a b"/],
    ['missing service', withConfig({ rateLimitService: { port: 80 } }), /rateLimitService.service: required/],
    ['missing port', withConfig({ rateLimitService: { service: 's' } }), /rateLimitService.port: required/],
    ['port zero', withConfig({ rateLimitService: { service: 's', port: 0 } }), /rateLimitService.port: expected an integer from 1 to 65535, got 0/],
    ['port too big', withConfig({ rateLimitService: { service: 's', port: 70000 } }), /rateLimitService.port: .*got 70000/],
    ['port string', withConfig({ rateLimitService: { service: 's', port: '80' } }), /rateLimitService.port: .*got "80"/],
    ['port fraction', withConfig({ rateLimitService: { service: 's', port: 80.5 } }), /rateLimitService.port: .*got 80.5/],
    ['service empty', withConfig({ rateLimitService: { service: '', port: 80 } }), /rateLimitService.service: expected a non-empty string, got ""/],
    ['service not object', withConfig({ rateLimitService: 'svc' }), /rateLimitService: expected an object, got "svc"/],
    ['unknown service field', withConfig({ rateLimitService: { service: 's', port: 80, tls: true } }), /rateLimitService.tls: unknown field/],
    ['timeout', withConfig({ rateLimitService: { service: 's', port: 80, timeoutMs: -5 } }), /rateLimitService.timeoutMs: .*got -5/],
    ['failOpen type', withConfig({ failOpen: 'yes' }), /failOpen: expected true or false, got "yes"/],
    ['fallOpen type', withConfig({ fallOpen: 1 }), /fallOpen: expected true or false, got 1/],
    ['failOpen/fallOpen conflict', withConfig({ failOpen: true, fallOpen: false }), /fallOpen: conflicts with failOpen/],
    ['rejectStatus', withConfig({ rejectStatus: 200 }), /rejectStatus: expected an integer from 400 to 599, got 200/],
    ['onMissingKey', withConfig({ onMissingKey: 'ignore' }), /onMissingKey: expected "deny", "skip" or \{"default": "<literal>"\}, got "ignore"/],
    ['onMissingKey default type', withConfig({ onMissingKey: { default: 1 } }), /onMissingKey: .*got \{"default":1\}/],
    ['maxBufferBytes', withConfig({ maxBufferBytes: 10 }), /maxBufferBytes: expected an integer from 256 to 1048576, got 10/],
    ['maxKeyBytes', withConfig({ maxKeyBytes: 1e9 }), /maxKeyBytes: .*got 1000000000/],
    ['matches not array', withConfig({ matches: {} }), /matches: expected an array, got \{\}/],
    ['match entry', withConfig({ matches: ['x'] }), /matches\[0\]: expected an object/],
    ['match field', withConfig({ matches: [{ hots: { exact: 'a' } }] }), /matches\[0\].hots: unknown field/],
    ['host match kind', withConfig({ matches: [{ host: { contains: 'a' } }] }), /matches\[0\].host.contains: unknown field/],
    ['host match two kinds', withConfig({ matches: [{ host: { exact: 'a', prefix: 'b' } }] }), /matches\[0\].host: expected exactly one/],
    ['host match value', withConfig({ matches: [{ host: { exact: 5 } }] }), /matches\[0\].host.exact: expected a string, got 5/],
    [
      'regex unsupported',
      withConfig({ matches: [{ path: { regex: '^/v1/.*' } }] }),
      /matches\[0\].path.regex: regular expressions are not supported.*got "\^\/v1\/\.\*"/,
    ],
  ];
  test.each(invalid)('invalid: %s', (_name, config, expected) => {
    expect(configureError(config)).toMatch(expected);
  });

  test('odd bytes in a config value are shown escaped, never trap', () => {
    const err = configureError('{"rateLimitKeys":["{{x\\u0001\u00ff}}"],"rateLimitService":{"service":"s","port":80}}');
    expect(err).toMatch(/rateLimitKeys\[0\]: unknown template variable/);
    const bad = Buffer.concat([Buffer.from('{"rateLimitKeys":["'), Buffer.from([0xff, 0xfe]), Buffer.from('"]}')]);
    expect(configureError(bad)).toMatch(/not valid JSON: \{"rateLimitKeys":\["\\xFF\\xFE"\]\}/);
  });
});
