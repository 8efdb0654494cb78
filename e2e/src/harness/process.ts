import { ChildProcess, spawn, SpawnOptions } from 'child_process';
import * as fs from 'fs';

/** A child process we started, with its output kept for assertions and for failure messages. */
export interface Proc {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  stop(): Promise<void>;
}

export function startProcess(name: string, cmd: string, args: string[], opts: SpawnOptions & { logFile?: string } = {}): Proc {
  if (!fs.existsSync(cmd) && cmd.includes('/')) throw new Error(`${name}: ${cmd} does not exist`);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  const log = opts.logFile ? fs.createWriteStream(opts.logFile) : undefined;
  const onData = (d: Buffer) => {
    // Keep the last 4 MB: enough for any assertion, bounded for long runs.
    out = (out + d.toString('utf8')).slice(-4 * 1024 * 1024);
    log?.write(d);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      log?.end();
      resolve(code ?? signal ?? 'unknown');
    });
    child.on('error', (err) => {
      out += `\n[spawn error] ${err.message}`;
      resolve('spawn-error');
    });
  });
  if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
  const pid = child.pid;
  return {
    name,
    pid,
    child,
    output: () => out,
    exited,
    stop: () => stopPid(pid, exited),
  };
}

/** SIGTERM, then SIGKILL if the process has not exited within the grace period. */
export async function stopPid(pid: number, exited: Promise<unknown>, graceMs = 5000): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
  if ((await Promise.race([exited, timer])) === 'timeout') {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone meanwhile */
    }
    await exited;
  }
}

/** Whether a process with this PID exists (signal 0 tests without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Thrown by a waitFor probe to stop waiting at once (the thing waited for can no longer happen). */
export class GiveUp extends Error {}

/** Polls `probe` until it returns a value (not undefined) or the deadline passes. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 15000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      if (e instanceof GiveUp) throw e;
      lastErr = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
