/**
 * Envoy benchmarks: plain Envoy vs Envoy + plugin, through real Envoy 1.40, the real
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
 * This file runs them in that order and writes the result (result.ts); settings.ts, stack.ts,
 * phases.ts, wrk.ts, proc.ts, summarize.ts (over stats.ts) and report.ts do the rest.
 */
import { execFileSync, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PLUGIN_WASM, REPO, envoyBin, requireBuilt } from '../src/harness/paths';
import { checkEnvoys, fixedRate, log, memory, sideBySide, throughput } from './phases';
import { report, targets } from './report';
import type { EnvoyBenchResult, RunInfo } from './result';
import {
  CONNECTIONS,
  ENVOY_CONCURRENCY,
  ENVOY_CPUS,
  FIXED_ROUNDS,
  FIXED_SECONDS,
  KEYS,
  MATCHED_HOST,
  MEMORY_FIRST,
  MEMORY_TOTAL,
  OTHER_CPUS,
  OUT,
  PIN,
  RATE,
  ROUNDS,
  RULES,
  SECONDS,
  SIDE_CONNECTIONS,
  SIDE_RATE,
  SIDE_ROUNDS,
  SIDE_SECONDS,
  UNMATCHED_HOST,
  WARMUP_SECONDS,
} from './settings';
import { Modules, startSharedEnvoys, startStack } from './stack';
import { r3 } from './stats';
import { killWrk } from './wrk';

/** What the run needs from the machine beyond `make build`. */
function preflight(): void {
  requireBuilt(PLUGIN_WASM, 'make plugin');
  if (spawnSync('wrk', ['-v'], { stdio: 'ignore' }).error) throw new Error('wrk not found: apt-get install -y wrk (make bench does it)');
  if (PIN && spawnSync('taskset', ['-V'], { stdio: 'ignore' }).error)
    throw new Error('taskset not found: apt-get install -y util-linux (or BENCH_PIN=0 to run unpinned)');
}

/** A private copy of plugin.wasm and the two no-op filters, built into `dir`. */
function modules(dir: string): Modules {
  const plugin = path.join(dir, 'plugin.wasm');
  fs.copyFileSync(PLUGIN_WASM, plugin);
  const noop = path.join(dir, 'noop.wasm');
  const readHost = path.join(dir, 'read-host.wasm');
  log('building e2e/bench/noop-filter/index.ts and read-host.ts (Wasm filters that do nothing, or read one header)');
  for (const [src, out] of [
    ['index.ts', noop],
    ['read-host.ts', readHost],
  ]) {
    execFileSync(
      path.join(REPO, 'node_modules/.bin/asc'),
      [path.join(__dirname, 'noop-filter', src), '-b', out, '--use', 'abort=', '-O3', '--runtime', 'full'],
      { stdio: 'inherit' },
    );
  }
  // Envoy calls only the callbacks a module exports: the no-op row is Envoy's Wasm floor for the
  // plugin only if both export the same ones.
  const wasmApi = (globalThis as unknown as { WebAssembly: { Module: { new (b: Buffer): object; exports(m: object): { name: string }[] } } }).WebAssembly;
  const callbacks = (f: string) =>
    wasmApi.Module.exports(new wasmApi.Module(fs.readFileSync(f)))
      .map((x) => x.name)
      .filter((n) => n.startsWith('proxy_'))
      .sort()
      .join(' ');
  for (const [f, src] of [
    [noop, 'index.ts'],
    [readHost, 'read-host.ts'],
  ]) {
    if (callbacks(f) !== callbacks(plugin))
      throw new Error(
        `e2e/bench/noop-filter/${src} exports ${callbacks(f)}\nbut the plugin exports ${callbacks(plugin)}: make them export the same proxy_* functions`,
      );
  }
  return { plugin, noop, readHost };
}

function versions(): RunInfo['versions'] {
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

function machine(): RunInfo['machine'] {
  const cpus = os.cpus();
  return {
    cores: cpus.length,
    cpu_model: cpus[0]?.model ?? 'unknown',
    memory_gib: Math.round(os.totalmem() / 2 ** 30),
    load_average_at_start: os.loadavg().map(r3),
  };
}

async function main() {
  preflight();
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-bench-'));
  const wasm = modules(tmp);
  const wasmBytes = fs.readFileSync(wasm.plugin);
  const info: RunInfo = {
    machine: machine(),
    versions: versions(),
    plugin: { bytes: wasmBytes.length, sha256: createHash('sha256').update(wasmBytes).digest('hex'), built: fs.statSync(PLUGIN_WASM).mtime.toISOString() },
  };
  log(`${info.machine.cores} cores, Envoy ${info.versions.envoy}, Node ${info.versions.node}, Redis ${info.versions.redis}, wrk ${info.versions.wrk}`);
  const stops: (() => Promise<void>)[] = [];
  const onStop = (stop: () => Promise<void>) => void stops.push(stop);
  const stopAll = async () => {
    killWrk();
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    const stack = await startStack(wasm, onStop);
    const shared = await startSharedEnvoys(stack, onStop);
    await checkEnvoys(stack, shared.envoys);
    const tp = await throughput(stack, shared.envoys);
    const fr = await fixedRate(stack, shared.envoys);
    // The side-by-side and memory runs get the machine to themselves as far as we are concerned.
    await shared.stop();
    const side = await sideBySide(stack);
    const mem = await memory(stack);

    const result: EnvoyBenchResult = {
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
        pinning: PIN ? { envoy: ENVOY_CPUS, others: OTHER_CPUS } : null,
        niceness: os.getPriority(),
        fixed_rate: RATE,
        side_by_side: { seconds: SIDE_SECONDS, rounds: SIDE_ROUNDS, rate_each: SIDE_RATE, connections_each: SIDE_CONNECTIONS },
        keys: KEYS,
        memory_requests: [MEMORY_FIRST, MEMORY_TOTAL],
        request: `POST / (seed chat completion, ${MATCHED_HOST} for matched and baseline, ${UNMATCHED_HOST} for unmatched), user-type: bench-<n>`,
        rules: RULES,
      },
      throughput: tp,
      fixed_rate: fr,
      side_by_side: side,
      memory: mem,
      targets: targets(tp.summary, fr.summary, mem),
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

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  },
);
