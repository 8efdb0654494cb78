/**
 * `npm run bench:compare -w service`: this build against an earlier build of the service,
 * measured in one run with interleaved rounds (A B, B A, A B, …) so that the shared machine's
 * drift hits both alike. Both run as child processes against one redis-server started here
 * (separate databases), with the same rules, keys and settings: one process each (WORKERS=1),
 * a free admin port, and a bearer token (SERVICE_TOKENS; a base older than tokens ignores it).
 * The load comes from wrk (bench/service.lua, as `npm run bench`), so that the load generator
 * takes little of the CPU the services share; CPU per request is read from /proc.
 *
 * BENCH_BASE=<checkout of the earlier commit, built>   (its service/dist/main.js is run)
 * BENCH_ROUNDS (default 5), BENCH_SECONDS (default 6), BENCH_CONNECTIONS (default 32),
 * BENCH_OPEN=1 (both without a token).
 * Prints per-round figures and the median ratio (this / base); writes service/bench-compare.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { haveWrk, phase, wrk, type Phase } from './bench';
import { startRedis } from '../../test-support/redis';

const BASE = process.env.BENCH_BASE || '';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const TOKEN = 'bench-service-token-0123456789abcdef';
const RULES = [
  { rate_limit_key_regex: '^bench-', redis_expired_seconds: 3600, fill_interval_second: 60, tokens_per_fill: 1000, max_tokens: 1_000_000_000 },
  { rate_limit_key_regex: '^other-', redis_expired_seconds: 60, fill_interval_second: 60, tokens_per_fill: 1, max_tokens: 1 },
];

function startService(mainJs: string, env: Record<string, string>): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [mainJs], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', RATE_LIMIT_CONFIG: JSON.stringify(RULES), LOG_LEVEL: 'error', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolvePort, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      const m = /"msg":"listening".*?"port":(\d+)/.exec(buf);
      if (m) resolvePort({ child, port: Number(m[1]) });
    });
    child.once('exit', (c) => reject(new Error(`${mainJs} exited ${c}`)));
  });
}

const stop = (c: ChildProcess) =>
  new Promise((r) => {
    if (c.exitCode !== null) return r(null);
    c.once('exit', r);
    c.kill('SIGTERM');
  });

/** A phase with the CPU per request of the service process and of redis-server (µs; robust to other load on the machine). */
type Measured = Phase & { service_cpu_us: number; redis_cpu_us: number };

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function main(): Promise<void> {
  const baseMain = resolve(BASE, 'service/dist/main.js');
  if (!BASE || !existsSync(baseMain)) throw new Error(`BENCH_BASE must be a built checkout (no ${baseMain}); see docs/performance.md`);
  if (!haveWrk()) throw new Error('wrk not found: apt-get install -y wrk (make bench-tools does it)');
  const redis = await startRedis();
  const procs: ChildProcess[] = [];
  try {
    const token = process.env.BENCH_OPEN === '1' ? undefined : TOKEN;
    // The same settings for both. One process each: WORKERS would make a cluster whose workers this bench does not account.
    const env = (db: number) => ({ REDIS_URL: `${redis.url}/${db}`, ADMIN_PORT: '0', WORKERS: '1', ...(token ? { SERVICE_TOKENS: token } : {}) });
    const base = await startService(baseMain, env(0));
    procs.push(base.child);
    const head = await startService(join(__dirname, '..', 'dist', 'main.js'), env(1));
    procs.push(head.child);
    const sides = { base: { port: base.port, pid: base.child.pid! }, head: { port: head.port, pid: head.child.pid! } };
    const seconds = Number(process.env.BENCH_SECONDS ?? 6);
    const measure = async (s: (typeof sides)['base'], mode: 'check' | 'update') => (await phase(s.port, mode, seconds, [s.pid], redis.pid, token)) as Measured;
    // Warm-up both (JIT, connections, script cache, key → rule cache).
    for (const s of Object.values(sides)) {
      await wrk(s.port, 'check', 3, token);
      await wrk(s.port, 'update', 3, token);
    }
    const rounds: { order: string[]; base: { check: Measured; update: Measured }; head: { check: Measured; update: Measured } }[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const order = i % 2 === 0 ? (['base', 'head'] as const) : (['head', 'base'] as const);
      const round: any = { order };
      for (const name of order) {
        const s = sides[name];
        const check = await measure(s, 'check');
        const update = await measure(s, 'update');
        round[name] = { check, update };
        process.stderr.write(
          `round ${i + 1} ${name}: check ${check.rps}/s ${check.service_cpu_us} µs CPU (errors ${check.errors}), ` +
            `update ${update.rps}/s ${update.service_cpu_us} µs CPU (errors ${update.errors})\n`,
        );
      }
      rounds.push(round);
    }
    const ratio = (op: 'check' | 'update') => rounds.map((x) => x.head[op].rps / x.base[op].rps);
    const result = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version },
      base: BASE,
      setup: {
        load: 'wrk -t2 (bench/service.lua)',
        connections: Number(process.env.BENCH_CONNECTIONS ?? 32),
        seconds_per_phase: seconds,
        workers: 1,
        token: !!token,
      },
      rounds,
      median_rps: {
        base: { check: median(rounds.map((x) => x.base.check.rps)), update: median(rounds.map((x) => x.base.update.rps)) },
        head: { check: median(rounds.map((x) => x.head.check.rps)), update: median(rounds.map((x) => x.head.update.rps)) },
      },
      per_round_ratio_head_over_base: { check: ratio('check').map((x) => +x.toFixed(3)), update: ratio('update').map((x) => +x.toFixed(3)) },
      median_ratio_head_over_base: { check: +median(ratio('check')).toFixed(3), update: +median(ratio('update')).toFixed(3) },
      median_service_cpu_us_per_request: {
        base: { check: median(rounds.map((x) => x.base.check.service_cpu_us)), update: median(rounds.map((x) => x.base.update.service_cpu_us)) },
        head: { check: median(rounds.map((x) => x.head.check.service_cpu_us)), update: median(rounds.map((x) => x.head.update.service_cpu_us)) },
      },
      median_redis_cpu_us_per_request: {
        base: { check: median(rounds.map((x) => x.base.check.redis_cpu_us)), update: median(rounds.map((x) => x.base.update.redis_cpu_us)) },
        head: { check: median(rounds.map((x) => x.head.check.redis_cpu_us)), update: median(rounds.map((x) => x.head.update.redis_cpu_us)) },
      },
    };
    const out = join(__dirname, '..', 'bench-compare.json');
    writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(JSON.stringify({ ...result, rounds: undefined }, null, 2) + '\n');
    process.stdout.write(`written to ${out}\n`);
  } finally {
    await Promise.all(procs.map(stop));
    await redis.stop();
  }
}

main().catch((err) => {
  process.stderr.write(`bench:compare failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
