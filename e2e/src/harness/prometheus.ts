/** Reading Prometheus expressions and scrapes, for the tests of the dashboard and the alerts. */

/**
 * Metric names in a PromQL expression, outside label matchers and strings: the service's
 * `llmrl_*`, and Envoy's: the plugin's counters (Envoy's stat `wasmcustom.llm_ratelimit.X` is
 * exported by /stats/prometheus as `llm_ratelimit_X`: `wasmcustom` is a custom stat namespace,
 * which Envoy strips, without its `envoy_` prefix) and Envoy's own `envoy_*`.
 */
export function metricNames(expr: string): string[] {
  const bare = expr.replace(/\{[^}]*\}/g, '{}').replace(/"[^"]*"/g, '""');
  return [...new Set(bare.match(/\b(?:llmrl|llm_ratelimit|envoy)_[a-zA-Z0-9_:]+/g) ?? [])];
}

/** Names exported in Prometheus text format: sample names (with the value of their last sample), and families declared by # TYPE. */
export function exported(text: string): { samples: Map<string, number>; declared: Set<string> } {
  const samples = new Map<string, number>();
  const declared = new Set<string>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)/.exec(line);
    if (t) {
      declared.add(t[1]);
      if (t[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) declared.add(t[1] + s);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? (\S+)/.exec(line);
    if (m) samples.set(m[1], Number(m[2]));
  }
  return { samples, declared };
}
