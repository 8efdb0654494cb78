/** What a run of the Envoy benchmark is set to: the BENCH_* environment variables, pinning, the requests sent. */
import * as os from 'os';
import * as path from 'path';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';
import { REPO } from '../src/harness/paths';

const env = (name: string, dflt: number) => (process.env[name] ? Number(process.env[name]) : dflt);
export const SECONDS = env('BENCH_SECONDS', 1);
export const ROUNDS = env('BENCH_ROUNDS', 12);
export const FIXED_SECONDS = env('BENCH_FIXED_SECONDS', 4);
export const FIXED_ROUNDS = env('BENCH_FIXED_ROUNDS', 3);
// Side by side: the pass-through Envoys loaded at the same time, each at SIDE_RATE requests/s.
export const SIDE_SECONDS = env('BENCH_SIDE_SECONDS', 5);
export const SIDE_ROUNDS = env('BENCH_SIDE_ROUNDS', 3);
export const SIDE_RATE = env('BENCH_SIDE_RATE', 600);
export const SIDE_CONNECTIONS = 8;
export const CONNECTIONS = env('BENCH_CONNECTIONS', 16);
export const RATE = env('BENCH_RATE', 500);
export const WARMUP_SECONDS = env('BENCH_WARMUP_SECONDS', 2);
export const MEMORY_FIRST = env('BENCH_MEMORY_FIRST', 1_000);
export const MEMORY_TOTAL = env('BENCH_MEMORY_TOTAL', 100_000);
export const ENVOY_CONCURRENCY = env('BENCH_ENVOY_CONCURRENCY', 1);
export const KEYS = 1000;
// Envoy, the system under test, gets a core of its own (the last); wrk, the mock LLM (this process),
// the service and Redis share the others. Without it, which process the scheduler puts beside
// Envoy's worker changes from run to run, and so does Envoy's share of a core. BENCH_PIN=0: no pinning.
const CORES = os.cpus().length;
export const PIN = CORES >= 2 && env('BENCH_PIN', 1) !== 0;
export const ENVOY_CPUS = String(CORES - 1);
export const OTHER_CPUS = CORES > 2 ? `0-${CORES - 2}` : '0';
export const OUT = process.env.BENCH_OUT ?? path.join(REPO, 'docs/bench/envoy.json');

export const MATCHED_HOST = 'dashscope.aliyuncs.com'; // the host e2e/config/plugin-config.json matches
export const UNMATCHED_HOST = 'api.unmatched.example';
// A bucket that never runs out: every matched request is allowed, so each is a check + a report.
export const RULES = [
  { rate_limit_key_regex: '^bench-', redis_expired_seconds: 3600, fill_interval_second: 60, tokens_per_fill: 1000, max_tokens: 1_000_000_000 },
];
export const RLS_CLUSTER = `outbound|${RLS_PORT}||${RLS_SERVICE}`;
// The 'bodykey' configuration's template: the user and the body's model (load.lua sends "model").
export const BODY_KEY = '{{request.headers.user-type}}-{{request.body.model}}';
