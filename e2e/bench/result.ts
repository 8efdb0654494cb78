/** The shape of docs/bench/envoy.json: what envoy-bench.ts writes and render.ts reads. Types only: it imports nothing. */

/** One wrk run's figures (wrk.ts measures them). */
export interface WrkRun {
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

/** A configuration measured: which Envoy (or none, for 'service') and which Host the requests carry. */
export type Config = 'baseline' | 'baseline2' | 'noop' | 'readhost' | 'unmatched' | 'scoped' | 'matched' | 'bodykey' | 'service';
export type ThroughputConfig = 'baseline' | 'baseline2' | 'noop' | 'unmatched' | 'scoped' | 'matched';
export type FixedRateConfig = 'baseline' | 'matched' | 'bodykey' | 'service';
export type SideBySideConfig = 'baseline' | 'baseline2' | 'noop' | 'readhost' | 'unmatched';

/** CPU microseconds per request, by process: envoy, service, redis, mock (the bench's own process, where the mock LLM runs), wrk. */
export type CpuUs = Record<string, number>;

/** One wrk run of one configuration, with where its CPU went. */
export interface Measured extends WrkRun {
  config: Config;
  round: number;
  /** Calls from the plugin to the rate-limit service per request (2 = check + report). */
  rls_calls_per_request: number;
  cpu_us_per_request: CpuUs;
  /** Share of the machine's CPU that was busy (anything, including other users of the machine). */
  machine_busy: number;
  /** The part of machine_busy that none of the bench's processes used: other work on the machine. */
  others_busy: number;
}

/** A configuration's runs: medians over rounds (errors summed). */
export interface RunSummary {
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  rls_calls_per_request: number;
  cpu_us_per_request: CpuUs;
  machine_busy: number;
  others_busy: number;
}

/** A configuration against the baseline: each figure paired per round, then the median over rounds. */
export interface Compared extends RunSummary {
  rps_ratio: number;
  /** The middle half of the per-round ratios (25th to 75th percentile). */
  rps_ratio_iqr: [number, number];
  p50_added_ms: number;
  p99_added_ms: number;
  envoy_cpu_us_added: number;
  all_cpu_us_added: number;
  /** The round in which other work on the machine took the least CPU (max over the pair). */
  quietest_round: { round: number; others_busy: number; rps_ratio: number; p50_added_ms: number; p99_added_ms: number };
  /** unmatched and matched against the no-op filter, when it was measured. */
  vs_noop?: { rps_ratio: number; envoy_cpu_us_added: number };
}

/** Summaries by configuration; the baseline and the service (no Envoy) are not compared with the baseline. */
export type Summaries<C extends Config> = { [K in C]: K extends 'baseline' | 'service' ? RunSummary : Compared };

export interface SideBySideRound {
  round: number;
  config: SideBySideConfig;
  rps: number;
  errors: number;
  envoy_cpu_us_per_request: number;
}

export interface SideBySideSummary {
  rps: number;
  errors: number;
  envoy_cpu_us_per_request: number;
  envoy_cpu_us_range: [number, number];
  /** Envoy CPU µs per request over each configuration listed before this one: paired per round (the same seconds), median over rounds. */
  added_us_over: Partial<Record<SideBySideConfig, number>>;
}

export interface SideBySide {
  summary: Record<SideBySideConfig, SideBySideSummary>;
  rounds: SideBySideRound[];
}

export interface MemorySnapshot {
  requests: number;
  rls_calls: number;
  vmrss_kib: number;
  allocated_bytes: number;
  heap_size_bytes: number;
}

export interface MemoryResult {
  vmrss_kib_at_start: number;
  after_first: MemorySnapshot;
  after_total: MemorySnapshot;
  growth_ratio: number;
  allocated_growth_ratio: number;
  load: { first: WrkRun; rest: WrkRun };
  samples: { requests: number; vmrss_kib: number }[];
}

/** The targets the benchmark checks, by id (render.ts explains each by its id, whatever the order). */
export type TargetId = 'unmatched_rps' | 'matched_p50' | 'matched_p99' | 'memory_growth' | 'bodykey_p50' | 'bodykey_p99';

export interface Target {
  name: string;
  target: string;
  value: number;
  met: boolean;
}

export type Targets = Record<TargetId, Target>;

export interface RunInfo {
  machine: { cores: number; cpu_model: string; memory_gib: number; load_average_at_start: number[] };
  versions: { envoy: string; node: string; redis: string; wrk: string; kernel: string };
  plugin: { bytes: number; sha256: string; built: string };
}

export interface Settings {
  seconds_per_run: number;
  seconds_per_fixed_rate_run: number;
  rounds: number;
  fixed_rate_rounds: number;
  warmup_seconds: number;
  connections: number;
  wrk_threads: number;
  envoy_concurrency: number;
  /** CPUs (taskset lists) Envoy and everything else ran on; null: not pinned. */
  pinning: { envoy: string; others: string } | null;
  /** Scheduling priority the bench and everything it started ran at (nice -n -10 make bench: ahead of other work). */
  niceness: number;
  fixed_rate: number;
  side_by_side: { seconds: number; rounds: number; rate_each: number; connections_each: number };
  keys: number;
  memory_requests: [number, number];
  request: string;
  rules: object[];
}

export interface EnvoyBenchResult extends RunInfo {
  date: string;
  commit: string;
  work_tree_clean: boolean;
  settings: Settings;
  throughput: { summary: Summaries<ThroughputConfig>; runs: Measured[] };
  fixed_rate: { summary: Summaries<FixedRateConfig>; runs: Measured[] };
  side_by_side: SideBySide;
  memory: MemoryResult;
  targets: Targets;
  elapsed_s: number;
}
