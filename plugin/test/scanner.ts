/**
 * The usage scanner alone (test-harness/usage-harness.ts compiled to a temporary .wasm): lets tests read
 * the parts the report does not carry yet (cache reads/writes, reasoning) and the event-stream
 * decoder's counters. An AssemblyScript abort (a trap in Envoy) throws here.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';

const ROOT = path.join(__dirname, '..');

export function compileHarness(): WebAssembly.Module {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'usage-harness-')), 'harness.wasm');
  const asc = path.join(ROOT, '..', 'node_modules', '.bin', 'asc');
  execFileSync(asc, ['test-harness/usage-harness.ts', '-b', out, '-O3', '--runtime', 'full'], { cwd: ROOT, stdio: 'pipe' });
  const m = new WebAssembly.Module(fs.readFileSync(out));
  fs.rmSync(path.dirname(out), { recursive: true, force: true });
  return m;
}

export interface Parts {
  found: boolean;
  prompt: number;
  completion: number;
  total: number;
  cacheRead: number;
  cacheWrite: number;
  reasoning: number;
  tooLarge: number;
  textChars: number;
  mode: number;
  provisional: boolean;
}

export class Scanner {
  private ex: any;
  constructor(m: WebAssembly.Module) {
    const inst = new WebAssembly.Instance(m, {
      env: {
        abort: () => {
          throw new Error('AssemblyScript abort (would trap the VM)');
        },
      },
    });
    this.ex = inst.exports;
  }
  memoryBytes(): number {
    return (this.ex.memory as WebAssembly.Memory).buffer.byteLength;
  }
  private put(b: Uint8Array): void {
    const p = this.ex.inputBuffer(b.length);
    new Uint8Array((this.ex.memory as WebAssembly.Memory).buffer, p, b.length).set(b);
  }
  begin(contentType: string | null, maxBuf = 16384, countText = false): this {
    if (contentType === null) this.ex.begin(-1, maxBuf, countText ? 1 : 0);
    else {
      this.put(Buffer.from(contentType));
      this.ex.begin(Buffer.byteLength(contentType), maxBuf, countText ? 1 : 0);
    }
    return this;
  }
  feed(b: Uint8Array): this {
    this.put(b);
    this.ex.feed(b.length);
    return this;
  }
  get(what: number): number {
    return this.ex.get(what);
  }
  /** The SSE line reader's trace for the body fed in these chunks: data bytes, "\n" per data line end, "|" per event end. */
  sseTrace(chunks: Uint8Array[]): string {
    this.ex.sseBegin();
    let n = 0;
    for (const c of chunks) {
      this.put(c);
      n = this.ex.sseFeed(c.length);
    }
    return Buffer.from(new Uint8Array((this.ex.memory as WebAssembly.Memory).buffer, this.ex.sseTrace(), n)).toString('latin1');
  }
  parts(): Parts {
    const g = (i: number) => this.ex.get(i);
    return {
      found: g(0) === 1,
      prompt: g(1),
      completion: g(2),
      total: g(3),
      cacheRead: g(4),
      cacheWrite: g(5),
      reasoning: g(6),
      tooLarge: g(7),
      textChars: g(8),
      mode: g(9),
      provisional: g(14) === 1,
    };
  }
  decoder(): { messages: number; badCrc: number; oversized: number; resyncBytes: number } {
    return { messages: this.get(10), badCrc: this.get(11), oversized: this.get(12), resyncBytes: this.get(13) };
  }
}
