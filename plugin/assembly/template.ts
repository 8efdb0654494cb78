// Rate-limit key templates, e.g. "tenant-{{request.headers.x-tenant}}". Parsed once at
// configure time into segments; rendering is a walk over the segments.

import { ByteBuf, hexDigit } from "./bytes";
import { sha256 } from "./sha256";
import { RequestView, requestHeader, property, addressIp, numberText, boolText } from "./request";

export const SEG_LITERAL = 0;
export const SEG_HEADER = 1;
export const SEG_HOST = 2;
export const SEG_PATH = 3;
export const SEG_METHOD = 4;
export const SEG_QUERY = 5;
export const SEG_PROPERTY = 6;
export const SEG_SOURCE_IP = 7;
export const SEG_METADATA = 8; // Envoy dynamic metadata value (arg: property path), e.g. a verified JWT claim
export const SEG_BODY = 9; // a field of the JSON request body (arg: NUL-separated field path)

// Where Envoy's jwt_authn filter (and Istio's RequestAuthentication, which configures it with
// payload_in_metadata "payload") leaves the verified token's payload.
export const JWT_PAYLOAD_PATH = "metadata\0filter_metadata\0envoy.filters.http.jwt_authn\0payload";

export class Segment {
  kind: i32;
  arg: ByteBuf; // literal text, header name (lower case), query name or property path
  hashed: bool = false; // {{hash(...)}}: the value's digest instead of the value
  constructor(kind: i32, arg: ByteBuf) {
    this.kind = kind;
    this.arg = arg;
  }
}

export class Template {
  text: string = "";
  segments: Segment[] = [];
  /** A placeholder reads the request body: the check waits for the body. */
  needsBody: bool = false;
}

/** Result of parsing: a template, or an error message. */
export class TemplateResult {
  template: Template | null = null;
  error: string = "";
}

// Envoy attributes addressable as plain placeholders (name -> NUL-separated path).
const PROPS: string[] = [
  "source.address",
  "source\0address",
  "destination.address",
  "destination\0address",
  "connection.requested_server_name",
  "connection\0requested_server_name",
  // Istio's source.principal is the peer certificate's URI SAN (SPIFFE ID) under mTLS.
  "source.principal",
  "connection\0uri_san_peer_certificate",
  "xds.route_name",
  "xds\0route_name",
  "xds.cluster_name",
  "xds\0cluster_name",
];

export const TEMPLATE_VARIABLES =
  "request.headers.NAME, request.host, request.path, request.method, request.query.NAME, " +
  "request.body.FIELD[.FIELD...], jwt.CLAIM[.CLAIM...], metadata['FILTER'].KEY[.KEY...], filter_state['NAME'], hash(VARIABLE), " +
  "source.address, source.ip, destination.address, connection.requested_server_name, source.principal, " +
  "xds.route_name, xds.cluster_name";

/**
 * A path after a variable's root: ".a.b['c.d']" -> ["a", "b", "c.d"]. A segment is written
 * .name (up to the next '.' or '[') or ['any text'] / ["any text"] (for names with dots, such
 * as Envoy filter names). Null (and res.error) when malformed or empty.
 */
function pathSegments(root: string, rest: string, res: TemplateResult): string[] | null {
  const out: string[] = [];
  let i = 0;
  while (i < rest.length) {
    const c = rest.charCodeAt(i);
    if (c == 0x2e) {
      // .
      let j = i + 1;
      while (j < rest.length && rest.charCodeAt(j) != 0x2e && rest.charCodeAt(j) != 0x5b) j++;
      if (j == i + 1) break;
      out.push(rest.substring(i + 1, j));
      i = j;
    } else if (c == 0x5b) {
      // [
      const q = i + 1 < rest.length ? rest.charAt(i + 1) : "";
      if (q != "'" && q != '"') break;
      const end = rest.indexOf(q + "]", i + 2);
      if (end <= i + 2) break;
      out.push(rest.substring(i + 2, end));
      i = end + 2;
    } else {
      break;
    }
  }
  if (i < rest.length || out.length == 0) {
    res.error = "invalid path after " + root + ' in "' + root + rest + '" (write .' + "name or ['name'] segments)";
    return null;
  }
  for (let k = 0; k < out.length; k++) {
    if (out[k].indexOf("\0") >= 0) {
      res.error = "invalid path after " + root;
      return null;
    }
  }
  return out;
}

