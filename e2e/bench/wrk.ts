/** The load generator: one wrk run driven by load.lua, its figures and the CPU wrk itself used. */
import { spawn } from 'child_process';
import * as path from 'path';
import type { WrkRun } from './result';
import { r3 } from './stats';
import { CONNECTIONS, KEYS, OTHER_CPUS, PIN } from './settings';

const LUA = path.join(__dirname, 'load.lua');

/** What load.lua prints on its WRK_JSON line. */
interface WrkJson {
  duration_us: number;
  requests: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  latency_us: { mean: number; p50: number; p90: number; p99: number; p999: number; max: number };
}

export interface WrkOptions {
  host: string;
  mode?: 'chat' | 'check';
  keys?: number;
  rate?: number;
  stop?: number;
  seconds: number;
  connections?: number;
  stopWhen?: () => Promise<boolean>;
}

const running = new Set<number>(); // process groups of running wrk processes, to end them on Ctrl-C

/** Ends every wrk still running (on Ctrl-C). */
export function killWrk(): void {
  for (const pg of running) process.kill(-pg, 'SIGKILL');
}

/**
 * One wrk run. `stopWhen` is polled every 200 ms; when it holds, wrk gets SIGINT, which makes it
 * stop and report early (its Lua thread:stop() alone ends the load but wrk still waits for -d).
 */
export function runWrk(port: number, o: WrkOptions): Promise<WrkRun> {
  const args = [
    '-t1',
    `-c${o.connections ?? CONNECTIONS}`,
    `-d${o.seconds}s`,
    '--timeout',
    '10s',
    '-s',
    LUA,
    `http://127.0.0.1:${port}/`,
    '--',
    `mode=${o.mode ?? 'chat'}`,
    `host=${o.host}`,
    `keys=${o.keys ?? KEYS}`,
    `rate=${o.rate ?? 0}`,
    `stop=${o.stop ?? 0}`,
  ];
  // bash's `times` reports the CPU its child (wrk) used, which /proc no longer shows after exit.
  const bash = ['bash', '-c', 'wrk "$@"; rc=$?; times >&2; exit $rc', 'bash', ...args];
  const child = PIN
    ? spawn('taskset', ['-c', OTHER_CPUS, ...bash], { stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    : spawn(bash[0], bash.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  running.add(child.pid!);
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
      running.delete(child.pid!);
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || !line) return reject(new Error(`wrk failed (${code}):\n${out}\n${err}`));
      const j = JSON.parse(line.slice('WRK_JSON '.length)) as WrkJson;
      const t = err
        .trim()
        .split('\n')
        .pop()!
        .match(/(\d+)m([\d.]+)s\s+(\d+)m([\d.]+)s/);
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
