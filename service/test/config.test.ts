import { mkdtempSync, rmSync, writeFileSync, symlinkSync, renameSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRules, ConfigError } from '../src/config/rules';
import { settingsFromEnv } from '../src/config/env';
import { ConfigWatcher } from '../src/config/watcher';
import { RuleSet } from '../src/limiter/ruleset';
import { silentLogger } from '../src/log';

const ok = { rate_limit_key_regex: '^a', redis_expired_seconds: 60, fill_interval_second: 30, tokens_per_fill: 5, max_tokens: 10 };
const msg = (v: unknown) => {
  try {
    parseRules(JSON.stringify(v));
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('accepted');
};

describe('rule validation names the rule index, the field and the value', () => {
  test.each([
    ['regex that does not compile', { rate_limit_key_regex: '([a-' }, /rule 1: field "rate_limit_key_regex" = "\(\[a-": does not compile/],
    ['zero max_tokens', { max_tokens: 0 }, /rule 1: field "max_tokens" = 0: must be a positive integer/],
    ['negative tokens_per_fill', { tokens_per_fill: -3 }, /rule 1: field "tokens_per_fill" = -3: must be a positive integer/],
    ['fractional interval', { fill_interval_second: 1.5 }, /rule 1: field "fill_interval_second" = 1.5: must be a positive integer/],
    ['string number', { redis_expired_seconds: '60' }, /rule 1: field "redis_expired_seconds" = "60": must be a positive integer/],
    [
      'expiry shorter than the fill interval',
      { redis_expired_seconds: 10 },
      /rule 1: field "redis_expired_seconds" = 10: is shorter than fill_interval_second \(30\)/,
    ],
    ['unknown field', { max_token: 10 }, /rule 1: field "max_token" = 10: unknown field/],
    ['negative max_debt', { max_debt: -1 }, /rule 1: field "max_debt" = -1: must be a non-negative integer/],
    ['max_debt too large', { max_debt: 1e14 }, /rule 1: field "max_debt" = 100000000000000: must be at most 10000000000000/],
    [
      'look-behind (RE2 has none, nor has the reference)',
      { rate_limit_key_regex: '(?<=a)b' },
      /rule 1: field "rate_limit_key_regex" = "\(\?<=a\)b": does not compile/,
    ],
    ['bad charge', { charge: 'all_tokens' }, /rule 1: field "charge" = "all_tokens": must be one of total_tokens, prompt_tokens, completion_tokens/],
  ])('%s', (_n, patch, re) => {
    expect(msg([ok, { ...ok, ...patch }])).toMatch(re);
  });

  test('missing field, non-object rule, non-array, empty, not JSON', () => {
    const { max_tokens: _m, ...noMax } = ok;
    expect(msg([noMax])).toMatch(/rule 0: field "max_tokens" = undefined: is required/);
    expect(msg([ok, 'x'])).toMatch(/rule 1: expected an object, got "x"/);
    expect(msg({ a: 1 })).toMatch(/expected a JSON array/);
    expect(msg([])).toMatch(/empty/);
    expect(() => parseRules('[{')).toThrow(/not valid JSON/);
  });

  test('valid rules: defaults and charge', () => {
    const [a, b] = parseRules(JSON.stringify([ok, { ...ok, charge: 'completion_tokens' }]));
    expect(a).toMatchObject({ index: 0, charge: 'total_tokens', maxTokens: 10, tokensPerFill: 5, fillIntervalSeconds: 30, expiredSeconds: 60 });
    expect(b.charge).toBe('completion_tokens');
    expect(a.maxDebt).toBe(100); // 10 × max_tokens
    expect(parseRules(JSON.stringify([{ ...ok, max_debt: 0 }]))[0].maxDebt).toBe(0);
  });

  test('reference (Go RE2) syntax compiles and means what it means there', () => {
    const rules = parseRules(
      JSON.stringify([
        { ...ok, rate_limit_key_regex: '(?i)^vip-(?P<name>[[:alnum:]]+)\\z' },
        { ...ok, rate_limit_key_regex: '^\\Qa+b\\E' },
      ]),
    );
    expect(rules[0].regex.test('VIP-anna7')).toBe(true);
    expect(rules[0].regex.test('VIP-anna7\n')).toBe(false);
    expect(rules[1].regex.test('a+b-1')).toBe(true);
    expect(rules[1].regex.test('aab-1')).toBe(false);
  });
});

test('rule matching: first match, unanchored search, cached, no match → null', () => {
  const rs = new RuleSet(
    parseRules(
      JSON.stringify([
        { ...ok, rate_limit_key_regex: 'user' },
        { ...ok, rate_limit_key_regex: '.*' },
      ]),
    ),
    2,
  );
  expect(rs.match('a-user-b')?.index).toBe(0);
  expect(rs.match('other')?.index).toBe(1);
  expect(rs.match('a-user-b')?.index).toBe(0); // from the cache
  expect(rs.match('x')?.index).toBe(1); // cache full: cleared, still right
  const none = new RuleSet(parseRules(JSON.stringify([ok])));
  expect(none.match('zzz')).toBeNull();
});

describe('environment', () => {
  const R = JSON.stringify([ok]);
  test('defaults: port 8080, embedded store', () => {
    expect(settingsFromEnv({ RATE_LIMIT_CONFIG: R })).toMatchObject({ port: 8080, redis: undefined, configText: R });
  });
  test('reference REDIS_ADDRESS / PASSWORD / DB_INDEX, and REDIS_URL', () => {
    expect(settingsFromEnv({ RATE_LIMIT_CONFIG: R, REDIS_ADDRESS: 'redis:6379', REDIS_PASSWORD: 'pw', REDIS_DB_INDEX: '2' }).redis).toEqual({
      urls: ['redis://redis:6379'],
      cluster: false,
      password: 'pw',
      database: 2,
      commandTimeoutMs: 500,
    });
    expect(settingsFromEnv({ RATE_LIMIT_CONFIG: R, REDIS_URL: 'redis://h:1', PORT: '0' })).toMatchObject({ port: 0, redis: { urls: ['redis://h:1'] } });
  });
  test('errors', () => {
    expect(() => settingsFromEnv({})).toThrow(/RATE_LIMIT_CONFIG/);
    expect(() => settingsFromEnv({ RATE_LIMIT_CONFIG: R, PORT: 'x' })).toThrow(/PORT/);
    expect(() => settingsFromEnv({ RATE_LIMIT_CONFIG: R, RATE_LIMIT_CONFIG_FILE: '/x' })).toThrow(/only one/);
    expect(settingsFromEnv({ RATE_LIMIT_CONFIG: R }).maxUpdateTokens).toBe(1_000_000);
    expect(settingsFromEnv({ RATE_LIMIT_CONFIG: R, MAX_UPDATE_TOKENS: '5000' }).maxUpdateTokens).toBe(5000);
    for (const v of ['0', '-1', '1.5', 'lots', '1e16']) {
      expect(() => settingsFromEnv({ RATE_LIMIT_CONFIG: R, MAX_UPDATE_TOKENS: v })).toThrow(`MAX_UPDATE_TOKENS=${JSON.stringify(v)}: must be an integer`);
    }
  });
});

describe('config file reload', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'llmrl-cfg-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const waitUntil = async (f: () => boolean, ms = 3000) => {
    const end = Date.now() + ms;
    while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    return f();
  };

  test('ConfigMap-style symlink swap is picked up by the directory watch; a bad file keeps the old rules', async () => {
    // Kubernetes layout: file → ..data/file, ..data → ..<timestamp> directory, swapped atomically.
    const v1 = join(dir, '..v1');
    mkdirSync(v1);
    writeFileSync(join(v1, 'rules.json'), JSON.stringify([ok]));
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync(join('..data', 'rules.json'), join(dir, 'rules.json'));
    const file = join(dir, 'rules.json');
    const init = ConfigWatcher.readInitial(file);
    let current = init.rules;
    const results: boolean[] = [];
    const w = new ConfigWatcher(
      file,
      init.text,
      (r) => (current = r),
      silentLogger,
      (okk) => results.push(okk),
    );
    w.start(0); // no poll: the watch alone must see it
    try {
      const swap = (name: string, content: string) => {
        mkdirSync(join(dir, name));
        writeFileSync(join(dir, name, 'rules.json'), content);
        symlinkSync(name, join(dir, '..tmp'));
        renameSync(join(dir, '..tmp'), join(dir, '..data'));
      };
      swap('..v2', JSON.stringify([{ ...ok, max_tokens: 99 }]));
      expect(await waitUntil(() => current[0].maxTokens === 99)).toBe(true);
      swap('..v3', JSON.stringify([{ ...ok, max_tokens: -1 }]));
      expect(await waitUntil(() => results.includes(false))).toBe(true);
      expect(current[0].maxTokens).toBe(99);
    } finally {
      w.stop();
    }
  });

  test('poll fallback and forced reload (SIGHUP path)', async () => {
    const file = join(dir, 'rules.json');
    writeFileSync(file, JSON.stringify([ok]));
    let current = ConfigWatcher.readInitial(file).rules;
    const w = new ConfigWatcher(file, JSON.stringify([ok]), (r) => (current = r), silentLogger);
    try {
      writeFileSync(file, JSON.stringify([{ ...ok, max_tokens: 7 }]));
      expect(w.reload('SIGHUP', true)).toBe(true);
      expect(current[0].maxTokens).toBe(7);
      w.start(50);
      writeFileSync(file, JSON.stringify([{ ...ok, max_tokens: 8 }]));
      expect(await waitUntil(() => current[0].maxTokens === 8)).toBe(true);
      rmSync(file);
      expect(w.reload('SIGHUP', true)).toBe(false);
      expect(current[0].maxTokens).toBe(8);
    } finally {
      w.stop();
    }
  });
});
