/**
 * Envoy benchmarks (issue 8): plain Envoy vs Envoy + plugin, through real Envoy 1.40, the real
 * service on a real Redis, and the mock LLM as upstream. Load from wrk (Debian), driven by
 * e2e/bench/load.lua. Prints the figures and writes them to docs/bench/envoy.json; render.ts turns
 * that (and the service and plugin bench files) into docs/BENCHMARKS.md.
 *
 *   node e2e/bench/run.js e2e/bench/envoy-bench.ts      (make bench-envoy)
 *
 * Phases, all on this machine (2 cores shared by everything, so every figure is a ratio to a
 * baseline measured in the same run, in interleaved rounds; Envoy pinned to the last core, the
 * rest to the others, unless BENCH_PIN=0):
 *   1. throughput: baseline (plain Envoy), baseline2 (a second plain Envoy: the noise floor), noop
 *      (Envoy + a Wasm filter that does nothing: Envoy's own Wasm cost), unmatched (plugin, Host not
 *      matched), scoped (plugin disabled by Envoy for other hosts), matched (plugin, check + report
 *      per request), ROUNDS rounds of SECONDS each, order rotated per round;
 *   2. fixed rate: baseline, matched, and checks straight to the service at RATE requests/s,
 *      FIXED_ROUNDS rounds of FIXED_SECONDS, order rotated per round;
 *   3. side by side: baseline, baseline2, noop, readhost (noop that reads :authority) and unmatched
 *      loaded at the same time at SIDE_RATE each: Envoy CPU per request, to a microsecond or two;
 *   4. memory: a fresh Envoy + plugin, VmRSS and admin /memory after 1,000 and 100,000 matched
 *      requests (each with its own key).
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { createMockLlm, MockLlm } from '../src/mock-llm';
import { Envoy, startEnvoy } from '../src/harness/envoy';
import { request } from '../src/harness/http';
import { createHash } from 'crypto';
import { PLUGIN_CONFIG_FILE, PLUGIN_WASM, REPO, envoyBin, readJson, requireBuilt } from '../src/harness/paths';
import { Service, startService } from '../src/harness/service';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';
import { startRedis, RedisHandle } from '../../service/test/support/redis-server';

const env = (name: string, dflt: number) => (process.env[name] ? Number(process.env[name]) : dflt);
const SECONDS = env('BENCH_SECONDS', 1);
const ROUNDS = env('BENCH_ROUNDS', 12);
const FIXED_SECONDS = env('BENCH_FIXED_SECONDS', 4);
const FIXED_ROUNDS = env('BENCH_FIXED_ROUNDS', 3);
// Side by side: the pass-through Envoys loaded at the same time, each at SIDE_RATE requests/s.
const SIDE_SECONDS = env('BENCH_SIDE_SECONDS', 5);
const SIDE_ROUNDS = env('BENCH_SIDE_ROUNDS', 3);
const SIDE_RATE = env('BENCH_SIDE_RATE', 600);
const CONNECTIONS = env('BENCH_CONNECTIONS', 16);
const RATE = env('BENCH_RATE', 500);
const WARMUP_SECONDS = env('BENCH_WARMUP_SECONDS', 2);
const MEMORY_FIRST = env('BENCH_MEMORY_FIRST', 1_000);
const MEMORY_TOTAL = env('BENCH_MEMORY_TOTAL', 100_000);
const ENVOY_CONCURRENCY = env('BENCH_ENVOY_CONCURRENCY', 1);
const KEYS = 1000;
// Envoy, the system under test, gets a core of its own (the last); wrk, the mock LLM (this process),
// the service and Redis share the others. Without it, which process the scheduler puts beside
// Envoy's worker changes from run to run, and so does Envoy's share of a core. BENCH_PIN=0: no pinning.
const CORES = os.cpus().length;
const PIN = CORES >= 2 && env('BENCH_PIN', 1) !== 0;
const ENVOY_CPUS = String(CORES - 1);
const OTHER_CPUS = CORES > 2 ? `0-${CORES - 2}` : '0';
const OUT = process.env.BENCH_OUT ?? path.join(REPO, 'docs/bench/envoy.json');
const LUA = path.join(__dirname, 'load.lua');
// A private copy of plugin.wasm: a rebuild during the run must not change what is measured.
let WASM = PLUGIN_WASM;

const MATCHED_HOST = 'dashscope.aliyuncs.com'; // the host e2e/config/plugin-config.json matches
const UNMATCHED_HOST = 'api.unmatched.example';
// A bucket that never runs out: every matched request is allowed, so each is a check + a report.
const RULES = [{ rate_limit_key_regex: '^bench-', redis_expired_seconds: 3600, fill_interval_second: 60, tokens_per_fill: 1000, max_tokens: 1_000_000_000 }];
const RLS_CLUSTER = `outbound|${RLS_PORT}||${RLS_SERVICE}`;
// The 'bodykey' configuration's template: the user and the body's model (load.lua sends "model").
const BODY_KEY = '{{request.headers.user-type}}-{{request.body.model}}';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;
/** The q-quantile (0..1) by linear interpolation. */
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo);
};
const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------- CPU accounting (where the time goes) ----------

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** CPU seconds (user + system, all threads) a process has used so far. */
function cpuOf(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 (utime, stime)
}

