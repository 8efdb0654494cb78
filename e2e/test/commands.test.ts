/** The README's run commands: `make demo` prints the seed scenario; `make up` / `make down` leave and stop a stack. */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { promisify } from 'util';
import { REPO } from '../src/harness/paths';
import { chat, request } from '../src/harness/http';
import { alive, waitFor } from '../src/harness/process';

const run = promisify(execFile);
const node = (script: string, args: string[] = [], env: Record<string, string> = {}) =>
  run(process.execPath, [path.join(REPO, 'e2e/dist', script), ...args], { env: { ...process.env, ...env }, timeout: 60000 });

test('the demo plays the seed scenario and stops everything it started', async () => {
  const { stdout } = await node('demo.js');
  expect(stdout).toContain('#1 regular-user: 200 from the LLM, usage 105 tokens (prompt 10, completion 95) -> bucket 95');
  expect(stdout).toContain('#2 regular-user: 200 from the LLM, usage 105 tokens (prompt 10, completion 95) -> bucket -10');
  expect(stdout).toMatch(
    /#3 regular-user: 429 "regular-user is being rate-limited \(limit 200 tokens; enough tokens again in \d+ s\)" \(answered by Envoy; the LLM was not called\)/,
  );
  expect(stdout).toContain('#10 subscriber: 200 from the LLM');
  expect(stdout).toContain('#11 subscriber: 429 "subscriber is being rate-limited (limit 1000 tokens;');
  expect(stdout).toContain('regular-user to api.other.example: 200');
  const ports = [...stdout.matchAll(/:(\d{2,5})\b/g)].map((m) => Number(m[1]));
  expect(ports.length).toBeGreaterThan(2);
  // Stopped: nothing listens on the ports the demo printed any more.
  for (const p of new Set(ports)) await expect(chat(p, 'dashscope.aliyuncs.com')).rejects.toThrow();
});

/** The port `up` says Envoy listens on (ENVOY_PORT=0: the one Envoy took). */
function envoyPortOf(stdout: string): number {
  const m = /Stack is up .*Envoy :(\d+),/.exec(stdout);
  if (!m) throw new Error(`no "Envoy :port" in the output of up:\n${stdout}`);
  return Number(m[1]);
}

