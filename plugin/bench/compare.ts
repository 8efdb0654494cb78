/**
 * A/B micro-benchmark of two plugin builds in one process (same emulator, same bodies,
 * alternating rounds, best round kept per build): the response-body work on the formats of
 * bench.ts. Used to check that a scanner change costs no more than it should.
 *   npm run bench -w plugin   (compiles this too), then
 *   node build/bench-js/bench/compare.js <old plugin.wasm> [new plugin.wasm]
 */
import * as fs from 'fs';
import { ProxyWasmHost, HeaderList, defaultWasmPath } from '../emulator/host';
import { jsonBody, sseBody, anthropicSse, chunks } from './bodies';

const CONFIG = {
  matches: [{ host: { exact: 'dashscope.aliyuncs.com' } }],
  rateLimitKeys: ['{{request.headers.user-type}}'],
  rateLimitService: { service: 'asm-llm-token-rate-limit-example.default.svc.cluster.local', port: 80 },
};
const ALLOW = { status: 200, body: '{"allow":true,"description":"ok"}' };
const REQ: HeaderList = [
  [':method', 'POST'],
  [':path', '/v1/chat/completions'],
  [':authority', 'dashscope.aliyuncs.com'],
  ['content-type', 'application/json'],
  ['user-type', 'regular-user'],
];

interface Scenario {
  name: string;
  n: number;
  body: Buffer;
  contentType: string;
  chunk: number;
}

/** Plugin's own ns in the response-body callbacks for `per` requests. */
function round(h: ProxyWasmHost, sc: Scenario, per: number): number {
  const parts = chunks(sc.body, sc.chunk);
  let t = 0n;
  for (let k = 0; k < per; k++) {
    const s = h.newStream();
    s.sendRequestHeaders(REQ);
    h.reply(h.pendingCalls()[0].token, ALLOW);
    s.sendRequestBody('{"messages":[{"role":"user","content":"hi"}]}', true);
    s.sendResponseHeaders([
      [':status', '200'],
      ['content-type', sc.contentType],
    ]);
    const c0 = h.callNs,
      h0 = h.hostNs;
    for (let i = 0; i < parts.length; i++) s.sendResponseBody(parts[i], i === parts.length - 1);
    t += h.callNs - c0 - (h.hostNs - h0);
    s.end();
    const p = h.pendingCalls();
    if (p.length !== 1) throw new Error(`${sc.name}: expected one usage report, got ${p.length}`);
    h.reply(p[0].token, { status: 200 });
  }
  if (h.trapped) throw h.trapped;
  return Number(t) / per;
}

function main() {
  const oldPath = process.argv[2];
  const newPath = process.argv[3] ?? defaultWasmPath();
  if (!oldPath) throw new Error('usage: compare.js <old plugin.wasm> [new plugin.wasm]');
  const builds = [
    ['old', oldPath],
    ['new', newPath],
  ].map(([name, p]) => ({ name, module: new WebAssembly.Module(fs.readFileSync(p)) }));
  const scenarios: Scenario[] = [
    { name: '2 KB JSON', n: 4000, body: jsonBody(2048), contentType: 'application/json', chunk: 16384 },
    { name: '64 KB JSON', n: 600, body: jsonBody(65536), contentType: 'application/json', chunk: 16384 },
    { name: '1 MB JSON', n: 60, body: jsonBody(1 << 20), contentType: 'application/json', chunk: 16384 },
    { name: '4 MB JSON', n: 15, body: jsonBody(4 << 20), contentType: 'application/json', chunk: 16384 },
    { name: 'SSE 1,000 events, 1 KB chunks', n: 150, body: sseBody(1000), contentType: 'text/event-stream', chunk: 1024 },
    { name: 'SSE 1,000 events, 16 KB chunks', n: 150, body: sseBody(1000), contentType: 'text/event-stream', chunk: 16384 },
    { name: 'Anthropic SSE 1,000 events', n: 150, body: anthropicSse(1000), contentType: 'text/event-stream', chunk: 16384 },
  ];
  const ROUNDS = 7;
  console.log(`A/B: old = ${oldPath}, new = ${newPath} (Node ${process.version}); plugin ns/byte in body callbacks, best of ${ROUNDS} alternating rounds`);
  console.log('  scenario                           old ns/B   new ns/B   new/old');
  const out: any[] = [];
  for (const sc of scenarios) {
    const hosts = builds.map((b) => {
      const h = new ProxyWasmHost({ timeHostCalls: true }, b.module);
      if (!h.configure(CONFIG)) throw new Error('configure');
      return h;
    });
    const per = Math.max(1, Math.floor(sc.n / ROUNDS));
    hosts.forEach((h) => round(h, sc, Math.min(100, sc.n))); // warm-up
    const best = [Infinity, Infinity];
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < 2; i++) {
        const j = (r + i) % 2; // alternate which build goes first
        best[j] = Math.min(best[j], round(hosts[j], sc, per));
      }
    }
    const [o, nw] = best.map((x) => x / sc.body.length);
    out.push({ scenario: sc.name, bytes: sc.body.length, oldNsPerByte: o, newNsPerByte: nw, ratio: nw / o });
    console.log(`  ${sc.name.padEnd(34)} ${o.toFixed(3).padStart(8)}   ${nw.toFixed(3).padStart(8)}   ${(nw / o).toFixed(3)}`);
  }
  if (process.env.COMPARE_OUT)
    fs.writeFileSync(process.env.COMPARE_OUT, JSON.stringify({ date: new Date().toISOString(), node: process.version, results: out }, null, 2));
}

main();
