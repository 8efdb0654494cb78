/**
 * The ABI's header-map wire format, in which header maps cross between host and module: a u32
 * count, a (key length, value length) u32 pair per header, then each key and value NUL-terminated.
 */

export type HeaderList = [string, string][];

export function serializeHeaders(h: HeaderList): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4 + 8 * h.length);
  head.writeUInt32LE(h.length, 0);
  h.forEach(([k, v], i) => {
    const kb = Buffer.from(k, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    head.writeUInt32LE(kb.length, 4 + 8 * i);
    head.writeUInt32LE(vb.length, 8 + 8 * i);
    parts.push(kb, Buffer.from([0]), vb, Buffer.from([0]));
  });
  return Buffer.concat([head, ...parts]);
}

/** Parses the ABI header-map wire format; throws on a malformed map (a plugin bug). */
export function parseHeaders(b: Buffer): HeaderList {
  if (b.length === 0) return [];
  const n = b.readUInt32LE(0);
  let off = 4 + 8 * n;
  const out: HeaderList = [];
  for (let i = 0; i < n; i++) {
    const kl = b.readUInt32LE(4 + 8 * i);
    const vl = b.readUInt32LE(8 + 8 * i);
    const k = b.subarray(off, off + kl).toString('latin1');
    off += kl;
    if (b[off] !== 0) throw new Error('header map: key not NUL-terminated');
    off += 1;
    const v = b.subarray(off, off + vl).toString('latin1');
    off += vl;
    if (b[off] !== 0) throw new Error('header map: value not NUL-terminated');
    off += 1;
    out.push([k, v]);
  }
  if (off !== b.length) throw new Error(`header map: ${b.length - off} trailing bytes`);
  return out;
}