describe('make up / make down', () => {
  let dir: string;
  let env: Record<string, string>;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmrl-up-'));
    // The registry of stacks in the temp dir too: `down` must not touch a stack a developer left up.
    env = { STACK_RUN_DIR: path.join(dir, 'run'), STACK_REGISTRY: path.join(dir, 'stacks.json') };
  });
  afterEach(async () => {
    await node('stack-cli.js', ['down'], env).catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the default (an OpenAI-compatible upstream): the printed SDK command works as printed, then a key is limited; down stops every process', async () => {
    env.ENVOY_PORT = '0'; // Envoy takes a free port and `up` prints it
    const up = await node('stack-cli.js', ['up'], env);
    const port = envoyPortOf(up.stdout);
    // Each process took its own port: Envoy, its admin, the service, its admin, the mock LLM.
    const taken = /Envoy :(\d+), admin :(\d+), service :(\d+) \(admin :(\d+)\), LLM http:\/\/127\.0\.0\.1:(\d+)/.exec(up.stdout)!.slice(1);
    expect(new Set(taken).size).toBe(5);
    expect(up.stdout).toContain(`curl -i http://127.0.0.1:${port}/v1/chat/completions -H 'authorization: Bearer sk-alice'`);
    const pids: Record<string, number> = JSON.parse(fs.readFileSync(path.join(env.STACK_RUN_DIR, 'stack.json'), 'utf8'));
    expect(Object.keys(pids).sort()).toEqual(['envoy', 'mockLlm', 'service']);
    for (const pid of Object.values(pids)) expect(alive(pid)).toBe(true);

    // The SDK line, exactly as printed, from the repository's root.
    const sdk = up.stdout
      .split('\n')
      .find((l) => l.trim().startsWith('node -e'))!
      .trim();
    const first = await run('sh', ['-c', sdk], { cwd: REPO, timeout: 20000 });
    expect(first.stdout.trim()).toBe('usage {"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}');
    // The printed balance command (as a request: its URL and admin token).
    const m = /curl -H 'Authorization: Bearer ([^']+)' http:\/\/127\.0\.0\.1:(\d+)(\/buckets\/\S+)/.exec(up.stdout)!;
    const balance = async () => JSON.parse((await request(Number(m[2]), { path: m[3], headers: { authorization: `Bearer ${m[1]}` } })).body).balance;
    await waitFor('the charge', async () => ((await balance()) === 300 - 105 ? true : undefined), 5000);
    // 300 tokens per key: two more answers, then the SDK's RateLimitError with our message.
    let out = '';
    for (let i = 0; i < 5 && !out.startsWith('error'); i++) {
      out = (await run('sh', ['-c', sdk], { cwd: REPO, timeout: 20000 })).stdout.trim();
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(out).toMatch(/^error 429 429 apikey-[0-9A-F]{32} is being rate-limited \(limit 300 tokens; enough tokens again in \d+ s\)$/);
    // Another API key is another bucket.
    const bob = await run('sh', ['-c', sdk.replace('sk-alice', 'sk-bob')], { cwd: REPO, timeout: 20000 });
    expect(bob.stdout).toContain('usage');

    await expect(node('stack-cli.js', ['up'], env)).rejects.toThrow(/already up/);
    // down without STACK_RUN_DIR finds the stack through the registry.
    const down = await node('stack-cli.js', ['down'], { STACK_REGISTRY: env.STACK_REGISTRY });
    expect(down.stdout).toMatch(/stopped envoy/);
    for (const pid of Object.values(pids)) expect(alive(pid)).toBe(false);
    expect(fs.existsSync(path.join(env.STACK_RUN_DIR, 'stack.json'))).toBe(false);
    expect(fs.existsSync(env.STACK_REGISTRY)).toBe(false);
  });

  test('PLUGIN_CONFIG and RULES: the seed pair, the printed curl carries its Host and user-type', async () => {
    Object.assign(env, {
      ENVOY_PORT: '0',
      PLUGIN_CONFIG: path.join(REPO, 'e2e/config/plugin-config.json'),
      RULES: path.join(REPO, 'e2e/config/rate-limit-config.json'),
    });
    const up = await node('stack-cli.js', ['up'], env);
    const port = envoyPortOf(up.stdout);
    expect(up.stdout).toContain("-H 'Host: dashscope.aliyuncs.com' -H 'user-type: regular-user'");
    expect(up.stdout).toContain('cannot set Host');
    const r = await chat(port, 'dashscope.aliyuncs.com', { 'user-type': 'regular-user' });
    expect(r.status).toBe(200);
    expect(up.stdout).toContain('/buckets/regular-user');
  });

  test('a missing file, a bad ENVOY_PORT, or a plugin config Envoy refuses: a clear error, nothing left running', async () => {
    await expect(node('stack-cli.js', ['up'], { ...env, PLUGIN_CONFIG: '/nonexistent.json' })).rejects.toThrow(
      /PLUGIN_CONFIG=\/nonexistent.json: no such file/,
    );
    await expect(node('stack-cli.js', ['up'], { ...env, ENVOY_PORT: '10000x' })).rejects.toThrow(/ENVOY_PORT=10000x: must be a port number 0-65535/);
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ rateLimitKeys: ['{{nope}}'], rateLimitService: { cluster: 'x' } }));
    const err = await node('stack-cli.js', ['up'], { ...env, ENVOY_PORT: '0', PLUGIN_CONFIG: bad }).catch((e) => e);
    expect(String(err.stderr)).toContain('invalid pluginConfig: rateLimitKeys[0]: unknown template variable "nope"');
    expect(fs.existsSync(path.join(env.STACK_RUN_DIR, 'stack.json'))).toBe(false);
  });
});
