/** The benchmark's phases: sanity checks, throughput, fixed rate, side by side, memory. */
import { Envoy } from '../src/harness/envoy';
import { request } from '../src/harness/http';
import { cpuNs, cpuOf, machineCpu, rssKiB } from './proc';
import type {
  Config,
  FixedRateConfig,
  Measured,
  MemoryResult,
  MemorySnapshot,
  SideBySide,
  SideBySideConfig,
  SideBySideRound,
  Summaries,
  ThroughputConfig,
  WrkRun,
} from './result';
import {
  CONNECTIONS,
  FIXED_ROUNDS,
  FIXED_SECONDS,
  MATCHED_HOST,
  MEMORY_FIRST,
  MEMORY_TOTAL,
  RATE,
  ROUNDS,
  SECONDS,
  SIDE_CONNECTIONS,
  SIDE_RATE,
  SIDE_ROUNDS,
  SIDE_SECONDS,
  WARMUP_SECONDS,
} from './settings';
import { counters, hostOf, SharedEnvoys, Stack } from './stack';
import { r3 } from './stats';
import { summarize, summarizeSideBySide } from './summarize';
import { runWrk } from './wrk';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

const THROUGHPUT: ThroughputConfig[] = ['baseline', 'baseline2', 'noop', 'unmatched', 'scoped', 'matched'];
// 'service': the same rate of checks sent straight to the service (no Envoy): its share of the added latency.
const FIXED_RATE: FixedRateConfig[] = ['baseline', 'matched', 'bodykey', 'service'];
const SIDE_BY_SIDE: SideBySideConfig[] = ['baseline', 'baseline2', 'noop', 'readhost', 'unmatched'];

/** The configurations in the order of `round`: rotated by one each round. */
const rotated = <C>(configs: C[], round: number) => configs.map((_, i) => configs[(i + round - 1) % configs.length]);

/** One wrk run of a configuration on its shared Envoy, with the CPU each process used per request. */
async function measure(stack: Stack, envoys: SharedEnvoys, config: Config, round: number, o: { seconds: number; rate?: number }): Promise<Measured> {
  const envoy = envoys[config];
  if (!envoy) throw new Error(`${config} runs only side by side, on Envoys of its own`);
  const host = hostOf(config);
  const pids: Record<string, number> = { envoy: envoy.proc.pid, service: stack.service.proc.pid, redis: stack.redis.pid };
  const before = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuOf(p)]));
  const self0 = process.cpuUsage();
  const m0 = machineCpu();
  const c0 = await counters(envoy);
  stack.mock.requests.length = 0; // the mock keeps every request: don't let it grow across runs
  const w =
    config === 'service'
      ? await runWrk(stack.service.port, { host, mode: 'check', seconds: o.seconds, rate: o.rate })
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

/** Before measuring: the plugin checks and reports matched requests and leaves the others alone. */
export async function checkEnvoys(stack: Stack, envoys: SharedEnvoys): Promise<void> {
  // The scoped Envoy still limits its own host: one matched request is one check and one report.
  const scoped = envoys.scoped!;
  const s0 = await counters(scoped);
  const one = await request(scoped.port, {
    method: 'POST',
    path: '/',
    headers: { host: MATCHED_HOST, 'content-type': 'application/json', 'user-type': 'bench-scoped' },
    body: '{"messages":[]}',
  });
  const deadline = Date.now() + 5000;
  while ((await counters(scoped)).rls - s0.rls < 2 && Date.now() < deadline) await sleep(50);
  const calls = (await counters(scoped)).rls - s0.rls;
  if (one.status !== 200 || calls !== 2)
    throw new Error(`scoped Envoy: a matched request got ${one.status} and made ${calls} service calls (expected 200 and 2)`);

  for (const c of [...THROUGHPUT, 'bodykey' as const]) {
    const w = await measure(stack, envoys, c, 0, { seconds: WARMUP_SECONDS });
    log(`warm-up ${c}: ${w.rps} req/s, ${w.errors} errors, ${w.rls_calls_per_request} service calls per request`);
    const expected = c === 'matched' || c === 'bodykey' ? 2 : 0;
    if (w.errors || Math.abs(w.rls_calls_per_request - expected) > 0.05) {
      throw new Error(`warm-up ${c}: expected no errors and ${expected} service calls per request, got ${JSON.stringify(w)}`);
    }
  }
}

/** As fast as wrk can: ROUNDS rounds of SECONDS per configuration. */
export async function throughput(stack: Stack, envoys: SharedEnvoys): Promise<{ summary: Summaries<ThroughputConfig>; runs: Measured[] }> {
  const runs: Measured[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const c of rotated(THROUGHPUT, round)) {
      const m = await measure(stack, envoys, c, round, { seconds: SECONDS });
      runs.push(m);
      log(
        `throughput round ${round} ${c}: ${m.rps} req/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms, ${m.errors} errors, machine busy ${Math.round(m.machine_busy * 100)}%`,
      );
    }
  }
  return { summary: summarize(runs, THROUGHPUT), runs };
}

