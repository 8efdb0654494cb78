/**
 * `npm run bench -w service`: check and update throughput and p50/p99 latency of the
 * service (a child process, as deployed) against a real Redis started here, with WORKERS=1
 * and WORKERS=N (BENCH_WORKERS, default the cores) in the same run, loaded by wrk (2 threads,
 * BENCH_CONNECTIONS connections, 1,000 keys; bench/service.lua), plus the redis-benchmark
 * EVALSHA ceiling of the same Lua script on the same Redis.
 * Writes service/bench-results.json (`service` is the WORKERS=1 run, `workers` both) and prints it.
 *
 * BENCH_TARGET=http://host:port measures an already-running service instead (ours or any
 * service speaking the protocol, e.g. the reference one): nothing is started, no
 * redis-benchmark ceiling, results printed only. BENCH_KEY_PREFIX (default "bench-user-")
 * names the keys, so they can match that service's rules; BENCH_TOKEN is sent as
 * `Authorization: Bearer <token>` (for a service with SERVICE_TOKENS).
 * bench/compare.ts (npm run bench:compare -w service) uses wrk() and phase() to compare two builds.
 *
 * BENCH_REFERENCE=/path/to/binary adds the reference Go service (built by hand: it is not part
 * of this repository, and nothing here builds it) side by side: BENCH_REFERENCE_ROUNDS rounds
 * (default 3) of reference, WORKERS=1, WORKERS=N on the same Redis; medians and ratios. The
 * reference always listens on :8080, which must be free.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { Agent, request } from 'node:http';
import { cpus } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BUCKET_LUA } from '../src/bucket/lua';
import { defaultWorkers } from '../src/config/cpus';
import { startRedis } from '../../test-support/redis';
import { processTree, treeCpuSeconds } from './cpu';

const DURATION_MS = Number(process.env.BENCH_SECONDS ?? 6) * 1000;
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const DURATION_DEFAULT = DURATION_MS;
const CONN_DEFAULT = CONNECTIONS;
const KEYS = 1000;
const TARGET = process.env.BENCH_TARGET || '';
const KEY_PREFIX = process.env.BENCH_KEY_PREFIX || 'bench-user-';
const TOKEN = process.env.BENCH_TOKEN || '';
const REFERENCE = process.env.BENCH_REFERENCE || '';
const REFERENCE_ROUNDS = Number(process.env.BENCH_REFERENCE_ROUNDS ?? 3);
/** The reference service's port: fixed in its code. */
const REFERENCE_PORT = 8080;

const RULES = [
  // Huge bucket so every check stays allowed and every update is a real write.
  { rate_limit_key_regex: '^bench-', redis_expired_seconds: 3600, fill_interval_second: 60, tokens_per_fill: 1000, max_tokens: 1_000_000_000 },
  { rate_limit_key_regex: '^other-', redis_expired_seconds: 60, fill_interval_second: 60, tokens_per_fill: 1, max_tokens: 1 },
];

export interface Phase {
  requests: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  /** CPU (user + system) of the service's processes per answered request, µs (make bench-service). */
  service_cpu_us?: number;
  /** CPU of redis-server per answered request, µs (make bench-service). */
  redis_cpu_us?: number;
}

function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return +sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))].toFixed(3);
}

export async function load(
  host: string,
  port: number,
  make: (i: number) => { method: string; path: string; body?: string },
  opts: { token?: string; durationMs?: number; connections?: number } = {},
): Promise<Phase> {
  const CONNECTIONS = opts.connections ?? CONN_DEFAULT;
  const DURATION_MS = opts.durationMs ?? DURATION_DEFAULT;
  const auth: Record<string, string> = opts.token ? { authorization: `Bearer ${opts.token}` } : {};
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const lat: number[] = [];
  let errors = 0;
  let i = 0;
  const end = performance.now() + DURATION_MS;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const r = make(i++);
      const t0 = performance.now();
      const req = request(
        {
          host,
          port,
          method: r.method,
          path: r.path,
          agent,
          headers: r.body ? { ...auth, 'content-type': 'application/json', 'content-length': Buffer.byteLength(r.body) } : auth,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) lat.push(performance.now() - t0);
            else errors++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(r.body);
    });
  const worker = async () => {
    while (performance.now() < end) await one();
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  const elapsed = (performance.now() - t0) / 1000;
  agent.destroy();
  const sorted = Float64Array.from(lat).sort();
  return {
    requests: lat.length,
    errors,
    rps: Math.round(lat.length / elapsed),
    p50_ms: pct(sorted, 50),
    p99_ms: pct(sorted, 99),
    max_ms: pct(sorted, 100),
  };
}

