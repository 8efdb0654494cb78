/** `node service/dist/main.js` as a child process: its JSON log lines, stderr and exit. */
import { spawn, type ChildProcess } from 'node:child_process';
import { ADMIN_TOKEN } from './admin';

export interface Proc {
  child: ChildProcess;
  port: number;
  adminPort: number;
  lines: () => any[];
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Starts main.js with PORT=0, ADMIN_PORT=0, ADMIN_TOKENS and `env`; resolves on its `listening` line, rejects if it exits first. */
export function runMain(main: string, env: Record<string, string>): Promise<Proc> {
  const child = spawn(process.execPath, [main], {
    env: { PATH: process.env.PATH!, PORT: '0', ADMIN_PORT: '0', ADMIN_TOKENS: ADMIN_TOKEN, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.stderr!.on('data', (d) => (err += d));
  const lines = () =>
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const l = lines().find((x) => x.msg === 'listening');
      if (l) resolve({ child, port: l.port, adminPort: l.admin_port, lines, stderr: () => err, exited });
    });
    void exited.then((code) => reject(Object.assign(new Error(`exited ${code}: ${err}`), { code, stderr: err })));
  });
}

/** Waits until `pred` holds (polling every 20 ms) or `ms` passes; returns whether it held. */
export async function until(pred: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