/** Machine-wide busy and total CPU seconds, from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = f[3] + f[4];
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}

/** Binds every thread of a running process to the given CPUs (taskset, util-linux). */
function pin(pid: number, cpus: string): void {
  if (PIN) execFileSync('taskset', ['-a', '-c', '-p', cpus, String(pid)], { stdio: 'ignore' });
}

/** CPU nanoseconds all threads of a process have run so far (schedstat: exact, not in clock ticks). */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended between readdir and read
    }
  }
  return ns;
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

// ---------- wrk ----------

interface WrkJson {
  duration_us: number;
  requests: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latency_us: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
}

interface WrkRun {
  requests: number;
  seconds: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  errors: number;
  /** CPU seconds the wrk process used (from bash `times`). */
  wrk_cpu_s: number;
}

const runningWrk = new Set<number>(); // process groups of running wrk processes, to end them on Ctrl-C

/**
 * One wrk run. `stopWhen` is polled every 200 ms; when it holds, wrk gets SIGINT, which makes it
 * stop and report early (its Lua thread:stop() alone ends the load but wrk still waits for -d).
 */
function runWrk(port: number, o: { host: string; mode?: 'chat' | 'check'; keys?: number; rate?: number; stop?: number; seconds: number; connections?: number; stopWhen?: () => Promise<boolean> }): Promise<WrkRun> {
  const args = [
    '-t1', `-c${o.connections ?? CONNECTIONS}`, `-d${o.seconds}s`, '--timeout', '10s', '-s', LUA, `http://127.0.0.1:${port}/`,
    '--', `mode=${o.mode ?? 'chat'}`, `host=${o.host}`, `keys=${o.keys ?? KEYS}`, `rate=${o.rate ?? 0}`, `stop=${o.stop ?? 0}`,
  ];
  // bash's `times` reports the CPU its child (wrk) used, which /proc no longer shows after exit.
  const bash = ['bash', '-c', 'wrk "$@"; rc=$?; times >&2; exit $rc', 'bash', ...args];
  const child = PIN
    ? spawn('taskset', ['-c', OTHER_CPUS, ...bash], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    : spawn(bash[0], bash.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  runningWrk.add(child.pid!);
  let poller: NodeJS.Timeout | undefined;
  if (o.stopWhen) {
    const stopWhen = o.stopWhen;
    let busy = false;
    poller = setInterval(() => {
      if (busy) return;
      busy = true;
      stopWhen()
        .then((yes) => {
          if (yes && child.exitCode === null) {
            clearInterval(poller);
            process.kill(-child.pid!, 'SIGINT');
          }
        })
        .catch(() => undefined)
        .finally(() => (busy = false));
    }, 200);
  }
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearInterval(poller);
      runningWrk.delete(child.pid!);
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || !line) return reject(new Error(`wrk failed (${code}):\n${out}\n${err}`));
      const j = JSON.parse(line.slice('WRK_JSON '.length)) as WrkJson;
      const t = err.trim().split('\n').pop()!.match(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/);
      const wrkCpu = t ? Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4]) : NaN;
      const seconds = j.duration_us / 1e6;
      const e = j.errors;
      resolve({
        requests: j.requests,
        seconds: r3(seconds),
        rps: Math.round(j.requests / seconds),
        p50_ms: j.latency_us.p50 / 1000,
        p90_ms: j.latency_us.p90 / 1000,
        p99_ms: j.latency_us.p99 / 1000,
        max_ms: j.latency_us.max / 1000,
        errors: e.connect + e.read + e.write + e.status + e.timeout,
        wrk_cpu_s: wrkCpu,
      });
    });
  });
}

// ---------- the stack ----------

interface Ctx {
  redis: RedisHandle;
  mock: MockLlm;
  service: Service;
  base: Envoy;
  base2: Envoy;
  noop: Envoy;
  plugin: Envoy;
  /** The plugin scoped by Envoy to MATCHED_HOST (pluginOnlyForHosts): other hosts never enter the VM. */
  scoped: Envoy;
  /** The plugin with a key read from the request body (the check waits for the body). */
  bodykey: Envoy;
}

