// Lazy, cached view of the current request's attributes. Each value is fetched from the
// host at most once per request, and only if a match rule or key template needs it.

import { ByteBuf, hexVal, toLower, matchAt } from "./bytes";
import { JValue, J_STR, J_NUM, J_BOOL } from "./json";
import { HostBytes, MAP_REQUEST_HEADERS } from "./abi";

const H_AUTHORITY = ByteBuf.fromString(":authority");
const H_PATH = ByteBuf.fromString(":path");
const H_METHOD = ByteBuf.fromString(":method");

const hb = new HostBytes();
// ":authority" as the host handed it over (our malloc'd block): match rules compare it in
// place, so an unmatched request copies nothing. Released by host() or reset().
const rawHost = new HostBytes();

/** Request header value (copied out), or null if absent. `name` must be lower case. */
export function requestHeader(name: ByteBuf): ByteBuf | null {
  if (!hb.header(MAP_REQUEST_HEADERS, name)) return null;
  if (hb.ptr == 0) {
    hb.release();
    return new ByteBuf(0);
  }
  return hb.toBuf();
}

/** Envoy attribute by NUL-separated path, or null if absent. */
export function property(path: ByteBuf): ByteBuf | null {
  if (!hb.property(path)) return null;
  if (hb.ptr == 0) {
    hb.release();
    return new ByteBuf(0);
  }
  return hb.toBuf();
}

export class RequestView {
  private host_: ByteBuf | null = null;
  private hostDone: bool = false;
  private rawDone: bool = false; // ":authority" read (into rawHost, if present)
  private rawPresent: bool = false;
  private rawLen: i32 = 0; // its length without port and trailing dot
  private rawMalformed: bool = false;
  private path_: ByteBuf | null = null;
  private pathDone: bool = false;
  private method_: ByteBuf | null = null;
  private methodDone: bool = false;

  /** The parsed JSON request body, when a key template reads it (set before the keys are rendered). */
  body: JValue | null = null;

  /**
   * A field of the JSON body by NUL-separated path ("model", "metadata\0user_id"): a string as
   * its bytes, a number as its decimal text, a boolean as true/false; null when the body is not
   * JSON (or was too large to read), the field is absent, or it is an object, array or null.
   */
  bodyField(path: ByteBuf): ByteBuf | null {
    let v = this.body;
    let start = 0;
    for (let i = 0; i <= path.length && v !== null; i++) {
      if (i < path.length && path.at(i) != 0) continue;
      v = v.member(path.slice(start, i));
      start = i + 1;
    }
    if (v === null) return null;
    if (v.kind == J_STR) return v.s;
    if (v.kind == J_BOOL) return boolText(v.b);
    if (v.kind == J_NUM) return numberText(v.n);
    return null;
  }

