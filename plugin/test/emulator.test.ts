// The emulator itself: the ABI wire formats it speaks must be the real ones.
import { serializeHeaders, parseHeaders, ProxyWasmHost, Trap } from './helpers';

describe('host emulator', () => {
  test('header map wire format: u32 count, (u32 key len, u32 value len)*, key\\0 value\\0 ...', () => {
    const b = serializeHeaders([
      [':status', '200'],
      ['a', ''],
    ]);
    const expected = Buffer.concat([
      Buffer.from([2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from(':status\u0000200\u0000a\u0000\u0000', 'latin1'),
    ]);
    expect(b.equals(expected)).toBe(true);
    expect(parseHeaders(b)).toEqual([
      [':status', '200'],
      ['a', ''],
    ]);
    expect(parseHeaders(Buffer.alloc(0))).toEqual([]);
  });

  test('malformed header maps are rejected (a plugin bug must not pass silently)', () => {
    const b = serializeHeaders([['k', 'v']]);
    const noNul = Buffer.from(b);
    noNul[noNul.length - 1] = 0x41;
    expect(() => parseHeaders(noNul)).toThrow(/NUL/);
    expect(() => parseHeaders(Buffer.concat([b, Buffer.from([0])]))).toThrow(/trailing/);
  });

  test('an AssemblyScript abort (proc_exit) surfaces as a Trap and kills the VM', () => {
    const h = new ProxyWasmHost();
    expect(() => h.call('abort_proc_exit', 0, 0, 0, 1, 2)).toThrow(Trap);
    expect(h.logsAt(5)[0]).toMatch(/llm-token-ratelimit: abort/);
    expect(() => h.configure({})).toThrow(/VM already failed/);
  });

  test('calls into a trapped VM fail', () => {
    const h = new ProxyWasmHost();
    h.configure({ rateLimitKeys: ['k'], rateLimitService: { cluster: 'c' }, matches: [] });
    (h as any).trapped = new Trap('simulated');
    expect(() => h.newStream()).toThrow(/VM already failed/);
  });
});
