// Lazy, cached view of the current request's attributes. Each value is fetched from the
// host at most once per request, and only if a match rule or key template needs it.

import { ByteBuf, hexVal, toLower } from "./bytes";
import { HostBytes, MAP_REQUEST_HEADERS } from "./abi";

const H_AUTHORITY = ByteBuf.fromString(":authority");
const H_PATH = ByteBuf.fromString(":path");
const H_METHOD = ByteBuf.fromString(":method");

const hb = new HostBytes();

/** Request header value (copied out), or null if absent. `name` must be lower case. */
export function requestHeader(name: ByteBuf): ByteBuf | null {
  if (!hb.header(MAP_REQUEST_HEADERS, name)) return null;
  if (hb.ptr == 0) { hb.release(); return new ByteBuf(0); }
  return hb.toBuf();
}

/** Envoy attribute by NUL-separated path, or null if absent. */
export function property(path: ByteBuf): ByteBuf | null {
  if (!hb.property(path)) return null;
  if (hb.ptr == 0) { hb.release(); return new ByteBuf(0); }
  return hb.toBuf();
}

export class RequestView {
  private host_: ByteBuf | null = null;
  private hostDone: bool = false;
  private path_: ByteBuf | null = null;
  private pathDone: bool = false;
  private method_: ByteBuf | null = null;
  private methodDone: bool = false;

  /** Forgets the previous request's values (the view is reused: no allocation per request). */
  reset(): void {
    this.host_ = null;
    this.hostDone = false;
    this.path_ = null;
    this.pathDone = false;
    this.method_ = null;
    this.methodDone = false;
  }

  /** Host without port, lower case (":authority" header). */
  host(): ByteBuf | null {
    if (!this.hostDone) {
      this.hostDone = true;
      this.host_ = hostHeader();
    }
    return this.host_;
  }

  /** Full ":path" including any query. */
  rawPath(): ByteBuf | null {
    if (!this.pathDone) {
      this.pathDone = true;
      this.path_ = requestHeader(H_PATH);
    }
    return this.path_;
  }

  /** Path without query string (and without fragment). */
  path(): ByteBuf | null {
    let p = this.rawPath();
    if (p === null) return null;
    let q = queryStart(p);
    if (q < 0) return p;
    return p.slice(0, q);
  }

  method(): ByteBuf | null {
    if (!this.methodDone) {
      this.methodDone = true;
      this.method_ = requestHeader(H_METHOD);
    }
    return this.method_;
  }

  /** First value of query parameter `name` (percent-decoded, '+' as space), or null. */
  query(name: ByteBuf): ByteBuf | null {
    let p = this.rawPath();
    if (p === null) return null;
    let i = queryStart(p);
    if (i < 0 || p.at(i) != 0x3f) return null;
    i++;
    let n = p.length;
    while (i < n) {
      let amp = i;
      while (amp < n && p.at(amp) != 0x26 && p.at(amp) != 0x23) amp++;
      let eq = i;
      while (eq < amp && p.at(eq) != 0x3d) eq++;
      if (eq - i == name.length && memory.compare(p.ptr() + <usize>i, name.ptr(), <usize>name.length) == 0) {
        return percentDecode(p, eq < amp ? eq + 1 : amp, amp);
      }
      if (amp < n && p.at(amp) == 0x23) break;
      i = amp + 1;
    }
    return null;
  }
}

/** Index of '?' or '#' in a path, or -1. */
function queryStart(p: ByteBuf): i32 {
  for (let i = 0; i < p.length; i++) {
    let c = p.at(i);
    if (c == 0x3f || c == 0x23) return i;
  }
  return -1;
}

/**
 * ":authority" without port, lower case, or null if absent: the same value as
 * stripPort(requestHeader(":authority")).lower(), copied once out of the host's block.
 */
function hostHeader(): ByteBuf | null {
  if (!hb.header(MAP_REQUEST_HEADERS, H_AUTHORITY)) return null;
  let src = hb.ptr;
  let n = src == 0 ? 0 : hostLength(src, hb.len);
  let b = new ByteBuf(n);
  let dst = b.ptr();
  for (let i = 0; i < n; i++) store<u8>(dst + <usize>i, <u8>toLower(<i32>load<u8>(src + <usize>i)));
  b.length = n;
  hb.release();
  return b;
}

/** Length of the `n` bytes at `p` without a port (stripPort's rule, in place). */
function hostLength(p: usize, n: i32): i32 {
  let i = n - 1;
  while (i >= 0 && load<u8>(p + <usize>i) >= 0x30 && load<u8>(p + <usize>i) <= 0x39) i--;
  if (i < 0 || load<u8>(p + <usize>i) != 0x3a) return n;
  if (load<u8>(p) == 0x5b) {
    if (i > 0 && load<u8>(p + <usize>(i - 1)) == 0x5d) return i;
    return n;
  }
  for (let j = 0; j < i; j++) if (load<u8>(p + <usize>j) == 0x3a) return n; // bare IPv6
  return i;
}

/** "host:port" -> "host"; "[v6]:port" -> "[v6]"; a bare IPv6 literal is left alone. */
export function stripPort(h: ByteBuf): ByteBuf {
  let n = h.length;
  let i = n - 1;
  while (i >= 0 && h.at(i) >= 0x30 && h.at(i) <= 0x39) i--;
  if (i < 0 || h.at(i) != 0x3a) return h;
  // A colon before the digits: it is a port unless this is a bare IPv6 address.
  if (h.length > 0 && h.at(0) == 0x5b) {
    if (i > 0 && h.at(i - 1) == 0x5d) return h.slice(0, i);
    return h;
  }
  for (let j = 0; j < i; j++) if (h.at(j) == 0x3a) return h; // bare IPv6
  return h.slice(0, i);
}

/** Address without port: "1.2.3.4:80" -> "1.2.3.4", "[::1]:80" -> "::1". */
export function addressIp(a: ByteBuf): ByteBuf {
  let h = stripPort(a);
  if (h.length >= 2 && h.at(0) == 0x5b && h.at(h.length - 1) == 0x5d) return h.slice(1, h.length - 1);
  return h;
}

function percentDecode(s: ByteBuf, start: i32, end: i32): ByteBuf {
  let out = new ByteBuf(end - start);
  let i = start;
  while (i < end) {
    let c = s.at(i);
    if (c == 0x25 && i + 2 < end) {
      let a = hexVal(s.at(i + 1)), b = hexVal(s.at(i + 2));
      if (a >= 0 && b >= 0) { out.push((a << 4) | b); i += 3; continue; }
    }
    out.push(c == 0x2b ? 0x20 : c);
    i++;
  }
  return out;
}
