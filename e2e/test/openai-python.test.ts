/**
 * The official Python `openai` client (installed into .venv by `make pyclients`) through Envoy:
 * what a person sees at the limit — the exception carries our message, and a long wait fails at
 * once instead of the SDK sleeping through it.
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { startStack, Stack } from '../src/harness/stack';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';
import { REPO } from '../src/harness/paths';

const PYTHON = path.join(REPO, '.venv/bin/python');

// One call with the SDK; prints what the caller sees as one JSON line.
const SCRIPT = `
import json, sys, time, openai
port, user, usage, retries = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = openai.OpenAI(api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=retries,
                       default_headers={"user-type": user, "x-mock-usage": usage})
t0 = time.time()
try:
    r = client.chat.completions.create(model="qwen-plus", messages=[{"role": "user", "content": "hi"}])
    print(json.dumps({"ok": True, "total": r.usage.total_tokens, "s": time.time() - t0}))
except openai.RateLimitError as e:
    print(json.dumps({"ok": False, "str": str(e), "message": e.body.get("message") if isinstance(e.body, dict) else None,
                      "code": e.code, "type": e.type, "s": time.time() - t0}))
`;

function py(args: string[]): Promise<any> {
  return new Promise((resolve, reject) => {
    execFile(PYTHON, ['-c', SCRIPT, ...args], { timeout: 20000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!));
    });
  });
}

let stack: Stack;
beforeAll(async () => {
  if (!fs.existsSync(PYTHON)) throw new Error(`${PYTHON} not found: run \`make pyclients\` (installs the openai Python SDK into .venv)`);
  stack = await startStack({
    rules: [{ rate_limit_key_regex: '^py-', redis_expired_seconds: 3600, fill_interval_second: 60, tokens_per_fill: 10, max_tokens: 300 }],
    pluginConfig: { rateLimitKeys: ['{{request.headers.user-type}}'], rateLimitService: { service: RLS_SERVICE, port: RLS_PORT } },
  });
});
afterAll(() => stack?.stop());

const settle = () => new Promise((r) => setTimeout(r, 300)); // the asynchronous report lands

test('the RateLimitError says which key is limited, its limit and when it refills (not just "Error code: 429")', async () => {
  expect((await py([String(stack.envoy.port), 'py-a', '10,290', '0'])).ok).toBe(true);
  await settle();
  const r = await py([String(stack.envoy.port), 'py-a', '10,95', '0']);
  expect(r.ok).toBe(false);
  expect(r.message).toMatch(/^py-a is being rate-limited \(limit 300 tokens; enough tokens again in \d+ s\)$/);
  expect(r.str).toContain('py-a is being rate-limited');
  expect([r.type, r.code]).toEqual(['tokens', 'rate_limit_exceeded']);
});

test('a long wait: the SDK gets x-should-retry: false and raises at once, with retries on', async () => {
  expect((await py([String(stack.envoy.port), 'py-b', '10,3000', '0'])).ok).toBe(true);
  await settle(); // 300 - 3010: about 272 fills of 60 s away
  const calls = stack.mock!.requests.length;
  const r = await py([String(stack.envoy.port), 'py-b', '10,95', '2']);
  expect(r.ok).toBe(false);
  expect(r.s).toBeLessThan(2);
  expect(stack.mock!.requests.length).toBe(calls);
});
