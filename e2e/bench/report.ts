/** The targets a run is judged by, and the summary it prints. */
import type { Compared, EnvoyBenchResult, FixedRateConfig, MemoryResult, RunSummary, Summaries, Targets, ThroughputConfig } from './result';
import { RATE } from './settings';

export function targets(tp: Summaries<ThroughputConfig>, fr: Summaries<FixedRateConfig>, memory: MemoryResult): Targets {
  return {
    unmatched_rps: {
      name: 'Unmatched traffic through the plugin: requests/s vs baseline',
      target: '>= 0.97',
      value: tp.unmatched.rps_ratio,
      met: tp.unmatched.rps_ratio >= 0.97,
    },
    matched_p50: {
      name: `Matched at ${RATE} req/s: added p50 latency (ms)`,
      target: '<= 1',
      value: fr.matched.p50_added_ms,
      met: fr.matched.p50_added_ms <= 1,
    },
    matched_p99: {
      name: `Matched at ${RATE} req/s: added p99 latency (ms)`,
      target: '<= 3',
      value: fr.matched.p99_added_ms,
      met: fr.matched.p99_added_ms <= 3,
    },
    memory_growth: {
      name: `Envoy VmRSS after ${memory.after_total.requests} vs after ${memory.after_first.requests} matched requests`,
      target: '<= 1.10',
      value: memory.growth_ratio,
      met: memory.growth_ratio <= 1.1,
    },
    bodykey_p50: {
      name: `Matched, key read from the body, at ${RATE} req/s: added p50 latency (ms)`,
      target: '<= 1',
      value: fr.bodykey.p50_added_ms,
      met: fr.bodykey.p50_added_ms <= 1,
    },
    bodykey_p99: {
      name: `Matched, key read from the body, at ${RATE} req/s: added p99 latency (ms)`,
      target: '<= 3',
      value: fr.bodykey.p99_added_ms,
      met: fr.bodykey.p99_added_ms <= 3,
    },
  };
}

export function report(r: EnvoyBenchResult): string {
  const lines: string[] = [];
  const row = (name: string, s: RunSummary | Compared) =>
    `${name.padEnd(12)} ${String(s.rps).padStart(8)} ${s.p50_ms.toFixed(3).padStart(9)} ${s.p99_ms.toFixed(3).padStart(9)} ${'rps_ratio' in s ? s.rps_ratio.toFixed(3).padStart(9) : '    1.000'} ${String(s.cpu_us_per_request.envoy).padStart(10)}`;
  const head = `${'config'.padEnd(12)} ${'req/s'.padStart(8)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'ratio'.padStart(9)} ${'envoy µs/rq'.padStart(10)}`;
  lines.push('Throughput (median of rounds):', head);
  for (const [k, s] of Object.entries(r.throughput.summary)) lines.push(row(k, s));
  lines.push('', 'Fixed rate (median of rounds):', head);
  for (const [k, s] of Object.entries(r.fixed_rate.summary)) lines.push(row(k, s));
  lines.push('', 'Targets:');
  for (const t of Object.values(r.targets)) lines.push(`  ${t.met ? 'MET   ' : 'MISSED'} ${t.name}: ${t.value} (target ${t.target})`);
  return lines.join('\n') + '\n';
}