type Config = 'baseline' | 'baseline2' | 'noop' | 'readhost' | 'unmatched' | 'scoped' | 'matched' | 'bodykey' | 'service';

/** The Host header a configuration's requests carry: the plugin's own host, except where the point is not to match. */
const hostOf = (c: Config) => (c === 'unmatched' || c === 'scoped' ? UNMATCHED_HOST : MATCHED_HOST);

/** The long-lived Envoy a configuration of the throughput and fixed-rate runs uses. */
function target(ctx: Ctx, c: Config): { envoy: Envoy; host: string } {
  const envoys: Partial<Record<Config, Envoy>> = {
    baseline: ctx.base, // the same request bytes as matched
    service: ctx.base, // not through Envoy: see measure()
    baseline2: ctx.base2, // a second plain Envoy: the noise floor
    noop: ctx.noop,
    unmatched: ctx.plugin,
    matched: ctx.plugin,
    scoped: ctx.scoped,
    bodykey: ctx.bodykey,
  };
  const envoy = envoys[c];
  if (!envoy) throw new Error(`${c} runs only side by side, on Envoys of its own`);
  return { envoy, host: hostOf(c) };
}

async function counters(envoy: Envoy): Promise<{ upstream: number; rls: number }> {
  const s = await envoy.stats('upstream_rq_completed');
  return { upstream: s['cluster.llm_upstream.upstream_rq_completed'] ?? 0, rls: s[`cluster.${RLS_CLUSTER}.upstream_rq_completed`] ?? 0 };
}

interface Measured extends WrkRun {
  config: Config;
  round: number;
  /** Calls from the plugin to the rate-limit service per request (2 = check + report). */
  rls_calls_per_request: number;
  /** CPU microseconds per request, per process. "mock" is this Node process (the mock LLM runs in it). */
  cpu_us_per_request: Record<string, number>;
  /** Share of the machine's CPU that was busy (anything, including other users of the machine). */
  machine_busy: number;
  /** The part of machine_busy that none of the bench's processes used: other work on the machine. */
  others_busy: number;
}

async function measure(ctx: Ctx, config: Config, round: number, o: { seconds: number; rate?: number }): Promise<Measured> {
  const { envoy, host } = target(ctx, config);
  const pids: Record<string, number> = { envoy: envoy.proc.pid, service: ctx.service.proc.pid, redis: ctx.redis.pid };
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuOf(p)]));
  const self0 = process.cpuUsage();
  const m0 = machineCpu();
  const c0 = await counters(envoy);
  ctx.mock.requests.length = 0; // the mock keeps every request: don't let it grow across runs
  const w =
    config === 'service'
      ? await runWrk(ctx.service.port, { host, mode: 'check', seconds: o.seconds, rate: o.rate })
      : await runWrk(envoy.port, { host, seconds: o.seconds, rate: o.rate });
  if (config === 'matched' || config === 'bodykey') await sleep(300); // reports are sent after the response: let the last ones finish
  const c1 = await counters(envoy);
  const m1 = machineCpu();
  const self1 = process.cpuUsage(self0);
  const cpu: Record<string, number> = {};
  for (const [k, p] of Object.entries(pids)) cpu[k] = Math.round(((cpuOf(p) - before[k]) * 1e6) / w.requests);
  cpu.mock = Math.round((self1.user + self1.system) / w.requests);
  cpu.wrk = Math.round((w.wrk_cpu_s * 1e6) / w.requests);
  const upstream = c1.upstream - c0.upstream;
  const ours = (Object.values(cpu).reduce((a, b) => a + b, 0) * w.requests) / 1e6; // CPU seconds used by the bench's processes
  return {
    config,
    round,
    ...w,
    rls_calls_per_request: upstream ? r3((c1.rls - c0.rls) / upstream) : 0,
    cpu_us_per_request: cpu,
    machine_busy: r3((m1.busy - m0.busy) / (m1.total - m0.total)),
    others_busy: r3(Math.max(0, (m1.busy - m0.busy - ours) / (m1.total - m0.total))),
  };
}

const cpuTotal = (m: Measured) => Object.values(m.cpu_us_per_request).reduce((a, b) => a + b, 0);

