/**
 * A sample of the plugin's usage fixture corpus (plugin/test/fixtures) through the real Envoy:
 * an upstream serves each recorded-format response in small chunks with its content-type
 * (JSON, SSE, AWS event stream), and the key is charged the total the fixture expects.
 */
import * as fs from 'fs';
import * as http from 'http';
import { AddressInfo } from 'net';
import * as path from 'path';
import { startStack, Stack } from '../src/harness/stack';
import { request } from '../src/harness/http';
import { withCharge } from '../src/harness/service';

const HOST = 'dashscope.aliyuncs.com';
const FIXTURES = path.join(__dirname, '..', '..', 'plugin', 'test', 'fixtures');
const CAPACITY = 1000000000;
const RULES = [{ rate_limit_key_regex: '^fmt-', redis_expired_seconds: 7200, fill_interval_second: 3600, tokens_per_fill: 1, max_tokens: CAPACITY }];
const SAMPLE = [
  'anthropic-stream-cache.sse',
  'anthropic-compaction.json',
  'gemini-thinking.json',
  'xai-chat-reasoning.json',
  'cohere-v2-stream.sse',
  'groq-stream-x_groq.sse',
  'bedrock-converse-cache.json',
  'bedrock-converse-stream.events.json',
  'bedrock-invoke-stream-anthropic.events.json',
];
const expected: any[] = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8'));

function fixtureBytes(file: string): Buffer {
  return fs.readFileSync(path.join(FIXTURES, file.replace(/\.events\.json$/, '.bin')));
}

let upstream: http.Server;
let stack: Stack;
beforeAll(async () => {
  // Serves the fixture named by x-fixture, 61 bytes at a time with a pause between writes, so
  // Envoy hands the plugin many body chunks cut at arbitrary places.
  upstream = http.createServer((req, res) => {
    req.resume();
    req.on('end', async () => {
      const file = String(req.headers['x-fixture'] ?? '');
      const f = expected.find((x) => x.file === file);
      if (!f) {
        res.writeHead(404);
        res.end();
        return;
      }
      const body = fixtureBytes(file);
      res.writeHead(200, { 'content-type': f.contentType });
      for (let i = 0; i < body.length; i += 61) {
        res.write(body.subarray(i, i + 61));
        await new Promise((r) => setTimeout(r, 2));
      }
      res.end();
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  stack = await startStack({ rules: RULES, upstream: { host: '127.0.0.1', port: (upstream.address() as AddressInfo).port } });
}, 60000);
afterAll(async () => {
  await stack?.stop();
  await new Promise((r) => upstream?.close(r));
});

test.each(SAMPLE.map((f, i) => [f, i]))('%s is charged its billed total through Envoy', async (file, i) => {
  const f = expected.find((x) => x.file === file);
  const key = `fmt-${i}`;
  const { result: r, spent } = await withCharge(stack.service.port, key, CAPACITY, () =>
    request(stack.envoy.port, {
      method: 'POST',
      path: '/v1/chat/completions',
      headers: { host: HOST, 'user-type': key, 'x-fixture': String(file), 'content-type': 'application/json' },
      body: '{}',
    }),
  );
  expect(r.status).toBe(200);
  expect(Buffer.byteLength(r.body, 'latin1')).toBeGreaterThan(0);
  expect(spent).toBe(f.expected.total);
});
