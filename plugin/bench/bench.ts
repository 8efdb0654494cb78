/**
 * Plugin micro-benchmark through the host emulator (no Envoy). Times the calls into the
 * wasm module (which include the emulator's host functions the plugin calls back into).
 *   npm run bench -w plugin   ->  prints a table, writes build/bench-results.json
 */
import * as fs from 'fs';
import * as path from 'path';
import { ProxyWasmHost, HeaderList } from '../emulator/host';

const CONFIG = {
  matches: [{ host: { exact: 'dashscope.aliyuncs.com' } }],
  rateLimitKeys: ['{{request.headers.user-type}}'],
  rateLimitService: { service: 'asm-llm-token-rate-limit-example.default.svc.cluster.local', port: 80 },
};
const ALLOW = { status: 200, body: '{"allow":true,"description":"ok"}' };
const CHUNK = 16384; // Envoy typically hands bodies over in chunks of this order

function req(host: string): HeaderList {
  return [[':method', 'POST'], [':path', '/v1/chat/completions'], [':authority', host],
    ['content-type', 'application/json'], ['user-type', 'regular-user'], ['accept-encoding', 'gzip']];
}

function jsonBody(size: number): Buffer {
  const tail = '"}}],"usage":{"prompt_tokens":10,"completion_tokens":95,"total_tokens":105}}';
  const head = '{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"';
  const fill = Math.max(0, size - head.length - tail.length);
  // Realistic content: text with escapes and multi-byte characters.
  const unit = 'Hello, \\"world\\" 通义千问 ';
  let content = unit.repeat(Math.ceil(fill / Buffer.byteLength(unit)));
  let b = Buffer.from(head + content + tail);
  if (b.length > size) b = Buffer.concat([b.subarray(0, head.length + fill), Buffer.from(tail)]);
  return b;
}

function sseBody(events: number): Buffer {
  let s = '';
  for (let i = 0; i < events; i++) {
    s += `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"token ${i} 通义"}}],"usage":null}\n\n`;
  }
  s += 'data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":1000,"total_tokens":1010}}\n\ndata: [DONE]\n\n';
  return Buffer.from(s);
}

function chunks(b: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
}

interface Result { name: string; requests: number; usPerRequest: number; responseBytes: number; bodyNsPerByte?: number }

function run(name: string, n: number, matched: boolean, body: Buffer | null, contentType = 'application/json', chunkSize = CHUNK): Result {
  const h = new ProxyWasmHost();
  if (!h.configure(CONFIG)) throw new Error('configure failed');
  const parts = body ? chunks(body, chunkSize) : [Buffer.from('{"ok":true}')];
  const once = (): [bigint, bigint] => {
    const t0 = process.hrtime.bigint();
    const s = h.newStream();
    s.sendRequestHeaders(req(matched ? 'dashscope.aliyuncs.com' : 'example.com'));
    if (matched) h.reply(h.pendingCalls()[0].token, ALLOW);
    s.sendRequestBody('{"messages":[{"role":"user","content":"hi"}]}', true);
    s.sendResponseHeaders([[':status', '200'], ['content-type', contentType]]);
    const b0 = process.hrtime.bigint();
    for (let i = 0; i < parts.length; i++) s.sendResponseBody(parts[i], i === parts.length - 1);
    const b1 = process.hrtime.bigint();
    s.end();
    if (matched) {
      const p = h.pendingCalls();
      if (p.length !== 1) throw new Error(`${name}: expected one usage report, got ${p.length}`);
      h.reply(p[0].token, { status: 200 });
    }
    return [process.hrtime.bigint() - t0, b1 - b0];
  };
  for (let i = 0; i < Math.min(200, n); i++) once(); // warm up (JIT tiers)
  let total = 0n, bodyT = 0n;
  for (let i = 0; i < n; i++) {
    const [t, b] = once();
    total += t;
    bodyT += b;
  }
  if (h.trapped) throw h.trapped;
  const bytes = parts.reduce((a, p) => a + p.length, 0);
  return {
    name, requests: n, responseBytes: bytes,
    usPerRequest: Number(total) / n / 1000,
    bodyNsPerByte: body ? Number(bodyT) / n / bytes : undefined,
  };
}

function main() {
  const results: Result[] = [
    run('unmatched request (full stream)', 20000, false, null),
    run('matched, 2 KB JSON response', 5000, true, jsonBody(2048)),
    run('matched, 64 KB JSON response', 1000, true, jsonBody(65536)),
    run('matched, 1 MB JSON response', 100, true, jsonBody(1 << 20)),
    run('matched, 4 MB JSON response', 25, true, jsonBody(4 << 20)),
    run('matched, SSE 1,000 events', 200, true, sseBody(1000), 'text/event-stream', 1024),
  ];
  const byName = (s: string) => results.find((r) => r.name.includes(s))!;
  const linearity = {
    note: 'response-body scan cost per byte; equal values = cost linear in body size',
    nsPerByte2KB: byName('2 KB').bodyNsPerByte,
    nsPerByte1MB: byName('1 MB').bodyNsPerByte,
    nsPerByte4MB: byName('4 MB').bodyNsPerByte,
    ratio4MBto1MB: byName('4 MB').bodyNsPerByte! / byName('1 MB').bodyNsPerByte!,
  };
  console.log('Plugin benchmark (host emulator, Node ' + process.version + '; times include emulator host functions)');
  for (const r of results) {
    console.log(`  ${r.name.padEnd(36)} ${r.usPerRequest.toFixed(1).padStart(9)} µs/request` +
      (r.bodyNsPerByte !== undefined ? `   body scan ${r.bodyNsPerByte.toFixed(2)} ns/byte` : ''));
  }
  console.log(`  linearity: 4 MB vs 1 MB per-byte ratio ${linearity.ratio4MBto1MB.toFixed(2)} (1.00 = linear)`);
  const out = path.resolve(__dirname, '..', '..', 'bench-results.json');
  fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, results, linearity }, null, 2));
  console.log(`  written to ${path.relative(process.cwd(), out)}`);
}

main();