function pathArg(prefix: string, segs: string[]): ByteBuf {
  let p = prefix;
  for (let k = 0; k < segs.length; k++) {
    if (p.length > 0) p += "\0";
    p += segs[k];
  }
  return ByteBuf.fromString(p);
}

/** Variables that take a path: jwt, metadata, filter_state, request.body. Null if `name` is none of them. */
function pathVariable(name: string, res: TemplateResult): Segment | null {
  const roots = ["jwt", "metadata", "filter_state", "request.body"];
  for (let r = 0; r < roots.length; r++) {
    const root = roots[r];
    if (!name.startsWith(root) || name.length == root.length) continue;
    const next = name.charCodeAt(root.length);
    if (next != 0x2e && next != 0x5b) continue;
    const segs = pathSegments(root, name.substring(root.length), res);
    if (segs === null) return null;
    if (r == 0) return new Segment(SEG_METADATA, pathArg(JWT_PAYLOAD_PATH, segs));
    if (r == 1) {
      if (segs.length < 2) {
        res.error = "metadata needs a filter name and a key, e.g. metadata['envoy.filters.http.jwt_authn'].payload.sub";
        return null;
      }
      return new Segment(SEG_METADATA, pathArg("metadata\0filter_metadata", segs));
    }
    if (r == 2) {
      if (segs.length != 1) {
        res.error = "filter_state takes one name, e.g. filter_state['my.filter.state']";
        return null;
      }
      return new Segment(SEG_PROPERTY, pathArg("filter_state", segs));
    }
    return new Segment(SEG_BODY, pathArg("", segs));
  }
  return null;
}

function isTokenChar(c: i32): bool {
  // RFC 7230 tchar: header names and query names must be written with these.
  return (
    (c >= 0x30 && c <= 0x39) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x61 && c <= 0x7a) ||
    c == 0x21 ||
    c == 0x23 ||
    c == 0x24 ||
    c == 0x25 ||
    c == 0x26 ||
    c == 0x27 ||
    c == 0x2a ||
    c == 0x2b ||
    c == 0x2d ||
    c == 0x2e ||
    c == 0x5e ||
    c == 0x5f ||
    c == 0x60 ||
    c == 0x7c ||
    c == 0x7e
  );
}

function validName(s: string): bool {
  if (s.length == 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTokenChar(s.charCodeAt(i))) return false;
  return true;
}

function variable(name: string, res: TemplateResult): Segment | null {
  // hash(VARIABLE): a key per secret (an API key in Authorization) without the secret itself
  // ever reaching the service, its logs or Redis.
  if (name.startsWith("hash(") && name.endsWith(")")) {
    const inner = name.substring(5, name.length - 1).trim();
    if (inner.startsWith("hash(")) {
      res.error = "hash() of hash() adds nothing";
      return null;
    }
    const seg = variable(inner, res);
    if (seg !== null) seg.hashed = true;
    return seg;
  }
  if (name == "request.host") return new Segment(SEG_HOST, new ByteBuf(0));
  if (name == "request.path") return new Segment(SEG_PATH, new ByteBuf(0));
  if (name == "request.method") return new Segment(SEG_METHOD, new ByteBuf(0));
  if (name == "source.ip") return new Segment(SEG_SOURCE_IP, ByteBuf.fromString("source\0address"));
  if (name.startsWith("request.headers.")) {
    const h = name.substring(16);
    if (!validName(h)) {
      res.error = 'invalid header name "' + h + '"';
      return null;
    }
    return new Segment(SEG_HEADER, ByteBuf.fromString(h.toLowerCase()));
  }
  if (name.startsWith("request.query.")) {
    const q = name.substring(14);
    if (!validName(q)) {
      res.error = 'invalid query parameter name "' + q + '"';
      return null;
    }
    return new Segment(SEG_QUERY, ByteBuf.fromString(q));
  }
  for (let i = 0; i < PROPS.length; i += 2) {
    if (name == PROPS[i]) return new Segment(SEG_PROPERTY, ByteBuf.fromString(PROPS[i + 1]));
  }
  const ps = pathVariable(name, res);
  if (ps !== null || res.error.length > 0) return ps;
  res.error = 'unknown template variable "' + name + '" (known: ' + TEMPLATE_VARIABLES + ")";
  return null;
}

