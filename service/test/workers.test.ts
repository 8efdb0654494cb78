/** WORKERS: several service processes on one port (Node cluster), the admin port on the primary. */
import { request } from 'node:http';
import { builtMain } from './support/build';
import { runMain, until, type Proc } from './support/proc';
import { ADMIN_TOKEN } from './support/admin';
import { startRedis, type RedisHandle } from '../../test-support/redis';
import { holdPort } from '../../test-support/ports';
import { cgroupCpuQuota, defaultWorkers } from '../src/config/cpus';
import { settingsFromEnv } from '../src/config/env';

const RULE = { rate_limit_key_regex: '^regular-user', redis_expired_seconds: 300, fill_interval_second: 30, tokens_per_fill: 50, max_tokens: 200 };
const CHECK = '/ratelimit?ratelimit_keys=%5B%22regular-user%22%5D';
let main: string;
let redis: RedisHandle;
beforeAll(async () => {
  main = builtMain();
  redis = await startRedis();
}, 60_000);
afterAll(() => redis?.stop());

/** One request on a connection of its own (so the cluster spreads them over the workers). */
function once(port: number, path: string, method = 'GET', body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function workerPids(p: Proc): number[] {
  return [
    ...new Set(
      p
        .lines()
        .filter((l) => l.worker !== undefined)
        .map((l) => l.pid as number),
    ),
  ];
}

test('WORKERS=2 with Redis: both workers answer on one port, the admin port sums their metrics, SIGTERM stops them all', async () => {
  const p = await runMain(main, { RATE_LIMIT_CONFIG: JSON.stringify([RULE]), REDIS_URL: redis.url, WORKERS: '2', LOG_LEVEL: 'debug' });
  try {
    expect(p.lines().find((l) => l.msg === 'listening')).toMatchObject({ workers: 2, store: 'redis' });
    for (let i = 0; i < 20; i++) expect((await once(p.port, CHECK)).status).toBe(200);
    for (let i = 0; i < 4; i++) {
      const r = await once(p.port, '/update_ratelimit_record', 'POST', `{"ratelimit_keys":["regular-user"],"total_tokens":10}`);
      expect(r.status).toBe(200);
    }
    await until(() => p.lines().filter((l) => l.msg === 'request').length >= 24);
    const served = p.lines().filter((l) => l.msg === 'request');
    // Each worker logs its own requests (with its worker id): both served some.
    expect(new Set(served.map((l) => l.worker))).toEqual(new Set([1, 2]));
    expect(workerPids(p)).toHaveLength(2);
    const admin = `http://127.0.0.1:${p.adminPort}`;
    const metrics = await (await fetch(`${admin}/metrics`)).text();
    // Neither worker alone saw 20 checks and 40 tokens: the admin port adds them up.
    expect(metrics).toMatch(/^llmrl_decisions_total\{rule="\^regular-user",result="allowed"\} 20$/m);
    expect(metrics).toMatch(/^llmrl_tokens_charged_total\{rule="\^regular-user"\} 40$/m);
    expect((await fetch(`${admin}/readyz`)).status).toBe(200);
    const bucket = await (await fetch(`${admin}/buckets/regular-user`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json();
    expect(bucket).toMatchObject({ rule: { max_tokens: 200 } });
    expect(JSON.stringify(bucket)).toContain('160');
    const pids = workerPids(p);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.lines().map((l) => l.msg)).toContain('stopped');
    expect(pids.filter(alive)).toEqual([]);
  } finally {
    p.child.kill('SIGKILL');
  }
}, 30_000);

test('a worker that dies is logged and replaced; the port keeps answering', async () => {
  const p = await runMain(main, { RATE_LIMIT_CONFIG: JSON.stringify([RULE]), REDIS_URL: redis.url, WORKERS: '2', LOG_LEVEL: 'debug' });
  try {
    for (let i = 0; i < 6; i++) await once(p.port, CHECK);
    await until(() => workerPids(p).length === 2);
    const [victim] = workerPids(p);
    process.kill(victim, 'SIGKILL');
    expect(await until(() => p.lines().some((l) => l.msg === 'worker died; starting a new one'))).toBe(true);
    expect(p.lines().find((l) => l.msg.startsWith('worker died'))).toMatchObject({ level: 'error', pid: victim, signal: 'SIGKILL' });
    expect(await until(() => p.lines().some((l) => l.msg === 'worker listening'), 10_000)).toBe(true);
    for (let i = 0; i < 10; i++) expect((await once(p.port, CHECK)).status).toBe(200);
    // The new worker serves too.
    await until(() => workerPids(p).filter((x) => x !== victim).length === 2);
    expect(workerPids(p).filter((x) => x !== victim)).toHaveLength(2);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  } finally {
    p.child.kill('SIGKILL');
  }
}, 30_000);

test('embedded store: one process whatever WORKERS says, and a log line says why', async () => {
  const p = await runMain(main, { RATE_LIMIT_CONFIG: JSON.stringify([RULE]), WORKERS: '4' });
  try {
    expect(p.lines().find((l) => l.msg === 'listening')).toMatchObject({ workers: 1, store: 'memory' });
    await until(() => p.lines().some((l) => l.msg.startsWith('one process with the embedded store')));
    expect(p.lines().find((l) => l.msg.startsWith('one process with the embedded store'))).toMatchObject({ level: 'warn', workers: 1, requested: 4 });
    expect(p.lines().find((l) => l.msg.startsWith('one process'))!.msg).toMatch(/N times its limit/);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
    expect(p.lines().some((l) => l.worker !== undefined)).toBe(false);
  } finally {
    p.child.kill('SIGKILL');
  }
});

test.each(['0', 'two', '1.5', '-1', '100000'])('WORKERS=%s stops the start naming the variable and the value', async (v) => {
  const e = await runMain(main, { RATE_LIMIT_CONFIG: JSON.stringify([RULE]), REDIS_URL: redis.url, WORKERS: v }).then(
    (p) => {
      p.child.kill('SIGKILL');
      return null;
    },
    (x) => x,
  );
  expect(e).not.toBeNull();
  expect(e.code).toBe(2);
  expect(e.stderr).toContain(`WORKERS=${JSON.stringify(v)}`);
});

test('default WORKERS: the cores the process may use, bounded by the cgroup CPU quota', () => {
  expect(defaultWorkers(4, undefined)).toBe(4);
  expect(defaultWorkers(4, 1.5)).toBe(2);
  expect(defaultWorkers(2, 8)).toBe(2);
  expect(defaultWorkers(8, 0.25)).toBe(1);
  const files = (m: Record<string, string>) => (path: string) => {
    if (!(path in m)) throw new Error('ENOENT');
    return m[path];
  };
  expect(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' }))).toBeUndefined();
  expect(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu.max': '150000 100000\n' }))).toBe(1.5);
  expect(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '300000', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }))).toBe(3);
  expect(cgroupCpuQuota(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000' }))).toBeUndefined();
  const env = { RATE_LIMIT_CONFIG: '[]' };
  expect(settingsFromEnv(env, () => 3)).toMatchObject({ workers: 3, workersSet: false });
  expect(settingsFromEnv({ ...env, WORKERS: '5' }, () => 3)).toMatchObject({ workers: 5, workersSet: true });
});

test('/readyz answers 200 only once every worker reaches Redis (Redis started after the service, as in Kubernetes)', async () => {
  // Redis is down for the first seconds: each process's client backs off up to 2 s, so after
  // Redis starts they reconnect at different moments. A probe answered by one worker must
  // speak for all of them, or the pod is marked ready while a worker still refuses checks.
  const held = await holdPort(); // Redis down: connections refused, and the port stays ours
  const port = held.port;
  const p = await runMain(main, { RATE_LIMIT_CONFIG: JSON.stringify([RULE]), REDIS_ADDRESS: `127.0.0.1:${port}`, WORKERS: '2' });
  let late: RedisHandle | undefined;
  try {
    expect((await once(p.port, '/readyz')).status).toBe(503);
    await new Promise((r) => setTimeout(r, 3000)); // every client at its longest back-off
    await held.release();
    late = await startRedis({ port });
    const end = Date.now() + 15_000;
    while ((await once(p.port, '/readyz')).status !== 200 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await once(p.port, CHECK)).status);
    expect(statuses).toEqual(Array(12).fill(200));
    expect((await once(p.adminPort, '/readyz')).status).toBe(200);
  } finally {
    p.child.kill('SIGKILL');
    await held.release();
    await late?.stop();
  }
}, 40_000);
