/** USAGE_RECORDS: one JSON line per applied update, the documented fields. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startService, type RunningService } from '../src/start';
import { createUsageRecorder } from '../src/usage';
import { silentLogger } from '../src/log';
import { builtMain } from './support/build';
import { runMain, until } from './support/proc';

const RULES = [
  { rate_limit_key_regex: '^user-', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 1000 },
  { rate_limit_key_regex: '^team-', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 5000 },
];
let dir: string;
let file: string;
let svc: RunningService;
const records = () =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'llmrl-usage-'));
  file = join(dir, 'usage.jsonl');
  svc = await startService({ rules: JSON.stringify(RULES), usage: createUsageRecorder(file, silentLogger), adminPort: null });
});
afterEach(async () => {
  await svc.close();
  rmSync(dir, { recursive: true, force: true });
});

const update = (body: unknown) =>
  fetch(`${svc.url}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

test('a reserved request: every field of its record, the charge after the refund, and a retried report writes nothing', async () => {
  const check = await (await fetch(`${svc.url}/ratelimit?ratelimit_keys=${encodeURIComponent('["user-a","team-x","nobody"]')}&reserve=150`)).json();
  expect(check).toMatchObject({ allow: true, reserved: 150 });
  const body = {
    ratelimit_keys: ['user-a', 'team-x', 'nobody'],
    prompt_tokens: 40,
    completion_tokens: 65,
    total_tokens: 105,
    cache_read_tokens: 12,
    reasoning_tokens: 30,
    reserved_tokens: 150,
    reservation_id: check.reservation_id,
    request_id: 'req-1',
    model: 'qwen-plus',
    estimated: false,
  };
  const before = Date.now();
  expect((await update(body)).status).toBe(200);
  expect((await update(body)).status).toBe(200); // the plugin's retry: same request_id
  const recs = records();
  expect(recs).toHaveLength(1);
  const r = recs[0];
  expect(Object.keys(r)).toEqual([
    'record',
    'v',
    'time',
    'keys',
    'prompt_tokens',
    'completion_tokens',
    'total_tokens',
    'cache_read_tokens',
    'reasoning_tokens',
    'charge',
    'estimated',
    'reserved_tokens',
    'request_id',
    'reservation_id',
    'model',
  ]);
  expect(r).toEqual({
    record: 'usage',
    v: 1,
    time: r.time,
    keys: ['user-a', 'team-x', 'nobody'],
    prompt_tokens: 40,
    completion_tokens: 65,
    total_tokens: 105,
    cache_read_tokens: 12,
    reasoning_tokens: 30,
    // 105 used, 150 reserved: each ruled key got 45 back; the key without a rule is not charged.
    charge: { 'user-a': -45, 'team-x': -45 },
    estimated: false,
    reserved_tokens: 150,
    request_id: 'req-1',
    reservation_id: check.reservation_id,
    model: 'qwen-plus',
  });
  expect(r.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  expect(Date.parse(r.time)).toBeGreaterThanOrEqual(before - 1000);
  expect(Date.parse(r.time)).toBeLessThanOrEqual(Date.now());
  // The bucket agrees with the record: 1000 - 150 + 45.
  expect((await (await fetch(`${svc.url}/ratelimit?ratelimit_keys=%5B%22user-a%22%5D`)).json()).remaining).toBe(895);
});

test('an estimated report without ids: optional fields absent, full charge; no record for unruled keys or refused bodies', async () => {
  expect((await update({ ratelimit_keys: ['user-b'], prompt_tokens: 10, completion_tokens: 20, estimated: true, cache_write_tokens: 3 })).status).toBe(200);
  expect((await update({ ratelimit_keys: ['nobody'], total_tokens: 99 })).status).toBe(200);
  expect((await update({ ratelimit_keys: ['user-b'], total_tokens: -5, model: 'qwen' })).status).toBe(400);
  expect((await update({ ratelimit_keys: ['user-b'], total_tokens: 5, cache_read_tokens: 1.5 })).status).toBe(400);
  const recs = records();
  expect(recs).toHaveLength(1);
  expect(recs[0]).toEqual({
    record: 'usage',
    v: 1,
    time: recs[0].time,
    keys: ['user-b'],
    prompt_tokens: 10,
    completion_tokens: 20,
    total_tokens: 30,
    cache_write_tokens: 3,
    charge: { 'user-b': 30 },
    estimated: true,
  });
  // A model of exactly 128 bytes is kept (multi-byte characters counted in bytes); one more byte is left out.
  expect((await update({ ratelimit_keys: ['user-b'], total_tokens: 1, model: 'é'.repeat(64) })).status).toBe(200);
  expect((await update({ ratelimit_keys: ['user-b'], total_tokens: 1, model: 'é'.repeat(64) + 'x' })).status).toBe(200);
  expect(records()[1].model).toBe('é'.repeat(64));
  expect(records()[2].model).toBeUndefined();
  expect(records()[2].metadata_errors).toEqual(['model: 129 bytes, more than 128']);
});

test('a bad field that is not a count: the update is charged, the field left out, and the record says why', async () => {
  const body = { ratelimit_keys: ['user-c'], total_tokens: 5, model: '', request_id: 'r'.repeat(129), reservation_id: 7, reserved_tokens: 50, estimated: 'no' };
  expect((await update(body)).status).toBe(200);
  expect((await update(body)).status).toBe(200); // no usable request_id: each report is charged
  const recs = records();
  expect(recs).toHaveLength(2);
  expect(recs[0]).toEqual({
    record: 'usage',
    v: 1,
    time: recs[0].time,
    keys: ['user-c'],
    prompt_tokens: 0,
    completion_tokens: 0,
    total_tokens: 5,
    // No usable reservation_id: nothing refunded.
    charge: { 'user-c': 5 },
    estimated: false,
    reserved_tokens: 50,
    metadata_errors: [
      'estimated: must be a boolean, got "no"',
      'reservation_id: must be a non-empty string, got 7',
      'request_id: 129 bytes, more than 128',
      'model: must be a non-empty string, got ""',
    ],
  });
  expect((await (await fetch(`${svc.url}/ratelimit?ratelimit_keys=%5B%22user-c%22%5D`)).json()).remaining).toBe(990);
});

describe('the process', () => {
  let main: string;
  beforeAll(() => {
    main = builtMain();
  }, 60_000);

  test('USAGE_RECORDS=stdout: records between the log lines, told apart by "record":"usage"', async () => {
    const p = await runMain(main, { RATE_LIMIT_CONFIG: JSON.stringify(RULES), USAGE_RECORDS: 'stdout' });
    try {
      const r = await fetch(`http://127.0.0.1:${p.port}/update_ratelimit_record`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"ratelimit_keys":["user-c"],"total_tokens":7,"request_id":"r9","model":"gpt-x"}',
      });
      expect(r.status).toBe(200);
      expect(await until(() => p.lines().some((l) => l.record === 'usage'))).toBe(true);
      expect(p.lines().find((l) => l.record === 'usage')).toMatchObject({
        keys: ['user-c'],
        total_tokens: 7,
        charge: { 'user-c': 7 },
        request_id: 'r9',
        model: 'gpt-x',
        estimated: false,
      });
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  });

  test('a USAGE_RECORDS file that cannot be opened stops the start, naming the variable and the value', async () => {
    const e = await runMain(main, { RATE_LIMIT_CONFIG: JSON.stringify(RULES), USAGE_RECORDS: '/nonexistent-dir/usage.jsonl' }).then(
      (p) => {
        p.child.kill('SIGKILL');
        return null;
      },
      (x) => x,
    );
    expect(e.code).toBe(2);
    expect(e.stderr).toContain('USAGE_RECORDS="/nonexistent-dir/usage.jsonl": cannot open');
  });
});