function redisBenchmark(port: number, sha: string, op: string, pipeline: number): Record<string, number> {
  const n = pipeline > 1 ? 300_000 : 100_000;
  const out = execFileSync(
    'redis-benchmark',
    [
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-c',
      '50',
      '-n',
      String(n),
      '-P',
      String(pipeline),
      '--csv',
      'EVALSHA',
      sha,
      '1',
      'llmrl:{bench-rb}',
      '1000000000',
      '1000',
      '60000000',
      '3600',
      op === 'charge' ? '1' : '0',
      op,
      '',
      '10000000000',
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  const lines = out.trim().split('\n');
  const header = lines[0].split(',').map((s) => s.replace(/"/g, ''));
  const values = lines[lines.length - 1].split(',').map((s) => s.replace(/"/g, ''));
  const rec: Record<string, number> = {};
  header.forEach((h, i) => {
    if (h !== 'test') rec[h] = Number(values[i]);
  });
  return rec;
}

export function requests(prefix = KEY_PREFIX) {
  const keys = Array.from({ length: KEYS }, (_, i) => `${prefix}${i}`);
  const checkPaths = keys.map((k) => `/ratelimit?ratelimit_keys=${encodeURIComponent(JSON.stringify([k]))}`);
  const updateBodies = keys.map((k) => JSON.stringify({ ratelimit_keys: [k], prompt_tokens: 10, completion_tokens: 95, total_tokens: 105 }));
  return {
    check: (i: number) => ({ method: 'GET', path: checkPaths[i % KEYS] }),
    update: (i: number) => ({ method: 'POST', path: '/update_ratelimit_record', body: updateBodies[i % KEYS] }),
  };
}

/** True when wrk is on the PATH. */
export const haveWrk = (): boolean => !spawnSync('wrk', ['-v'], { stdio: 'ignore' }).error;

/** BENCH_TARGET: load an already-running service (warm-up, check, update); print only. */
async function targetOnly(): Promise<void> {
  const u = new URL(TARGET);
  const host = u.hostname;
  const port = Number(u.port || 80);
  const r = requests();
  await load(host, port, r.check, { token: TOKEN });
  const check = await load(host, port, r.check, { token: TOKEN });
  const update = await load(host, port, r.update, { token: TOKEN });
  const result = {
    date: new Date().toISOString(),
    target: TARGET,
    setup: { connections: CONNECTIONS, seconds_per_phase: DURATION_MS / 1000, keys: KEYS, key_prefix: KEY_PREFIX },
    service: { check, update },
  };
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}

/** One wrk run of `mode` against the service on `port` (with `token`: sent as a bearer token). */
export function wrk(port: number, mode: 'check' | 'update', seconds: number, token?: string): Promise<Phase> {
  return new Promise((resolveRun, reject) => {
    const args = [
      '-t2',
      `-c${CONNECTIONS}`,
      `-d${seconds}s`,
      '--timeout',
      '5s',
      '-s',
      join(__dirname, 'service.lua'),
      `http://127.0.0.1:${port}/`,
      '--',
      `mode=${mode}`,
      `keys=${KEYS}`,
      `prefix=${KEY_PREFIX}`,
    ];
    if (token) args.push(`token=${token}`);
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.once('error', reject);
    child.once('exit', (code) => {
      const m = /^WRK_JSON (.*)$/m.exec(out);
      if (code !== 0 || !m) return reject(new Error(`wrk exited ${code}: ${out}`));
      const j = JSON.parse(m[1]);
      const ok = j.requests - j.errors;
      resolveRun({
        requests: ok,
        errors: j.errors,
        rps: Math.round(ok / (j.duration_us / 1e6)),
        p50_ms: +(j.p50_us / 1000).toFixed(3),
        p99_ms: +(j.p99_us / 1000).toFixed(3),
        max_ms: +(j.max_us / 1000).toFixed(3),
      });
    });
  });
}

/**
 * A wrk phase with the CPU that the service's processes and Redis spent on it, per answered
 * request: on a machine where wrk, Redis and the service share the cores, this is what tells the
 * service's own cost apart from the others'.
 */
export async function phase(port: number, mode: 'check' | 'update', seconds: number, pids: number[], redisPid: number, token?: string): Promise<Phase> {
  const s0 = treeCpuSeconds(pids);
  const r0 = treeCpuSeconds([redisPid]);
  const p = await wrk(port, mode, seconds, token);
  const perRequest = (cpu: number) => +((cpu * 1e6) / Math.max(1, p.requests + p.errors)).toFixed(1);
  return { ...p, service_cpu_us: perRequest(treeCpuSeconds(pids) - s0), redis_cpu_us: perRequest(treeCpuSeconds([redisPid]) - r0) };
}

/** The service with WORKERS=`workers` on `redisUrl`: warm-up, then checks and updates. */
async function measure(redisUrl: string, redisPid: number, workers: number): Promise<{ workers: number; check: Phase; update: Phase }> {
  const mainJs = join(__dirname, '..', 'dist', 'main.js');
  const child = spawn(process.execPath, [mainJs], {
    env: {
      ...process.env,
      PORT: '0',
      ADMIN_PORT: '0',
      WORKERS: String(workers),
      REDIS_URL: redisUrl,
      RATE_LIMIT_CONFIG: JSON.stringify(RULES),
      RATE_LIMIT_CONFIG_FILE: '',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const port = await new Promise<number>((resolvePort, reject) => {
      let buf = '';
      child.stdout!.on('data', (d) => {
        buf += d;
        const m = /"msg":"listening".*?"port":(\d+)/.exec(buf);
        if (m) resolvePort(Number(m[1]));
      });
      child.once('exit', (c) => reject(new Error(`service exited ${c}`)));
    });
    const seconds = DURATION_MS / 1000;
    await wrk(port, 'check', 2); // warm-up (JIT, connections, script cache)
    const pids = processTree(child.pid!);
    const check = await phase(port, 'check', seconds, pids, redisPid);
    const update = await phase(port, 'update', seconds, pids, redisPid);
    return { workers, check, update };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
  }
}

/** Resolves when something answers HTTP on `port`, rejects after `ms`. */
async function answering(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      await fetch(`http://127.0.0.1:${port}/ratelimit?ratelimit_keys=%5B%5D`);
      return;
    } catch {
      if (Date.now() > end) throw new Error(`nothing answers on port ${port} after ${ms} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The reference Go service (BENCH_REFERENCE) on the same Redis: warm-up, then checks and updates. */
async function measureReference(redisPort: number, redisPid: number): Promise<{ check: Phase; update: Phase }> {
  const busy = await fetch(`http://127.0.0.1:${REFERENCE_PORT}/`).then(
    () => true,
    () => false,
  );
  if (busy) throw new Error(`BENCH_REFERENCE: port ${REFERENCE_PORT} is in use; the reference service listens there and nowhere else`);
  const child = spawn(REFERENCE, [], {
    env: { PATH: process.env.PATH ?? '', REDIS_ADDRESS: `127.0.0.1:${redisPort}`, RATE_LIMIT_CONFIG: JSON.stringify(RULES) },
    stdio: 'ignore',
  });
  const exited = new Promise<never>((_, reject) => {
    child.once('error', (e) => reject(new Error(`BENCH_REFERENCE ${REFERENCE}: ${e.message}`)));
    child.once('exit', (c) => reject(new Error(`BENCH_REFERENCE ${REFERENCE} exited ${c}`)));
  });
  try {
    await Promise.race([answering(REFERENCE_PORT, 10_000), exited]);
    const seconds = DURATION_MS / 1000;
    await wrk(REFERENCE_PORT, 'check', 2);
    const check = await phase(REFERENCE_PORT, 'check', seconds, [child.pid!], redisPid);
    const update = await phase(REFERENCE_PORT, 'update', seconds, [child.pid!], redisPid);
    return { check, update };
  } finally {
    exited.catch(() => undefined);
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
  }
}

/** The phase whose requests/s is the median of `runs` (its latency and CPU figures come with it). */
function medianRun(runs: Phase[]): Phase {
  return [...runs].sort((a, b) => a.rps - b.rps)[Math.floor((runs.length - 1) / 2)];
}

/** BENCH_REFERENCE: rounds of reference, WORKERS=1, WORKERS=n on one Redis; medians and ratios. */
async function sideBySide(redis: { url: string; port: number; pid: number }, n: number) {
  const rounds: { reference: { check: Phase; update: Phase }; one: { check: Phase; update: Phase }; many: { check: Phase; update: Phase } }[] = [];
  for (let i = 0; i < REFERENCE_ROUNDS; i++) {
    const reference = await measureReference(redis.port, redis.pid);
    const one = await measure(redis.url, redis.pid, 1);
    const many = await measure(redis.url, redis.pid, n);
    rounds.push({ reference, one, many });
    process.stderr.write(
      `[bench] round ${i + 1}: reference ${reference.check.rps}/${reference.update.rps}, WORKERS=1 ${one.check.rps}/${one.update.rps}, WORKERS=${n} ${many.check.rps}/${many.update.rps} checks/updates per second\n`,
    );
  }
  const med = (pick: (r: (typeof rounds)[number]) => { check: Phase; update: Phase }) => ({
    check: medianRun(rounds.map((r) => pick(r).check)),
    update: medianRun(rounds.map((r) => pick(r).update)),
  });
  const reference = med((r) => r.reference);
  const one = { workers: 1, ...med((r) => r.one) };
  const many = { workers: n, ...med((r) => r.many) };
  const ratio = (x: { check: Phase; update: Phase }) => ({
    check: +(x.check.rps / reference.check.rps).toFixed(2),
    update: +(x.update.rps / reference.update.rps).toFixed(2),
    check_service_cpu: +(reference.check.service_cpu_us! / x.check.service_cpu_us!).toFixed(2),
    update_service_cpu: +(reference.update.service_cpu_us! / x.update.service_cpu_us!).toFixed(2),
  });
  return {
    one,
    many,
    reference: { binary: REFERENCE, rounds: REFERENCE_ROUNDS, median: reference, against: { [`workers_1`]: ratio(one), [`workers_${n}`]: ratio(many) } },
  };
}

async function main(): Promise<void> {
  if (TARGET) return targetOnly();
  if (!haveWrk()) throw new Error('wrk not found: apt-get install -y wrk (make bench-service does it)');
  const started = Date.now();
  const n = Math.max(2, Number(process.env.BENCH_WORKERS ?? defaultWorkers()));
  const redis = await startRedis();
  try {
    let one, many, reference;
    if (REFERENCE) ({ one, many, reference } = await sideBySide(redis, n));
    else {
      one = await measure(redis.url, redis.pid, 1);
      many = await measure(redis.url, redis.pid, n);
    }
    const sha = execFileSync('redis-cli', ['-p', String(redis.port), 'SCRIPT', 'LOAD', BUCKET_LUA], { encoding: 'utf8' }).trim();
    const ceiling = {
      check_unpipelined: redisBenchmark(redis.port, sha, 'check', 1),
      charge_unpipelined: redisBenchmark(redis.port, sha, 'charge', 1),
      charge_pipelined_16: redisBenchmark(redis.port, sha, 'charge', 16),
    };
    const result = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      setup: {
        service: REFERENCE
          ? `${REFERENCE_ROUNDS} rounds of the reference (BENCH_REFERENCE), node dist/main.js with WORKERS=1, then WORKERS=N (child processes) + redis-server, same machine; medians of the rounds; load from wrk -t2 (bench/service.lua)`
          : 'node dist/main.js (child process, WORKERS=1 then WORKERS=N) + redis-server, same machine; load from wrk -t2 (bench/service.lua)',
        connections: CONNECTIONS,
        seconds_per_phase: DURATION_MS / 1000,
        keys: KEYS,
      },
      service: { check: one.check, update: one.update },
      workers: [one, many],
      speedup: { workers: n, check: +(many.check.rps / one.check.rps).toFixed(2), update: +(many.update.rps / one.update.rps).toFixed(2) },
      redis_benchmark_evalsha: ceiling,
      ...(reference ? { reference } : {}),
      total_seconds: Math.round((Date.now() - started) / 100) / 10,
    };
    const out = join(__dirname, '..', 'bench-results.json');
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(`written to ${out}\n`);
  } finally {
    await redis.stop();
  }
}

// Run when started as the script (node e2e/bench/run.js bench/bench.ts), not when compare.ts imports it.
if (process.argv[1] && resolve(process.argv[1]) === __filename) {
  main().catch((err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