  /** Forgets the previous request's values (the view is reused: no allocation per request). */
  reset(): void {
    this.body = null;
    rawHost.release();
    this.rawDone = false;
    this.rawPresent = false;
    this.rawLen = 0;
    this.rawMalformed = false;
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
      this.readRawHost();
      if (this.rawPresent) this.host_ = lowerCopy(rawHost.ptr, this.rawLen);
      rawHost.release();
    }
    return this.host_;
  }

  private readRawHost(): void {
    if (this.rawDone) return;
    this.rawDone = true;
    if (!rawHost.header(MAP_REQUEST_HEADERS, H_AUTHORITY)) return;
    this.rawPresent = true;
    if (rawHost.ptr == 0) return;
    let n = hostLength(rawHost.ptr, rawHost.len);
    // "a.com." names the same host as "a.com" (DNS root); compare without the dot.
    while (n > 0 && load<u8>(rawHost.ptr + <usize>(n - 1)) == 0x2e) n--;
    this.rawLen = n;
    this.rawMalformed = malformedHost(rawHost.ptr, rawHost.len);
  }

  /**
   * True when the Host / :authority could name a host other than the one it is compared as:
   * userinfo ("x@a.com"), several values (two Host headers arrive joined: "a.com,b.com"),
   * whitespace. Envoy routes such a request by the whole string (a catch-all route may still
   * send it to the LLM), so host matching refuses it instead of guessing.
   */
  hostMalformed(): bool {
    this.readRawHost();
    return this.rawMalformed;
  }

  /**
   * Whether the host (as host() returns it) equals `value` (exact), starts with it
   * (prefix) or ends with it (suffix); `value` is lower case. Before host() was needed,
   * compares in place in the host's block, folding case on the fly: no copy.
   */
  hostMatches(kind: i32, value: ByteBuf): bool {
    if (this.hostDone) {
      const h = this.host_;
      if (h === null) return false;
      return matchAt(kind, value, h.ptr(), h.length, false);
    }
    this.readRawHost();
    if (!this.rawPresent) return false;
    return matchAt(kind, value, rawHost.ptr, this.rawLen, true);
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
    const p = this.rawPath();
    if (p === null) return null;
    const q = queryStart(p);
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
    const p = this.rawPath();
    if (p === null) return null;
    let i = queryStart(p);
    if (i < 0 || p.at(i) != 0x3f) return null;
    i++;
    const n = p.length;
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
    const c = p.at(i);
    if (c == 0x3f || c == 0x23) return i;
  }
  return -1;
}

/** The `n` bytes at `src`, lower case (host(): the same value as stripPort(requestHeader(":authority")).lower()). */
function lowerCopy(src: usize, n: i32): ByteBuf {
  const b = new ByteBuf(n);
  const dst = b.ptr();
  for (let i = 0; i < n; i++) store<u8>(dst + <usize>i, <u8>toLower(<i32>load<u8>(src + <usize>i)));
  b.length = n;
  return b;
}

function malformedHost(p: usize, n: i32): bool {
  for (let i = 0; i < n; i++) {
    const c = load<u8>(p + <usize>i);
    if (c == 0x40 || c == 0x2c || c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

/** Length of the `n` bytes at `p` without a port: "host:port" -> "host", "[v6]:port" -> "[v6]", a bare IPv6 literal whole. */
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
  const n = hostLength(h.ptr(), h.length);
  return n == h.length ? h : h.slice(0, n);
}

/** Address without port: "1.2.3.4:80" -> "1.2.3.4", "[::1]:80" -> "::1". */
export function addressIp(a: ByteBuf): ByteBuf {
  const h = stripPort(a);
  if (h.length >= 2 && h.at(0) == 0x5b && h.at(h.length - 1) == 0x5d) return h.slice(1, h.length - 1);
  return h;
}

function percentDecode(s: ByteBuf, start: i32, end: i32): ByteBuf {
  const out = new ByteBuf(end - start);
  let i = start;
  while (i < end) {
    const c = s.at(i);
    if (c == 0x25 && i + 2 < end) {
      const a = hexVal(s.at(i + 1)),
        b = hexVal(s.at(i + 2));
      if (a >= 0 && b >= 0) {
        out.push((a << 4) | b);
        i += 3;
        continue;
      }
    }
    out.push(c == 0x2b ? 0x20 : c);
    i++;
  }
  return out;
}

/** An integer as its decimal text; other numbers as AssemblyScript prints them. */
export function numberText(n: f64): ByteBuf {
  if (n == Math.floor(n) && Math.abs(n) < 9007199254740992) {
    const b = new ByteBuf(20);
    if (n < 0) {
      b.push(0x2d);
      n = -n;
    }
    b.appendU64(<u64>n);
    return b;
  }
  return ByteBuf.fromString(n.toString());
}

/** "true" / "false" (if/else: AssemblyScript 0.17 mishandles ?: between references). */
export function boolText(b: bool): ByteBuf {
  if (b) return ByteBuf.fromString("true");
  return ByteBuf.fromString("false");
}
