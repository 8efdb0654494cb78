/** The process contract: `node service/dist/main.js`, env, logs, exit codes, signals. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startService } from '../src/start';
import { adminFetch } from './support/admin';
import type { BucketStore } from '../src/store/types';
import { builtMain } from './support/build';
import { runMain, type Proc } from './support/proc';
import { startRedis } from '../../test-support/redis';
import { holdPort } from '../../test-support/ports';

const RULE = { rate_limit_key_regex: '^regular-user', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 200 };
let main: string;
beforeAll(() => {
  main = builtMain();
}, 60_000);

const run = (env: Record<string, string>): Promise<Proc> => runMain(main, env);

test('invalid config: exit non-zero, message names rule index, field and value', async () => {
  const bad = JSON.stringify([RULE, { ...RULE, tokens_per_fill: 0 }]);
  const e = await run({ RATE_LIMIT_CONFIG: bad }).then(
    () => null,
    (x) => x,
  );
  expect(e.code).not.toBe(0);
  expect(e.stderr).toMatch(/rule 1: field "tokens_per_fill" = 0: must be a positive integer/);
  const e2 = await run({}).then(
    () => null,
    (x) => x,
  );
  expect(e2.code).not.toBe(0);
  expect(e2.stderr).toMatch(/RATE_LIMIT_CONFIG/);
});

test('embedded store, config file reloaded on SIGHUP, JSON logs, graceful SIGTERM → exit 0', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'llmrl-main-'));
  const file = join(dir, 'rules.json');
  writeFileSync(file, JSON.stringify([RULE]));
  const p = await run({ RATE_LIMIT_CONFIG_FILE: file, CONFIG_POLL_MS: '0' });
  try {
    const url = `http://127.0.0.1:${p.port}`;
    expect(p.lines()[0]).toMatchObject({ level: 'info', msg: 'listening', port: p.port, store: 'memory' });
    const agent = await fetch(`${url}/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D`);
    expect(await agent.json()).toMatchObject({ allow: true, limit: 200 });
    writeFileSync(file, JSON.stringify([{ ...RULE, max_tokens: 77 }]));
    p.child.kill('SIGHUP');
    const end = Date.now() + 3000;
    while (!p.lines().some((l) => l.msg === 'config reloaded' && l.reason === 'SIGHUP') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(await (await adminFetch({ adminUrl: `http://127.0.0.1:${p.adminPort}` }, '/buckets/regular-user')).json()).toMatchObject({
      rule: { max_tokens: 77 },
    });
    writeFileSync(file, '[{"rate_limit_key_regex": "("}]');
    p.child.kill('SIGHUP');
    while (!p.lines().some((l) => l.msg.startsWith('config reload rejected')) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(p.lines().find((l) => l.msg.startsWith('config reload rejected'))).toMatchObject({ level: 'error' });
    expect(await (await adminFetch({ adminUrl: `http://127.0.0.1:${p.adminPort}` }, '/buckets/regular-user')).json()).toMatchObject({
      rule: { max_tokens: 77 },
    });
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.lines().map((l) => l.msg)).toContain('stopped');
  } finally {
    p.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('reference Redis env (REDIS_ADDRESS): starts even while Redis is down, /readyz follows Redis', async () => {
  const held = await holdPort(); // refuses connections (Redis down) and nobody else can take it meanwhile
  const port = held.port;
  const p = await run({ RATE_LIMIT_CONFIG: JSON.stringify([RULE]), REDIS_ADDRESS: `127.0.0.1:${port}` });
  await held.release();
  const redis = await startRedis({ port }).catch(async (e) => {
    p.child.kill('SIGKILL');
    throw e;
  });
  try {
    const url = `http://127.0.0.1:${p.port}`;
    expect(p.lines().find((l) => l.msg === 'listening')).toMatchObject({ store: 'redis' });
    expect(p.lines().find((l) => l.msg === 'redis error')).toMatchObject({ level: 'warn' });
    const end = Date.now() + 10_000;
    while ((await fetch(`${url}/readyz`)).status !== 200 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    const r = await fetch(`${url}/update_ratelimit_record`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"ratelimit_keys":["regular-user"],"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}',
    });
    expect(r.status).toBe(200);
    expect(await (await fetch(`${url}/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D`)).json()).toMatchObject({ remaining: 95 });
    p.child.kill('SIGTERM');
    const code = await p.exited;
    if (code !== 0) throw new Error(`exit ${code} after SIGTERM; stderr: ${p.stderr()}; log: ${JSON.stringify(p.lines().slice(-8))}`);
  } finally {
    p.child.kill('SIGKILL');
    await redis.stop();
  }
}, 45_000); // more than its own bounded waits (start, Redis 10 s, ready 10 s): a slow machine fails an assertion, not the clock

test('graceful close: in-flight requests finish, new connections are refused, store closed last', async () => {
  const events: string[] = [];
  const slow: BucketStore = {
    kind: 'slow',
    run: async () => {
      await new Promise((r) => setTimeout(r, 300));
      events.push('run done');
      return { balance: 5, lastFillUs: 0, nowUs: 0 };
    },
    ping: async () => {},
    close: async () => {
      events.push('store closed');
    },
  };
  const svc = await startService({ rules: [...(await import('../src/config/rules')).parseRules(JSON.stringify([RULE]))], store: slow });
  const inflight = fetch(`${svc.url}/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D`);
  await new Promise((r) => setTimeout(r, 50));
  const closed = svc.close();
  await new Promise((r) => setTimeout(r, 20));
  await expect(fetch(`${svc.url}/healthz`)).rejects.toThrow();
  const r = await inflight;
  expect(r.status).toBe(200);
  expect(await r.json()).toMatchObject({ allow: true, remaining: 5 });
  await closed;
  expect(events).toEqual(['run done', 'store closed']);
});

test('tokens from SERVICE_TOKENS and SERVICE_TOKENS_FILE (a mounted Secret); bad tokens stop the start without printing them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'llmrl-tokens-'));
  const file = join(dir, 'token');
  writeFileSync(file, 'from-the-secret-file-0123456789\n');
  const p = await run({
    RATE_LIMIT_CONFIG: JSON.stringify([RULE]),
    SERVICE_TOKENS: 'from-env-aaaaaaaaaaaaaaaa,from-env-bbbbbbbbbbbbbbbb',
    SERVICE_TOKENS_FILE: file,
  });
  try {
    const url = `http://127.0.0.1:${p.port}/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D`;
    expect(p.lines().find((l) => l.msg === 'listening')).toMatchObject({ auth: '3 token(s)' });
    expect((await fetch(url)).status).toBe(401);
    for (const t of ['from-env-aaaaaaaaaaaaaaaa', 'from-env-bbbbbbbbbbbbbbbb', 'from-the-secret-file-0123456789']) {
      expect((await fetch(url, { headers: { authorization: `Bearer ${t}` } })).status).toBe(200);
    }
    expect(JSON.stringify(p.lines())).not.toMatch(/from-env|from-the-secret/);
  } finally {
    p.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  for (const [env, msg] of [
    [{ SERVICE_TOKENS: 'short-secret' }, /SERVICE_TOKENS: token 1 is shorter than 16 characters/],
    [{ ADMIN_TOKENS: 'ok-admin-token-0123456789,has a space in it here' }, /ADMIN_TOKENS: token 2 has characters outside printable ASCII/],
    [{ SERVICE_TOKENS_FILE: join(dir, 'missing') }, /SERVICE_TOKENS_FILE=".*missing": cannot read/],
    [{ ADMIN_PORT: '70000' }, /ADMIN_PORT=70000: must be <= 65535/],
    [{ RESERVATION_TTL_SECONDS: '0' }, /RESERVATION_TTL_SECONDS="0": must be an integer >= 1/],
    [{ MAX_UPDATE_TOKENS: 'a million' }, /MAX_UPDATE_TOKENS="a million": must be an integer >= 1/],
  ] as const) {
    const e = await run({ RATE_LIMIT_CONFIG: JSON.stringify([RULE]), ...env }).then(
      () => null,
      (x) => x,
    );
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(msg);
    expect(e.stderr).not.toMatch(/short-secret|has a space/);
  }
});

test('without SERVICE_TOKENS: open, as the reference, with a warning at start', async () => {
  const p = await run({ RATE_LIMIT_CONFIG: JSON.stringify([RULE]) });
  try {
    expect((await fetch(`http://127.0.0.1:${p.port}/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D`)).status).toBe(200);
    const end = Date.now() + 2000;
    while (!p.lines().some((l) => l.level === 'warn') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(p.lines().find((l) => l.level === 'warn')?.msg).toMatch(/SERVICE_TOKENS is not set/);
    expect(p.lines().find((l) => l.msg === 'listening')).toMatchObject({ auth: 'open', admin_port: p.adminPort });
  } finally {
    p.child.kill('SIGKILL');
  }
});

test('MEMORY_SNAPSHOT_FILE: balances, reservations and request ids survive a restart; a corrupt file stops the start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'llmrl-snap-'));
  const file = join(dir, 'snapshot.json');
  const env = { RATE_LIMIT_CONFIG: JSON.stringify([RULE]), MEMORY_SNAPSHOT_FILE: file };
  const post = (port: number, body: unknown) =>
    fetch(`http://127.0.0.1:${port}/update_ratelimit_record`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const remaining = async (port: number) =>
    (await (await fetch(`http://127.0.0.1:${port}/ratelimit?ratelimit_keys=%5B%22regular-user-x%22%5D`)).json()).remaining;
  try {
    const p1 = await run(env);
    expect((await post(p1.port, { ratelimit_keys: ['regular-user'], total_tokens: 1000, request_id: 'once' })).status).toBe(200);
    const res = await (await fetch(`http://127.0.0.1:${p1.port}/ratelimit?ratelimit_keys=%5B%22regular-user-x%22%5D&reserve=150`)).json();
    p1.child.kill('SIGTERM');
    expect(await p1.exited).toBe(0);
    const p2 = await run(env);
    try {
      expect(p2.lines().find((l) => l.msg === 'snapshot loaded')).toMatchObject({ records: 2 });
      const view = await (await adminFetch({ adminUrl: `http://127.0.0.1:${p2.adminPort}` }, '/buckets/regular-user')).json();
      expect(view.balance).toBe(-800);
      // The same request id is still known; the reservation can still be settled.
      await post(p2.port, { ratelimit_keys: ['regular-user'], total_tokens: 1000, request_id: 'once' });
      expect((await (await adminFetch({ adminUrl: `http://127.0.0.1:${p2.adminPort}` }, '/buckets/regular-user')).json()).balance).toBe(-800);
      expect(await remaining(p2.port)).toBe(50);
      await post(p2.port, { ratelimit_keys: ['regular-user-x'], total_tokens: 50, reserved_tokens: 150, reservation_id: res.reservation_id });
      expect(await remaining(p2.port)).toBe(150);
    } finally {
      p2.child.kill('SIGKILL');
    }
    writeFileSync(file, '{"not":"a snapshot"}');
    const e = await run(env).then(
      () => null,
      (x) => x,
    );
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(/MEMORY_SNAPSHOT_FILE=".*snapshot.json": not a snapshot of this service/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