function summarize(runs: Measured[], configs: Config[]) {
  const out: Record<string, unknown> = {};
  for (const c of configs) {
    const rs = runs.filter((r) => r.config === c);
    const cpu: Record<string, number> = {};
    for (const k of Object.keys(rs[0].cpu_us_per_request)) cpu[k] = median(rs.map((r) => r.cpu_us_per_request[k]));
    out[c] = {
      rps: median(rs.map((r) => r.rps)),
      p50_ms: median(rs.map((r) => r.p50_ms)),
      p99_ms: median(rs.map((r) => r.p99_ms)),
      errors: rs.reduce((a, r) => a + r.errors, 0),
      rls_calls_per_request: median(rs.map((r) => r.rls_calls_per_request)),
      cpu_us_per_request: cpu,
      machine_busy: median(rs.map((r) => r.machine_busy)),
      others_busy: median(rs.map((r) => r.others_busy)),
    };
  }
  // Paired per round (same moment on the machine), then the median over rounds.
  const rounds = [...new Set(runs.map((r) => r.round))];
  const perRound = (c: Config, f: (a: Measured, b: Measured) => number, base: Config = 'baseline') =>
    rounds.map((n) => f(runs.find((r) => r.config === c && r.round === n)!, runs.find((r) => r.config === base && r.round === n)!));
  const ratio = (c: Config, f: (a: Measured, b: Measured) => number, base: Config = 'baseline') => r3(median(perRound(c, f, base)));
  for (const c of configs.filter((x) => x !== 'baseline' && x !== 'service')) {
    const rpsRatios = perRound(c, (a, b) => a.rps / b.rps);
    Object.assign(out[c] as object, {
      rps_ratio: ratio(c, (a, b) => a.rps / b.rps),
      /** The middle half of the per-round ratios (25th to 75th percentile). */
      rps_ratio_iqr: [r3(quantile(rpsRatios, 0.25)), r3(quantile(rpsRatios, 0.75))],
      p50_added_ms: ratio(c, (a, b) => a.p50_ms - b.p50_ms),
      p99_added_ms: ratio(c, (a, b) => a.p99_ms - b.p99_ms),
      envoy_cpu_us_added: ratio(c, (a, b) => a.cpu_us_per_request.envoy - b.cpu_us_per_request.envoy),
      all_cpu_us_added: ratio(c, (a, b) => cpuTotal(a) - cpuTotal(b)),
    });
    // The round in which other work on the machine took the least CPU (max over the pair).
    const quiet = rounds
      .map((n) => {
        const a = runs.find((r) => r.config === c && r.round === n)!;
        const b = runs.find((r) => r.config === 'baseline' && r.round === n)!;
        return { round: n, others_busy: Math.max(a.others_busy, b.others_busy), rps_ratio: r3(a.rps / b.rps), p50_added_ms: r3(a.p50_ms - b.p50_ms), p99_added_ms: r3(a.p99_ms - b.p99_ms) };
      })
      .sort((x, y) => x.others_busy - y.others_busy)[0];
    Object.assign(out[c] as object, { quietest_round: quiet });
    if (configs.includes('noop') && (c === 'unmatched' || c === 'matched')) {
      Object.assign(out[c] as object, {
        vs_noop: {
          rps_ratio: ratio(c, (a, b) => a.rps / b.rps, 'noop'),
          envoy_cpu_us_added: ratio(c, (a, b) => a.cpu_us_per_request.envoy - b.cpu_us_per_request.envoy, 'noop'),
        },
      });
    }
  }
  return out;
}

/**
 * The pass-through configurations loaded at the same moment, each by its own wrk at the same fixed
 * rate: whatever else the machine does then, it does to all of them, so their Envoy CPU per request
 * can be compared to a microsecond or two (throughput runs, one after another, cannot).
 */
async function sideBySide(ctx: Pick<Ctx, 'mock'>, configs: Config[], start: (c: Config) => Promise<Envoy>) {
  // Fresh Envoys, started and warmed up alike: an Envoy's past traffic moves its CPU per request by
  // several µs (seen here with Envoys reused from the throughput runs), more than the steps measured.
  const envoys: Envoy[] = [];
  try {
    for (const c of configs) {
      const e = await start(c);
      envoys.push(e);
      pin(e.proc.pid, ENVOY_CPUS);
    }
    return await sideBySideRounds(ctx, configs.map((c, i) => ({ c, envoy: envoys[i], host: hostOf(c) })));
  } finally {
    for (const e of envoys) await e.stop();
  }
}