/** Parses "literal {{ variable }} literal ...". */
export function parseTemplate(text: string): TemplateResult {
  const res = new TemplateResult();
  const t = new Template();
  t.text = text;
  let i = 0;
  let lit = "";
  while (i < text.length) {
    const open = text.indexOf("{{", i);
    if (open < 0) {
      lit += text.substring(i);
      break;
    }
    lit += text.substring(i, open);
    const close = text.indexOf("}}", open + 2);
    if (close < 0) {
      res.error = 'unclosed "{{" at offset ' + open.toString();
      return res;
    }
    const name = text.substring(open + 2, close).trim();
    const seg = variable(name, res);
    if (seg === null) return res;
    if (lit.length > 0) {
      t.segments.push(new Segment(SEG_LITERAL, ByteBuf.fromString(lit)));
      lit = "";
    }
    if (seg.kind == SEG_BODY) t.needsBody = true;
    t.segments.push(seg);
    i = close + 2;
  }
  if (lit.length > 0) t.segments.push(new Segment(SEG_LITERAL, ByteBuf.fromString(lit)));
  if (t.segments.length == 0) {
    res.error = "empty key template";
    return res;
  }
  res.template = t;
  return res;
}

/** Value of one placeholder for the current request; null or empty means missing. */
export function resolve(seg: Segment, req: RequestView): ByteBuf | null {
  const v = resolveValue(seg, req);
  if (!seg.hashed || v === null || v.length == 0) return v;
  return digestHex(v);
}

function resolveValue(seg: Segment, req: RequestView): ByteBuf | null {
  const k = seg.kind;
  if (k == SEG_HEADER) return requestHeader(seg.arg);
  if (k == SEG_HOST) return req.host();
  if (k == SEG_PATH) return req.path();
  if (k == SEG_METHOD) return req.method();
  if (k == SEG_QUERY) return req.query(seg.arg);
  if (k == SEG_PROPERTY) return property(seg.arg);
  if (k == SEG_METADATA) return metadataValue(property(seg.arg));
  if (k == SEG_BODY) return req.bodyField(seg.arg);
  if (k == SEG_SOURCE_IP) {
    const a = property(seg.arg);
    if (a === null) return null;
    return addressIp(a);
  }
  return seg.arg;
}

/**
 * A dynamic-metadata value as text. Envoy hands a metadata value over without its type: a
 * string as its bytes, a number as the 8 bytes of a little-endian double, a boolean as one
 * byte 0 or 1. A claim is set by the token's issuer, not by the client, so telling them apart
 * by shape is safe: 8 bytes with a control byte among them are a number (a text claim has
 * none; every integer below 2^48 has zero bytes), a single 0/1 byte a boolean.
 */
function metadataValue(v: ByteBuf | null): ByteBuf | null {
  if (v === null) return null;
  if (v.length == 1 && (v.at(0) == 0 || v.at(0) == 1)) return boolText(v.at(0) == 1);
  if (v.length == 8) {
    let control = false;
    for (let i = 0; i < 8; i++) if (v.at(i) < 0x20) control = true;
    if (control) {
      const n = load<f64>(v.ptr());
      if (!isFinite(n)) return null;
      return numberText(n);
    }
  }
  return v;
}

/** 128 bits of the value's SHA-256, as 32 hex digits. */
export function digestHex(v: ByteBuf): ByteBuf {
  const d = sha256(v);
  const out = new ByteBuf(32);
  for (let i = 0; i < 16; i++) {
    out.push(hexDigit(d.at(i) >> 4));
    out.push(hexDigit(d.at(i)));
  }
  return out;
}
