// The fixture corpus (test/fixtures, expected.json): one response per provider and mode, each
// fed whole, split at random boundaries and byte by byte through plugin.wasm in the emulator.
// Set UPDATE_FIXTURES=1 to rewrite the committed *.bin event streams from their *.events.json.
import * as fs from 'fs';
import * as path from 'path';
import { newHost, checkedRequest, respond, reports, prng, ALLOW, ProxyWasmHost } from './helpers';
import { buildEventStream, binPath } from './eventstream';

const DIR = path.join(__dirname, 'fixtures');
// estimated: a stream cut before its final usage (issue 23), charged at least the estimate of what it delivered.
interface Expected {
  prompt: number;
  completion: number;
  total: number;
  cacheRead: number;
  cacheWrite: number;
  reasoning: number;
  estimated?: boolean;
}
interface Fixture {
  file: string;
  contentType: string;
  source: string;
  expected: Expected | null;
}
const FIXTURES: Fixture[] = JSON.parse(fs.readFileSync(path.join(DIR, 'expected.json'), 'utf8'));

export function fixtureBody(f: Fixture): Buffer {
  const p = path.join(DIR, f.file);
  if (!f.file.endsWith('.events.json')) return fs.readFileSync(p);
  const built = buildEventStream(p);
  if (process.env.UPDATE_FIXTURES) fs.writeFileSync(binPath(p), built);
  return built;
}

function report(h: ProxyWasmHost, contentType: string, chunks: Buffer[]): any {
  const before = reports(h).length;
  const s = checkedRequest(h, ALLOW);
  respond(s, contentType, chunks);
  s.end();
  const r = reports(h);
  expect(r.length - before).toBeLessThanOrEqual(1);
  return r.length > before ? r[r.length - 1] : undefined;
}

/** The report a fixture should give: its usage with the billed parts; a format with no usage we know is estimated. */
function want(e: Expected | null): any {
  if (e === null) return expect.objectContaining({ ratelimit_keys: ['regular-user'], prompt_tokens: 0, estimated: true });
  const r: Record<string, unknown> = { ratelimit_keys: ['regular-user'], prompt_tokens: e.prompt, completion_tokens: e.completion, total_tokens: e.total };
  if (e.cacheRead > 0) r.cache_read_tokens = e.cacheRead;
  if (e.cacheWrite > 0) r.cache_write_tokens = e.cacheWrite;
  if (e.reasoning > 0) r.reasoning_tokens = e.reasoning;
  if (e.estimated) r.estimated = true;
  return r;
}

function randomSplits(b: Buffer, rand: () => number): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < b.length) {
    const n = 1 + Math.floor(rand() * (rand() < 0.5 ? 16 : 700));
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

describe('fixture corpus', () => {
  test('every file in fixtures/ is in expected.json, and the committed .bin streams are what the encoder writes', () => {
    const listed = new Set(FIXTURES.map((f) => f.file));
    for (const f of fs.readdirSync(DIR)) {
      if (f === 'expected.json' || f.endsWith('.bin')) continue;
      expect(listed.has(f) ? f : `${f} (not in expected.json)`).toBe(f);
    }
    for (const f of FIXTURES.filter((x) => x.file.endsWith('.events.json'))) {
      const p = path.join(DIR, f.file);
      expect(fs.readFileSync(binPath(p)).equals(buildEventStream(p))).toBe(true);
    }
  });

  test('prompt + completion = total for every fixture with usage', () => {
    for (const f of FIXTURES) if (f.expected) expect([f.file, f.expected.prompt + f.expected.completion]).toEqual([f.file, f.expected.total]);
  });

  test.each(FIXTURES.map((f) => [f.file, f] as [string, Fixture]))('%s: whole', (_n, f) => {
    expect(report(newHost(), f.contentType, [fixtureBody(f)])).toEqual(want(f.expected));
  });

  test.each(FIXTURES.map((f) => [f.file, f] as [string, Fixture]))('%s: 25 random splits', (name, f) => {
    const h = newHost();
    const body = fixtureBody(f);
    const rand = prng(name.length * 7919 + body.length);
    for (let k = 0; k < 25; k++) expect(report(h, f.contentType, randomSplits(body, rand))).toEqual(want(f.expected));
  });

  test.each(FIXTURES.map((f) => [f.file, f] as [string, Fixture]))('%s: byte by byte', (_n, f) => {
    const body = fixtureBody(f);
    expect(
      report(
        newHost(),
        f.contentType,
        [...body].map((x) => Buffer.from([x])),
      ),
    ).toEqual(want(f.expected));
  });

  test('CRLF line ends in every SSE fixture', () => {
    const h = newHost();
    for (const f of FIXTURES.filter((x) => x.contentType === 'text/event-stream')) {
      const body = Buffer.from(fixtureBody(f).toString('utf8').replace(/\n/g, '\r\n'));
      expect([f.file, report(h, f.contentType, [body])]).toEqual([f.file, want(f.expected)]);
    }
  });

  test('event streams are recognised whatever the content-type says (first byte 0x00)', () => {
    const h = newHost();
    for (const f of FIXTURES.filter((x) => x.file.endsWith('.events.json'))) {
      expect([f.file, report(h, 'application/json', [fixtureBody(f)])]).toEqual([f.file, want(f.expected)]);
    }
  });
});

describe('event streams through the plugin', () => {
  test('mutated Bedrock streams (seeded) never trap the VM; memory stays flat', () => {
    const rand = prng(1818);
    const base = Buffer.concat(FIXTURES.filter((f) => f.file.endsWith('.events.json')).map(fixtureBody));
    const h = newHost();
    let mem = 0;
    // Memory after a warm-up of 150 streams (the heap's high-water mark depends on the order of
    // the allocations: a page may be added once early on), then 300 more must not grow it.
    for (let k = 0; k < 450; k++) {
      const b = Buffer.from(base);
      for (let i = 0; i < 1 + Math.floor(rand() * 5); i++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      const s = checkedRequest(h, ALLOW);
      respond(s, 'application/vnd.amazon.eventstream', randomSplits(b, rand));
      s.end();
      for (const c of h.pendingCalls()) h.reply(c.token, { status: 200 });
      if (k === 150) mem = (h.instance.exports.memory as WebAssembly.Memory).buffer.byteLength;
    }
    expect(h.trapped).toBeNull();
    expect((h.instance.exports.memory as WebAssembly.Memory).buffer.byteLength).toBe(mem);
  });
});