async function sideBySideRounds(ctx: Pick<Ctx, 'mock'>, targets: { c: Config; envoy: Envoy; host: string }[]) {
  const configs = targets.map((t) => t.c);
  const rounds: { round: number; config: Config; rps: number; errors: number; envoy_cpu_us_per_request: number }[] = [];
  await Promise.all(targets.map((t) => runWrk(t.envoy.port, { host: t.host, seconds: 2, rate: SIDE_RATE, connections: 8 }))); // warm-up
  for (let round = 1; round <= SIDE_ROUNDS; round++) {
    const before = targets.map((t) => cpuNs(t.envoy.proc.pid));
    const runs = await Promise.all(targets.map((t) => runWrk(t.envoy.port, { host: t.host, seconds: SIDE_SECONDS, rate: SIDE_RATE, connections: 8 })));
    targets.forEach((t, i) => {
      const us = (cpuNs(t.envoy.proc.pid) - before[i]) / 1000 / runs[i].requests;
      rounds.push({ round, config: t.c, rps: runs[i].rps, errors: runs[i].errors, envoy_cpu_us_per_request: Math.round(us * 100) / 100 });
    });
    ctx.mock.requests.length = 0;
    log(`side by side round ${round}: ` + rounds.filter((r) => r.round === round).map((r) => `${r.config} ${r.rps} req/s ${r.envoy_cpu_us_per_request} µs`).join(', '));
  }
  const of = (c: Config, n: number) => rounds.find((r) => r.config === c && r.round === n)!.envoy_cpu_us_per_request;
  const ns = [...new Set(rounds.map((r) => r.round))];
  const summary: Record<string, object> = {};
  configs.forEach((c, i) => {
    const xs = ns.map((n) => of(c, n));
    summary[c] = {
      rps: median(rounds.filter((r) => r.config === c).map((r) => r.rps)),
      errors: rounds.filter((r) => r.config === c).reduce((a, r) => a + r.errors, 0),
      envoy_cpu_us_per_request: r3(median(xs)),
      envoy_cpu_us_range: [r3(Math.min(...xs)), r3(Math.max(...xs))],
      /** Envoy CPU µs per request over each configuration listed before this one: paired per round (the same seconds), median over rounds. */
      added_us_over: Object.fromEntries(configs.slice(0, i).map((b) => [b, r3(median(ns.map((n) => of(c, n) - of(b, n))))])),
    };
  });
  return { summary, rounds };
}

async function memoryPhase(ctx: Pick<Ctx, 'mock'>, start: () => Promise<Envoy>) {
  log('memory: a fresh Envoy + plugin');
  const envoy = await start();
  pin(envoy.proc.pid, ENVOY_CPUS);
  try {
    const snapshot = async () => {
      await sleep(1500); // let the last reports complete and Envoy settle
      const c = await counters(envoy);
      const mem = JSON.parse((await request(envoy.adminPort, { path: '/memory' })).body) as Record<string, string>;
      return {
        requests: c.upstream,
        rls_calls: c.rls,
        vmrss_kib: rssKiB(envoy.proc.pid),
        allocated_bytes: Number(mem.allocated),
        heap_size_bytes: Number(mem.heap_size),
      };
    };
    const rssAtStart = rssKiB(envoy.proc.pid);
    // Every request its own key (100,000 distinct keys): growth per key would show too.
    ctx.mock.requests.length = 0;
    const reached = (n: number) => async () => (await counters(envoy)).upstream >= n;
    const w1 = await runWrk(envoy.port, { host: MATCHED_HOST, keys: MEMORY_TOTAL, stop: MEMORY_FIRST, seconds: 60, connections: 8, stopWhen: reached(MEMORY_FIRST) });
    const first = await snapshot();
    log(`memory: after ${first.requests} requests VmRSS ${first.vmrss_kib} KiB`);
    const samples: { requests: number; vmrss_kib: number }[] = [];
    const sampler = setInterval(() => {
      counters(envoy).then((c) => samples.push({ requests: c.upstream, vmrss_kib: rssKiB(envoy.proc.pid) }), () => undefined);
      ctx.mock.requests.length = 0;
    }, 2000);
    let w2: WrkRun;
    try {
      w2 = await runWrk(envoy.port, { host: MATCHED_HOST, keys: MEMORY_TOTAL, stop: MEMORY_TOTAL - first.requests, seconds: 180, connections: CONNECTIONS, stopWhen: reached(MEMORY_TOTAL) });
    } finally {
      clearInterval(sampler);
    }
    const last = await snapshot();
    log(`memory: after ${last.requests} requests VmRSS ${last.vmrss_kib} KiB`);
    return {
      vmrss_kib_at_start: rssAtStart,
      after_first: first,
      after_total: last,
      growth_ratio: r3(last.vmrss_kib / first.vmrss_kib),
      allocated_growth_ratio: r3(last.allocated_bytes / first.allocated_bytes),
      load: { first: w1, rest: w2 },
      samples,
    };
  } finally {
    await envoy.stop();
  }
}

