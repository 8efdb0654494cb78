/** The per-configuration summaries of a phase's runs (the figures envoy.json reports). */
import type { Compared, Config, Measured, RunSummary, SideBySideConfig, SideBySideRound, SideBySideSummary, Summaries } from './result';
import { median, quantile, r3 } from './stats';

const cpuTotal = (m: Measured) => Object.values(m.cpu_us_per_request).reduce((a, b) => a + b, 0);

function ownSummary(rs: Measured[]): RunSummary {
  const cpu: Record<string, number> = {};
  for (const k of Object.keys(rs[0].cpu_us_per_request)) cpu[k] = median(rs.map((r) => r.cpu_us_per_request[k]));
  return {
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

/** Each configuration's runs summarised; all but the baseline and the service also against the baseline. */
export function summarize<C extends Config>(runs: Measured[], configs: C[]): Summaries<C> {
  const rounds = [...new Set(runs.map((r) => r.round))];
  const run = (c: Config, n: number) => runs.find((r) => r.config === c && r.round === n)!;
  // Paired per round (same moment on the machine), then the median over rounds.
  const perRound = (c: Config, f: (a: Measured, b: Measured) => number, base: Config = 'baseline') => rounds.map((n) => f(run(c, n), run(base, n)));
  const ratio = (c: Config, f: (a: Measured, b: Measured) => number, base: Config = 'baseline') => r3(median(perRound(c, f, base)));
  const out = {} as Record<C, RunSummary | Compared>;
  for (const c of configs) {
    const own = ownSummary(runs.filter((r) => r.config === c));
    if (c === 'baseline' || c === 'service') {
      out[c] = own;
      continue;
    }
    const rpsRatios = perRound(c, (a, b) => a.rps / b.rps);
    const quietest = rounds
      .map((n) => {
        const a = run(c, n);
        const b = run('baseline', n);
        return {
          round: n,
          others_busy: Math.max(a.others_busy, b.others_busy),
          rps_ratio: r3(a.rps / b.rps),
          p50_added_ms: r3(a.p50_ms - b.p50_ms),
          p99_added_ms: r3(a.p99_ms - b.p99_ms),
        };
      })
      .sort((x, y) => x.others_busy - y.others_busy)[0];
    const compared: Compared = {
      ...own,
      rps_ratio: ratio(c, (a, b) => a.rps / b.rps),
      rps_ratio_iqr: [r3(quantile(rpsRatios, 0.25)), r3(quantile(rpsRatios, 0.75))],
      p50_added_ms: ratio(c, (a, b) => a.p50_ms - b.p50_ms),
      p99_added_ms: ratio(c, (a, b) => a.p99_ms - b.p99_ms),
      envoy_cpu_us_added: ratio(c, (a, b) => a.cpu_us_per_request.envoy - b.cpu_us_per_request.envoy),
      all_cpu_us_added: ratio(c, (a, b) => cpuTotal(a) - cpuTotal(b)),
      quietest_round: quietest,
    };
    if ((configs as Config[]).includes('noop') && (c === 'unmatched' || c === 'matched')) {
      compared.vs_noop = {
        rps_ratio: ratio(c, (a, b) => a.rps / b.rps, 'noop'),
        envoy_cpu_us_added: ratio(c, (a, b) => a.cpu_us_per_request.envoy - b.cpu_us_per_request.envoy, 'noop'),
      };
    }
    out[c] = compared;
  }
  return out as Summaries<C>;
}

/** Side by side: each configuration's Envoy CPU per request, and over each configuration before it in `configs`. */
export function summarizeSideBySide(rounds: SideBySideRound[], configs: SideBySideConfig[]): Record<SideBySideConfig, SideBySideSummary> {
  const of = (c: SideBySideConfig, n: number) => rounds.find((r) => r.config === c && r.round === n)!.envoy_cpu_us_per_request;
  const ns = [...new Set(rounds.map((r) => r.round))];
  const summary = {} as Record<SideBySideConfig, SideBySideSummary>;
  configs.forEach((c, i) => {
    const xs = ns.map((n) => of(c, n));
    summary[c] = {
      rps: median(rounds.filter((r) => r.config === c).map((r) => r.rps)),
      errors: rounds.filter((r) => r.config === c).reduce((a, r) => a + r.errors, 0),
      envoy_cpu_us_per_request: r3(median(xs)),
      envoy_cpu_us_range: [r3(Math.min(...xs)), r3(Math.max(...xs))],
      added_us_over: Object.fromEntries(configs.slice(0, i).map((b) => [b, r3(median(ns.map((n) => of(c, n) - of(b, n))))])),
    };
  });
  return summary;
}
