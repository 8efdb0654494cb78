// The scanner on its own (test/scanner.ts): the billed parts of every fixture, and the AWS
// event-stream decoder under bad input (bad CRCs, truncation, huge lengths, garbage), with
// memory bounded and cost linear.
import * as fs from 'fs';
import * as path from 'path';
import { compileHarness, Scanner } from './scanner';
import { buildEventStream, encodeMessage, eventMessage, invokeChunk } from './eventstream';
import { prng } from './helpers';

const DIR = path.join(__dirname, 'fixtures');
const FIXTURES: any[] = JSON.parse(fs.readFileSync(path.join(DIR, 'expected.json'), 'utf8'));
const body = (f: any): Buffer => (f.file.endsWith('.events.json') ? buildEventStream(path.join(DIR, f.file)) : fs.readFileSync(path.join(DIR, f.file)));
const ES = 'application/vnd.amazon.eventstream';

let mod: WebAssembly.Module;
beforeAll(() => {
  mod = compileHarness();
}, 120000);
const scanner = () => new Scanner(mod);

const METADATA = { metrics: { latencyMs: 10 }, usage: { inputTokens: 7, outputTokens: 5, totalTokens: 12 } };
const usageOf = (s: Scanner) => {
  const p = s.parts();
  return p.found ? [p.prompt, p.completion, p.total] : null;
};

describe('billed parts of every fixture', () => {
  test.each(FIXTURES.map((f) => [f.file, f]))('%s', (_n, f: any) => {
    const b = body(f);
    for (const chunks of [[b], [...b].map((x) => Buffer.from([x]))]) {
      const s = scanner().begin(f.contentType);
      for (const c of chunks) s.feed(c);
      const p = s.parts();
      if (f.expected === null) {
        expect(p.found).toBe(false);
        continue;
      }
      // Cut before the final usage: the scanner has message_start's provisional usage (the
      // filter raises it to the estimate, usage-fixtures.test.ts); every other fixture is final.
      expect(p.provisional).toBe(f.expected.estimated === true);
      if (f.expected.estimated) {
        expect([p.prompt, p.completion]).toEqual([f.expected.prompt, 1]);
        continue;
      }
      expect({ prompt: p.prompt, completion: p.completion, total: p.total, cacheRead: p.cacheRead, cacheWrite: p.cacheWrite, reasoning: p.reasoning }).toEqual(
        f.expected,
      );
    }
  });
});

describe('forContentType', () => {
  test('picks the mode from the content-type; JSON bodies starting with 0x00 become event streams', () => {
    expect(scanner().begin('text/event-stream; charset=utf-8').parts().mode).toBe(1);
    expect(scanner().begin('Application/VND.Amazon.EventStream').parts().mode).toBe(2);
    expect(scanner().begin('application/json').parts().mode).toBe(0);
    expect(scanner().begin(null).parts().mode).toBe(0);
    expect(scanner().begin('application/json').feed(eventMessage('metadata', METADATA)).parts().mode).toBe(2);
    expect(scanner().begin('application/json').feed(Buffer.from(' {"usage":{"total_tokens":1}}')).parts().mode).toBe(0);
  });

  test('text counting (estimates) works inside event streams: ConverseStream deltas and base64 Anthropic events', () => {
    const s = scanner()
      .begin(ES, 16384, true)
      .feed(eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'Hello 你好' } }));
    expect(s.parts().textChars).toBe(8);
    s.feed(invokeChunk({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'abc' } }));
    expect(s.parts().textChars).toBe(11);
  });
});