function versions() {
  const run = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch (e) {
      return String((e as { stdout?: string }).stdout ?? e).trim();
    }
  };
  const envoyV = /version: (\S+)/.exec(run(envoyBin(), ['--version']))?.[1] ?? 'unknown';
  return {
    envoy: envoyV,
    node: process.version,
    redis: /v=(\S+)/.exec(run('redis-server', ['--version']))?.[1] ?? 'unknown',
    wrk: /wrk (\S+)/.exec(run('wrk', ['-v']))?.[1] ?? 'unknown',
    kernel: os.release(),
  };
}

function machine() {
  const cpus = os.cpus();
  return { cores: cpus.length, cpu_model: cpus[0]?.model ?? 'unknown', memory_gib: Math.round(os.totalmem() / 2 ** 30), load_average_at_start: os.loadavg().map(r3) };
}

async function main() {
  requireBuilt(PLUGIN_WASM, 'make plugin');
  if (spawnSync('wrk', ['-v'], { stdio: 'ignore' }).error) throw new Error('wrk not found: apt-get install -y wrk (make bench does it)');
  if (PIN && spawnSync('taskset', ['-V'], { stdio: 'ignore' }).error) throw new Error('taskset not found: apt-get install -y util-linux (or BENCH_PIN=0 to run unpinned)');
}

