/**
 * The processes test-support starts (redis-server, Envoy): each with a temp dir of its own and
 * its output kept, stopped by PID, and killed anyway when the test runner exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface Started {
  child: ChildProcess;
  pid: number;
  /** Its temp dir, removed by stop(). */
  dir: string;
  /** The end of what it wrote to stdout and stderr. */
  output(): string;
  /** SIGTERM, SIGKILL after 3 s; then the temp dir is removed. */
  stop(): Promise<void>;
}

/** Absolute path of a binary on the PATH, or an Error that says how to install it. */
export function requireBinary(name: string, installHint: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  throw new Error(`${name} not found on the PATH: ${installHint}`);
}

// Safety net: a test runner that exits without stopping its processes still kills them.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) {
    try {
      process.kill(p.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

/** Starts `bin` with the args `args(dir)` gets for a fresh temp dir (prefix `name`). */
export function startProcess(name: string, bin: string, args: (dir: string) => string[]): Started {
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  const child = spawn(bin, args(dir), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => (out = (out + d.toString()).slice(-16384));
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (e) => (out += `\n[spawn error] ${e.message}`));
  live.add(child);
  child.once('exit', () => live.delete(child));
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= new Promise<void>((resolve) => {
      let kill: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(kill);
        rmSync(dir, { recursive: true, force: true });
        resolve();
      };
      if (child.exitCode !== null || child.signalCode !== null) return done();
      child.once('exit', done);
      kill = setTimeout(() => {
        try {
          process.kill(child.pid!, 'SIGKILL');
        } catch {
          /* gone */
        }
      }, 3000);
      try {
        process.kill(child.pid!, 'SIGTERM');
      } catch {
        done();
      }
    }));
  return { child, pid: child.pid ?? -1, dir, output: () => out, stop };
}

/** The process ended while it was waited for; `output` is the end of what it wrote. */
export class Exited extends Error {
  constructor(
    what: string,
    readonly output: string,
    code: number | string,
  ) {
    super(`${what}: process exited (${code}):\n${output.slice(-3000)}`);
  }
}

/**
 * Polls `probe` until it returns a value (not undefined). Throws Exited at once if `proc` ends,
 * and an Error after `timeoutMs` with the last error the probe threw.
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, proc?: Started): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (proc && (proc.child.exitCode !== null || proc.child.signalCode !== null)) {
      throw new Exited(what, proc.output(), proc.child.exitCode ?? proc.child.signalCode!);
    }
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what}: not ready after ${timeoutMs} ms (${(last as Error)?.message ?? 'no reply'})`);
}