describe('AWS event stream: bad input never traps and never poisons the good frames', () => {
  const good = eventMessage('metadata', METADATA);

  test('a message with a bad trailing CRC is dropped; the next one is read', () => {
    const bad = Buffer.from(good);
    bad[bad.length - 20] ^= 0x01; // payload byte: the message CRC no longer matches
    const s = scanner().begin(ES).feed(bad);
    expect(usageOf(s)).toBeNull();
    expect(s.decoder()).toMatchObject({ messages: 0, badCrc: 1 });
    s.feed(good);
    expect(usageOf(s)).toEqual([7, 5, 12]);
  });

  test('a bad prelude CRC: skipped byte by byte until a valid prelude', () => {
    const bad = Buffer.from(good);
    bad[9] ^= 0xff;
    const s = scanner()
      .begin(ES)
      .feed(Buffer.concat([bad, good]));
    expect(usageOf(s)).toEqual([7, 5, 12]);
    expect(s.decoder().messages).toBe(1);
    expect(s.decoder().resyncBytes).toBeGreaterThan(0);
  });

  test('huge and impossible lengths with a valid prelude CRC are refused (no allocation, no waiting)', () => {
    const s = scanner().begin(ES);
    const mem0 = s.memoryBytes();
    for (const [total, hdr] of [
      [0xffffffff, 0],
      [0x7fffffff, 16],
      [16 * 1024 * 1024 + 1, 0],
      [15, 0],
      [100, 90],
      [1 << 20, 200 * 1024],
    ]) {
      const p = Buffer.alloc(12);
      p.writeUInt32BE(total >>> 0, 0);
      p.writeUInt32BE(hdr, 4);
      p.writeUInt32BE(require('./eventstream').crc32(p.subarray(0, 8)), 8);
      s.feed(p);
    }
    s.feed(good);
    expect(usageOf(s)).toEqual([7, 5, 12]);
    expect(s.memoryBytes()).toBe(mem0);
  });

  test('a large valid frame (payload > maxBufferBytes) is skipped without buffering it', () => {
    const s = scanner().begin(ES, 256);
    const big = eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'x'.repeat(100000) } });
    s.feed(big.subarray(0, 50000));
    const mem = s.memoryBytes();
    s.feed(big.subarray(50000)).feed(good);
    expect(s.memoryBytes()).toBe(mem);
    expect(s.decoder()).toMatchObject({ messages: 2, oversized: 1 });
    expect(usageOf(s)).toEqual([7, 5, 12]);
  });

  test('truncated streams: usage so far, no trap, at every cut', () => {
    const full = buildEventStream(path.join(DIR, 'bedrock-invoke-stream-anthropic.events.json'));
    for (let cut = 0; cut <= full.length; cut += 7) {
      const s = scanner().begin(ES).feed(full.subarray(0, cut));
      const u = usageOf(s);
      if (u === null) continue; // message_start not complete yet
      expect(u[0]).toBe(525);
      expect([1, 60]).toContain(u[1]);
    }
  });

  test('bad base64 and non-JSON payloads are ignored', () => {
    const s = scanner()
      .begin(ES)
      .feed(eventMessage('chunk', { bytes: '!!!not base64!!!' }))
      .feed(eventMessage('chunk', Buffer.from('{"bytes":"eyJ1c2FnZSI6'))) // cut JSON
      .feed(eventMessage('chunk', Buffer.from([0, 1, 2, 0xff, 0x22, 0x7b])))
      .feed(encodeMessage([], Buffer.alloc(0)));
    expect(usageOf(s)).toBeNull();
    s.feed(invokeChunk({ type: 'message_delta', usage: { output_tokens: 3 } }));
    expect(usageOf(s)).toEqual([0, 3, 3]);
  });

  test('generated garbage and mutated streams (seeded): never an abort', () => {
    const rand = prng(18);
    const base = Buffer.concat(FIXTURES.filter((f) => f.file.endsWith('.events.json')).map(body));
    for (let k = 0; k < 400; k++) {
      const b = Buffer.from(base);
      const ops = 1 + Math.floor(rand() * 6);
      for (let i = 0; i < ops; i++) {
        const at = Math.floor(rand() * b.length);
        if (rand() < 0.7) b[at] = Math.floor(rand() * 256);
        else b.writeUInt32BE(Math.floor(rand() * 0xffffffff) >>> 0, Math.min(at, b.length - 4));
      }
      const s = scanner().begin(ES, 256 + Math.floor(rand() * 4096), rand() < 0.5);
      let i = 0;
      while (i < b.length) {
        const n = 1 + Math.floor(rand() * 300);
        s.feed(b.subarray(i, i + n));
        i += n;
      }
      s.parts();
    }
  });
});

describe('memory bounded, cost linear', () => {
  function bigEventStream(mb: number): Buffer {
    const parts: Buffer[] = [];
    let n = 0;
    const text = 'Hello, \\"world\\" 通义千问 '.repeat(40);
    while (n < mb * 1024 * 1024) {
      const m = eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text }, p: 'abcdefgh' });
      parts.push(m);
      n += m.length;
    }
    parts.push(eventMessage('metadata', METADATA));
    return Buffer.concat(parts);
  }
  function timeFeed(contentType: string, b: Buffer, countText: boolean): number {
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const s = scanner().begin(contentType, 16384, countText);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < b.length; i += 16384) s.feed(b.subarray(i, i + 16384));
      const t = Number(process.hrtime.bigint() - t0);
      expect(usageOf(s)).toEqual([7, 5, 12]);
      best = Math.min(best, t);
    }
    return best / b.length;
  }

  test('an 8 MB event stream: memory does not grow after the first MB; ns/byte within 2x of a 1 MB stream (quadratic would be 8x)', () => {
    const small = bigEventStream(1);
    const large = bigEventStream(8);
    const s = scanner().begin(ES, 16384, true);
    s.feed(large.subarray(0, 1 << 20));
    const mem = s.memoryBytes();
    for (let i = 1 << 20; i < large.length; i += 16384) s.feed(large.subarray(i, i + 16384));
    expect(s.memoryBytes()).toBe(mem);
    expect(usageOf(s)).toEqual([7, 5, 12]);
    const a = timeFeed(ES, small, true);
    const b = timeFeed(ES, large, true);
    expect(b / a).toBeLessThan(2);
  }, 60000);

  test('the largest fixtures repeated to 4 MB (SSE and JSON array): memory flat, cost linear', () => {
    for (const file of ['anthropic-compaction-stream.sse', 'gemini-stream-thinking.sse']) {
      const f = FIXTURES.find((x) => x.file === file);
      const one = body(f);
      const big = Buffer.concat(Array(Math.ceil((4 << 20) / one.length)).fill(one));
      const s = scanner().begin(f.contentType);
      s.feed(big.subarray(0, 1 << 20));
      const mem = s.memoryBytes();
      for (let i = 1 << 20; i < big.length; i += 16384) s.feed(big.subarray(i, i + 16384));
      expect(s.memoryBytes()).toBe(mem);
      const p = s.parts();
      expect([p.prompt, p.completion, p.total]).toEqual([f.expected.prompt, f.expected.completion, f.expected.total]);
    }
  }, 60000);
});