/** At RATE requests/s: FIXED_ROUNDS rounds of FIXED_SECONDS per configuration. */
export async function fixedRate(stack: Stack, envoys: SharedEnvoys): Promise<{ summary: Summaries<FixedRateConfig>; runs: Measured[] }> {
  const runs: Measured[] = [];
  for (let round = 1; round <= FIXED_ROUNDS; round++) {
    for (const c of rotated(FIXED_RATE, round)) {
      const m = await measure(stack, envoys, c, round, { seconds: FIXED_SECONDS, rate: RATE });
      runs.push(m);
      log(`${RATE} req/s round ${round} ${c}: ${m.rps} req/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms, ${m.errors} errors`);
    }
  }
  return { summary: summarize(runs, FIXED_RATE), runs };
}

/**
 * The pass-through configurations loaded at the same moment, each by its own wrk at the same fixed
 * rate: whatever else the machine does then, it does to all of them, so their Envoy CPU per request
 * can be compared to a microsecond or two (throughput runs, one after another, cannot).
 */
export async function sideBySide(stack: Stack): Promise<SideBySide> {
  // Fresh Envoys, started and warmed up alike: an Envoy's past traffic moves its CPU per request by
  // several µs (seen here with Envoys reused from the throughput runs), more than the steps measured.
  const envoys: Envoy[] = [];
  try {
    for (const c of SIDE_BY_SIDE) envoys.push(await stack.startEnvoy(c));
    return await sideBySideRounds(
      stack,
      SIDE_BY_SIDE.map((c, i) => ({ c, envoy: envoys[i], host: hostOf(c) })),
    );
  } finally {
    for (const e of envoys) await e.stop();
  }
}

async function sideBySideRounds(stack: Stack, targets: { c: SideBySideConfig; envoy: Envoy; host: string }[]): Promise<SideBySide> {
  const rounds: SideBySideRound[] = [];
  const load = { rate: SIDE_RATE, connections: SIDE_CONNECTIONS };
  await Promise.all(targets.map((t) => runWrk(t.envoy.port, { host: t.host, seconds: 2, ...load }))); // warm-up
  for (let round = 1; round <= SIDE_ROUNDS; round++) {
    const before = targets.map((t) => cpuNs(t.envoy.proc.pid));
    const runs = await Promise.all(targets.map((t) => runWrk(t.envoy.port, { host: t.host, seconds: SIDE_SECONDS, ...load })));
    targets.forEach((t, i) => {
      const us = (cpuNs(t.envoy.proc.pid) - before[i]) / 1000 / runs[i].requests;
      rounds.push({ round, config: t.c, rps: runs[i].rps, errors: runs[i].errors, envoy_cpu_us_per_request: Math.round(us * 100) / 100 });
    });
    stack.mock.requests.length = 0;
    log(
      `side by side round ${round}: ` +
        rounds
          .filter((r) => r.round === round)
          .map((r) => `${r.config} ${r.rps} req/s ${r.envoy_cpu_us_per_request} µs`)
          .join(', '),
    );
  }
  return {
    summary: summarizeSideBySide(
      rounds,
      targets.map((t) => t.c),
    ),
    rounds,
  };
}

/** A fresh Envoy + plugin: VmRSS and admin /memory after MEMORY_FIRST and MEMORY_TOTAL matched requests, each with its own key. */
export async function memory(stack: Stack): Promise<MemoryResult> {
  log('memory: a fresh Envoy + plugin');
  const envoy = await stack.startEnvoy('matched');
  try {
    const snapshot = async (): Promise<MemorySnapshot> => {
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
    stack.mock.requests.length = 0;
    const reached = (n: number) => async () => (await counters(envoy)).upstream >= n;
    const w1 = await runWrk(envoy.port, {
      host: MATCHED_HOST,
      keys: MEMORY_TOTAL,
      stop: MEMORY_FIRST,
      seconds: 60,
      connections: 8,
      stopWhen: reached(MEMORY_FIRST),
    });
    const first = await snapshot();
    log(`memory: after ${first.requests} requests VmRSS ${first.vmrss_kib} KiB`);
    const samples: { requests: number; vmrss_kib: number }[] = [];
    const sampler = setInterval(() => {
      counters(envoy).then(
        (c) => samples.push({ requests: c.upstream, vmrss_kib: rssKiB(envoy.proc.pid) }),
        () => undefined,
      );
      stack.mock.requests.length = 0;
    }, 2000);
    let w2: WrkRun;
    try {
      w2 = await runWrk(envoy.port, {
        host: MATCHED_HOST,
        keys: MEMORY_TOTAL,
        stop: MEMORY_TOTAL - first.requests,
        seconds: 180,
        connections: CONNECTIONS,
        stopWhen: reached(MEMORY_TOTAL),
      });
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
