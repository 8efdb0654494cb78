/**
 * AWS event-stream encoder for tests (application/vnd.amazon.eventstream): builds messages with
 * correct prelude and message CRC32s, and the fixture streams described by *.events.json.
 */
import * as fs from 'fs';
import * as path from 'path';

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One message; headers are string-typed (type 7), as AWS writes :event-type and friends. */
export function encodeMessage(headers: [string, string][], payload: Buffer): Buffer {
  const hs = Buffer.concat(
    headers.map(([k, v]) => {
      const kb = Buffer.from(k);
      const vb = Buffer.from(v);
      const b = Buffer.alloc(1 + kb.length + 1 + 2 + vb.length);
      b[0] = kb.length;
      kb.copy(b, 1);
      b[1 + kb.length] = 7;
      b.writeUInt16BE(vb.length, 2 + kb.length);
      vb.copy(b, 4 + kb.length);
      return b;
    }),
  );
  const prelude = Buffer.alloc(12);
  prelude.writeUInt32BE(12 + hs.length + payload.length + 4, 0);
  prelude.writeUInt32BE(hs.length, 4);
  prelude.writeUInt32BE(crc32(prelude.subarray(0, 8)), 8);
  const body = Buffer.concat([prelude, hs, payload]);
  const tail = Buffer.alloc(4);
  tail.writeUInt32BE(crc32(body), 0);
  return Buffer.concat([body, tail]);
}

export function eventMessage(eventType: string, payload: object | Buffer): Buffer {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload));
  return encodeMessage(
    [
      [':event-type', eventType],
      [':content-type', 'application/json'],
      [':message-type', 'event'],
    ],
    p,
  );
}

/** Bedrock InvokeModelWithResponseStream: the event JSON base64-encoded in {"bytes":...}. */
export function invokeChunk(event: object, pad = 'abcdefghijklmnopqrstuvwxyzABCDEF'): Buffer {
  const bytes = Buffer.from(JSON.stringify(event)).toString('base64');
  return eventMessage('chunk', { bytes, p: pad.slice(0, 1 + (bytes.length % pad.length)) });
}

/** The binary stream a *.events.json fixture describes. */
export function buildEventStream(file: string): Buffer {
  const d = JSON.parse(fs.readFileSync(file, 'utf8'));
  return Buffer.concat(d.events.map((e: any) => (d.invoke ? invokeChunk(e) : eventMessage(e.type, e.payload))));
}

/** Path of the committed binary next to a *.events.json fixture. */
export function binPath(file: string): string {
  return path.join(path.dirname(file), path.basename(file).replace(/\.events\.json$/, '.bin'));
}