async function mainReal() {
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-bench-'));
  WASM = path.join(tmp, 'plugin.wasm');
  fs.copyFileSync(PLUGIN_WASM, WASM);
  const noopWasm = path.join(tmp, 'noop.wasm');
  log('building e2e/bench/noop-filter/index.ts and read-host.ts (Wasm filters that do nothing, or read one header)');
  execFileSync(path.join(REPO, 'node_modules/.bin/asc'), [path.join(__dirname, 'noop-filter/index.ts'), '-b', noopWasm, '--use', 'abort=', '-O3', '--runtime', 'full'], { stdio: 'inherit' });
  // Envoy calls only the callbacks a module exports: the no-op row is Envoy's Wasm floor for the
  // plugin only if both export the same ones.
  const wasmApi = (globalThis as unknown as { WebAssembly: { Module: { new (b: Buffer): object; exports(m: object): { name: string }[] } } }).WebAssembly;
  const callbacks = (f: string) => wasmApi.Module.exports(new wasmApi.Module(fs.readFileSync(f))).map((x) => x.name).filter((n) => n.startsWith('proxy_')).sort().join(' ');
  const readHostWasm = path.join(tmp, 'read-host.wasm');
  execFileSync(path.join(REPO, 'node_modules/.bin/asc'), [path.join(__dirname, 'noop-filter/read-host.ts'), '-b', readHostWasm, '--use', 'abort=', '-O3', '--runtime', 'full'], { stdio: 'inherit' });
  for (const [f, src] of [[noopWasm, 'index.ts'], [readHostWasm, 'read-host.ts']]) {
    if (callbacks(f) !== callbacks(WASM)) throw new Error(`e2e/bench/noop-filter/${src} exports ${callbacks(f)}\nbut the plugin exports ${callbacks(WASM)}: make them export the same proxy_* functions`);
  }
  const wasmBytes = fs.readFileSync(WASM);
  const info = {
    machine: machine(),
    versions: versions(),
    plugin: { bytes: wasmBytes.length, sha256: createHash('sha256').update(wasmBytes).digest('hex'), built: fs.statSync(PLUGIN_WASM).mtime.toISOString() },
  };
  log(`${info.machine.cores} cores, Envoy ${info.versions.envoy}, Node ${info.versions.node}, Redis ${info.versions.redis}, wrk ${info.versions.wrk}`);
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const pg of runningWrk) process.kill(-pg, 'SIGKILL');
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    pin(process.pid, OTHER_CPUS); // the mock LLM runs in this process
    const redis = await startRedis();
    stops.push(() => redis.stop());
    pin(redis.pid, OTHER_CPUS);
    const mock = await createMockLlm();
    stops.push(() => mock.close());
    const service = await startService({ rules: RULES, redisUrl: redis.url });
    stops.push(() => service.stop());
    pin(service.proc.pid, OTHER_CPUS);
    const common = { llm: { host: '127.0.0.1', port: mock.port }, rateLimitService: { host: '127.0.0.1', port: service.port }, concurrency: ENVOY_CONCURRENCY };
    const withPlugin = { ...common, wasmPath: WASM, pluginConfig: readJson(PLUGIN_CONFIG_FILE) };
    /** The Envoy each configuration runs on. */
    const envoyFor = (c: Config) => {
      if (c === 'noop') return startEnvoy({ ...common, wasmPath: noopWasm, pluginConfig: {} });
      if (c === 'readhost') return startEnvoy({ ...common, wasmPath: readHostWasm, pluginConfig: {} });
      if (c === 'unmatched' || c === 'matched') return startEnvoy(withPlugin);
      if (c === 'scoped') return startEnvoy({ ...withPlugin, pluginOnlyForHosts: [MATCHED_HOST] });
      if (c === 'bodykey') return startEnvoy({ ...withPlugin, pluginConfig: { ...readJson<object>(PLUGIN_CONFIG_FILE), rateLimitKeys: [BODY_KEY] } });
      return startEnvoy(common);
    };
    const base = await envoyFor('baseline');
    stops.push(() => base.stop());
    const base2 = await envoyFor('baseline2');
    stops.push(() => base2.stop());
    const noop = await envoyFor('noop');
    stops.push(() => noop.stop());
    const plugin = await envoyFor('unmatched');
    stops.push(() => plugin.stop());
    const scoped = await envoyFor('scoped');
    stops.push(() => scoped.stop());
    const bodykey = await envoyFor('bodykey');
    stops.push(() => bodykey.stop());
    for (const e of [base, base2, noop, plugin, scoped, bodykey]) pin(e.proc.pid, ENVOY_CPUS);
    const ctx: Ctx = { redis, mock, service, base, base2, noop, plugin, scoped, bodykey };

    // The scoped Envoy still limits its own host: one matched request is one check and one report.
    const s0 = await counters(scoped);
    const one = await request(scoped.port, { method: 'POST', path: '/', headers: { host: MATCHED_HOST, 'content-type': 'application/json', 'user-type': 'bench-scoped' }, body: '{"messages":[]}' });
    const deadline = Date.now() + 5000;
    while ((await counters(scoped)).rls - s0.rls < 2 && Date.now() < deadline) await sleep(50);
    const calls = (await counters(scoped)).rls - s0.rls;
    if (one.status !== 200 || calls !== 2) throw new Error(`scoped Envoy: a matched request got ${one.status} and made ${calls} service calls (expected 200 and 2)`);

    // Sanity: the plugin really checks and reports matched requests, and leaves the others alone.
    const configs: Config[] = ['baseline', 'baseline2', 'noop', 'unmatched', 'scoped', 'matched'];
    for (const c of [...configs, 'bodykey' as Config]) {
      const w = await measure(ctx, c, 0, { seconds: WARMUP_SECONDS });
      log(`warm-up ${c}: ${w.rps} req/s, ${w.errors} errors, ${w.rls_calls_per_request} service calls per request`);
      const expected = c === 'matched' || c === 'bodykey' ? 2 : 0;
      if (w.errors || Math.abs(w.rls_calls_per_request - expected) > 0.05) {
        throw new Error(`warm-up ${c}: expected no errors and ${expected} service calls per request, got ${JSON.stringify(w)}`);
      }
    }

    const throughput: Measured[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const order = configs.map((_, i) => configs[(i + round - 1) % configs.length]);
      for (const c of order) {
        const m = await measure(ctx, c, round, { seconds: SECONDS });
        throughput.push(m);
        log(`throughput round ${round} ${c}: ${m.rps} req/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms, ${m.errors} errors, machine busy ${Math.round(m.machine_busy * 100)}%`);
      }
    }

    const fixed: Measured[] = [];
    // 'service': the same rate of checks sent straight to the service (no Envoy): its share of the added latency.
    const fixedConfigs: Config[] = ['baseline', 'matched', 'bodykey', 'service'];
    for (let round = 1; round <= FIXED_ROUNDS; round++) {
      const order = fixedConfigs.map((_, i) => fixedConfigs[(i + round - 1) % fixedConfigs.length]);
      for (const c of order) {
        const m = await measure(ctx, c, round, { seconds: FIXED_SECONDS, rate: RATE });
        fixed.push(m);
        log(`${RATE} req/s round ${round} ${c}: ${m.rps} req/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms, ${m.errors} errors`);
      }
    }

    // The side-by-side and memory runs get the machine to themselves as far as we are concerned.
    await bodykey.stop();
    await scoped.stop();
    await plugin.stop();
    await noop.stop();
    await base2.stop();
    await base.stop();

    const side = await sideBySide(ctx, ['baseline', 'baseline2', 'noop', 'readhost', 'unmatched'], envoyFor);

    const memory = await memoryPhase(ctx, () => envoyFor('matched'));

    const tp = summarize(throughput, configs) as Record<Config, Record<string, number>>;
    const fr = summarize(fixed, fixedConfigs) as Record<Config, Record<string, number>>;
    const targets = [
      { name: 'Unmatched traffic through the plugin: requests/s vs baseline', target: '>= 0.97', value: tp.unmatched.rps_ratio, met: tp.unmatched.rps_ratio >= 0.97 },
      { name: `Matched at ${RATE} req/s: added p50 latency (ms)`, target: '<= 1', value: fr.matched.p50_added_ms, met: fr.matched.p50_added_ms <= 1 },
      { name: `Matched at ${RATE} req/s: added p99 latency (ms)`, target: '<= 3', value: fr.matched.p99_added_ms, met: fr.matched.p99_added_ms <= 3 },
      {
        name: `Envoy VmRSS after ${memory.after_total.requests} vs after ${memory.after_first.requests} matched requests`,
        target: '<= 1.10',
        value: memory.growth_ratio,
        met: memory.growth_ratio <= 1.1,
      },
      { name: `Matched, key read from the body, at ${RATE} req/s: added p50 latency (ms)`, target: '<= 1', value: fr.bodykey.p50_added_ms, met: fr.bodykey.p50_added_ms <= 1 },
      { name: `Matched, key read from the body, at ${RATE} req/s: added p99 latency (ms)`, target: '<= 3', value: fr.bodykey.p99_added_ms, met: fr.bodykey.p99_added_ms <= 3 },
    ];
    const result = {
      date: new Date().toISOString(),
      commit: execFileSync('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim(),
      work_tree_clean: execFileSync('git', ['-C', REPO, 'status', '--porcelain', '--', 'plugin', 'service'], { encoding: 'utf8' }).trim() === '',
      ...info,
      settings: {
        seconds_per_run: SECONDS,
        seconds_per_fixed_rate_run: FIXED_SECONDS,
        rounds: ROUNDS,
        fixed_rate_rounds: FIXED_ROUNDS,
        warmup_seconds: WARMUP_SECONDS,
        connections: CONNECTIONS,
        wrk_threads: 1,
        envoy_concurrency: ENVOY_CONCURRENCY,
        /** CPUs (taskset lists) Envoy and everything else ran on; null: not pinned. */
        pinning: PIN ? { envoy: ENVOY_CPUS, others: OTHER_CPUS } : null,
        /** Scheduling priority the bench and everything it started ran at (nice -n -10 make bench: ahead of other work). */
        niceness: os.getPriority(),
        fixed_rate: RATE,
        side_by_side: { seconds: SIDE_SECONDS, rounds: SIDE_ROUNDS, rate_each: SIDE_RATE, connections_each: 8 },
        keys: KEYS,
        memory_requests: [MEMORY_FIRST, MEMORY_TOTAL],
        request: `POST / (seed chat completion, ${MATCHED_HOST} for matched and baseline, ${UNMATCHED_HOST} for unmatched), user-type: bench-<n>`,
        rules: RULES,
      },
      throughput: { summary: tp, runs: throughput },
      fixed_rate: { summary: fr, runs: fixed },
      side_by_side: side,
      memory,
      targets,
      elapsed_s: Math.round((Date.now() - started) / 1000),
    };
    fs.mkdirSync(path.dirname(OUT), { recursive: true });
    fs.writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
    process.stdout.write(report(result));
    log(`written to ${path.relative(process.cwd(), OUT)} in ${result.elapsed_s} s`);
  } finally {
    await stopAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

type Summary = Record<string, { rps: number; p50_ms: number; p99_ms: number; rps_ratio?: number; cpu_us_per_request: Record<string, number> }>;

function report(r: { throughput: { summary: object }; fixed_rate: { summary: object }; targets: { name: string; target: string; value: number; met: boolean }[] }): string {
  const lines: string[] = [];
  const row = (name: string, s: Summary[string]) =>
    `${name.padEnd(12)} ${String(s.rps).padStart(8)} ${s.p50_ms.toFixed(3).padStart(9)} ${s.p99_ms.toFixed(3).padStart(9)} ${s.rps_ratio === undefined ? '    1.000' : s.rps_ratio.toFixed(3).padStart(9)} ${String(s.cpu_us_per_request.envoy).padStart(10)}`;
  const head = `${'config'.padEnd(12)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'ratio'.padStart(9)} ${'envoy µs/rq'.padStart(10)}`;
  lines.push('Throughput (median of rounds):', head);
  for (const [k, s] of Object.entries(r.throughput.summary as Summary)) lines.push(row(k, s));
  lines.push('', 'Fixed rate (median of rounds):', head);
  for (const [k, s] of Object.entries(r.fixed_rate.summary as Summary)) lines.push(row(k, s));
  lines.push('', 'Targets:');
  for (const t of r.targets) lines.push(`  ${t.met ? 'MET   ' : 'MISSED'} ${t.name}: ${t.value} (target ${t.target})`);
  return lines.join('\n') + '\n';
}

main()
  .then(mainReal)
  .then(
    () => process.exit(0),
    (e) => {
      console.error(e instanceof Error ? e.stack ?? e.message : e);
      process.exit(1);
    },
  );
