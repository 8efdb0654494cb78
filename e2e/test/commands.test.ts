/** The README's run commands: `make demo` prints the seed scenario; `make up` / `make down` leave and stop a stack. */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { REPO } from '../src/harness/paths';
import { freePort } from '../src/harness/ports';
import { chat } from '../src/harness/http';

const run = promisify(execFile);
const node = (script: string, args: string[] = [], env: Record<string, string> = {}) =>
  run(process.execPath, [path.join(REPO, 'e2e/dist', script), ...args], { env: { ...process.env, ...env }, timeout: 60000 });

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test('the demo plays the seed scenario and stops everything it started', async () => {
  const { stdout } = await node('demo.js');
  expect(stdout).toContain('#1 regular-user: 200 from the LLM, usage 105 tokens (prompt 10, completion 95) -> bucket 95');
  expect(stdout).toContain('#2 regular-user: 200 from the LLM, usage 105 tokens (prompt 10, completion 95) -> bucket -10');
  expect(stdout).toMatch(/#3 regular-user: 429 "regular-user is being rate-limited \(limit 200 tokens; enough tokens again in \d+ s\)" \(answered by Envoy; the LLM was not called\)/);
  expect(stdout).toContain('#10 subscriber: 200 from the LLM');
  expect(stdout).toContain('#11 subscriber: 429 "subscriber is being rate-limited (limit 1000 tokens;');
  expect(stdout).toContain('regular-user to api.other.example: 200');
  const ports = [...stdout.matchAll(/:(\d{2,5})\b/g)].map((m) => Number(m[1]));
  expect(ports.length).toBeGreaterThan(2);
  // Stopped: nothing listens on the ports the demo printed any more.
  for (const p of new Set(ports)) await expect(chat(p, 'dashscope.aliyuncs.com')).rejects.toThrow();
});

test('up leaves the stack running for curl; down stops every process it started', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-up-'));
  const port = await freePort();
  const env = { STACK_RUN_DIR: dir, ENVOY_PORT: String(port) };
  try {
    const up = await node('stack-cli.js', ['up'], env);
    expect(up.stdout).toContain(`Envoy :${port}`);
    const pids: Record<string, number> = JSON.parse(fs.readFileSync(path.join(dir, 'stack.json'), 'utf8'));
    expect(Object.keys(pids).sort()).toEqual(['envoy', 'mockLlm', 'service']);
    for (const pid of Object.values(pids)) expect(alive(pid)).toBe(true);

    const r = await chat(port, 'dashscope.aliyuncs.com', { 'user-type': 'regular-user' });
    expect(r.status).toBe(200);
    await expect(node('stack-cli.js', ['up'], env)).rejects.toThrow(/already up/);

    const down = await node('stack-cli.js', ['down'], env);
    expect(down.stdout).toMatch(/stopped envoy/);
    for (const pid of Object.values(pids)) expect(alive(pid)).toBe(false);
    expect(fs.existsSync(path.join(dir, 'stack.json'))).toBe(false);
  } finally {
    await node('stack-cli.js', ['down'], env).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
