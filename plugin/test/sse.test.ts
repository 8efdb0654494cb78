/** The SSE line reader (assembly/sse.ts) on its own, through the scanner harness. */
import { compileHarness, Scanner } from './scanner';
import { prng } from './helpers';

let sc: Scanner;
beforeAll(() => {
  sc = new Scanner(compileHarness());
});

const trace = (body: string, chunks?: number[]) => {
  const b = Buffer.from(body, 'latin1');
  if (!chunks) return sc.sseTrace([b]);
  const parts: Buffer[] = [];
  let i = 0;
  for (const n of chunks) {
    parts.push(b.subarray(i, i + n));
    i += n;
  }
  parts.push(b.subarray(i));
  return sc.sseTrace(parts);
};

describe('SSE line reader', () => {
  test('data values, line ends and event ends; other fields and comments skipped', () => {
    expect(trace('event: x\ndata: {"a":1}\nid: 7\n: comment\n\ndata:{"b":2}\n\n')).toBe('{"a":1}\n|{"b":2}\n|');
  });

  test('one optional space after "data:"; a data value on several lines keeps its line breaks', () => {
    expect(trace('data:  two spaces\ndata: {"a":\ndata: 1}\n\n')).toBe(' two spaces\n{"a":\n1}\n|');
  });

  test('LF, CRLF and CR end lines alike, also when a CRLF is split across chunks', () => {
    const want = 'x\n|y\n|';
    expect(trace('data: x\n\ndata: y\n\n')).toBe(want);
    expect(trace('data: x\r\n\r\ndata: y\r\n\r\n')).toBe(want);
    expect(trace('data: x\r\rdata: y\r\r')).toBe(want);
    expect(trace('data: x\r\n\r\ndata: y\r\n\r\n', [7, 1, 1, 1])).toBe(want);
  });

  test('a field name longer than "data" or merely starting with it is not data', () => {
    expect(trace('datax: no\ndatadatadata: no\ndata: yes\n\n')).toBe('yes\n|');
  });

  test('split anywhere (every byte, random chunks), the trace is the same', () => {
    const body =
      'event: message_start\r\ndata: {"type":"message_start","message":{"usage":{"input_tokens":12}}}\r\n\r\n' +
      ': keep-alive\n\ndata: {"x":"\u00e4\u00f6"}\ndata: [DONE]\n\n';
    const whole = trace(body);
    expect(
      trace(
        body,
        Array.from({ length: body.length }, () => 1),
      ),
    ).toBe(whole);
    const rand = prng(11);
    for (let k = 0; k < 50; k++) {
      const cuts: number[] = [];
      let left = body.length;
      while (left > 0) {
        const n = 1 + Math.floor(rand() * 20);
        cuts.push(n);
        left -= n;
      }
      expect(trace(body, cuts)).toBe(whole);
    }
  });
});
