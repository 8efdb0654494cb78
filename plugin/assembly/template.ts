// Rate-limit key templates, e.g. "tenant-{{request.headers.x-tenant}}". Parsed once at
// configure time into segments; rendering is a walk over the segments.

import { ByteBuf } from "./bytes";
import { RequestView, requestHeader, property, addressIp } from "./request";

export const SEG_LITERAL = 0;
export const SEG_HEADER = 1;
export const SEG_HOST = 2;
export const SEG_PATH = 3;
export const SEG_METHOD = 4;
export const SEG_QUERY = 5;
export const SEG_PROPERTY = 6;
export const SEG_SOURCE_IP = 7;

export class Segment {
  kind: i32;
  arg: ByteBuf; // literal text, header name (lower case), query name or property path
  constructor(kind: i32, arg: ByteBuf) { this.kind = kind; this.arg = arg; }
}

export class Template {
  text: string = "";
  segments: Segment[] = [];
}

/** Result of parsing: a template, or an error message. */
export class TemplateResult {
  template: Template | null = null;
  error: string = "";
}

// Envoy attributes addressable as plain placeholders (name -> NUL-separated path).
const PROPS: string[] = [
  "source.address", "source\0address",
  "destination.address", "destination\0address",
  "connection.requested_server_name", "connection\0requested_server_name",
  // Istio's source.principal is the peer certificate's URI SAN (SPIFFE ID) under mTLS.
  "source.principal", "connection\0uri_san_peer_certificate",
  "xds.route_name", "xds\0route_name",
  "xds.cluster_name", "xds\0cluster_name",
];

export const TEMPLATE_VARIABLES = "request.headers.NAME, request.host, request.path, request.method, request.query.NAME, " +
  "source.address, source.ip, destination.address, connection.requested_server_name, source.principal, " +
  "xds.route_name, xds.cluster_name";

function isTokenChar(c: i32): bool {
  // RFC 7230 tchar: header names and query names must be written with these.
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) ||
    c == 0x21 || c == 0x23 || c == 0x24 || c == 0x25 || c == 0x26 || c == 0x27 || c == 0x2a ||
    c == 0x2b || c == 0x2d || c == 0x2e || c == 0x5e || c == 0x5f || c == 0x60 || c == 0x7c || c == 0x7e;
}

function validName(s: string): bool {
  if (s.length == 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTokenChar(s.charCodeAt(i))) return false;
  return true;
}

function variable(name: string, res: TemplateResult): Segment | null {
  if (name == "request.host") return new Segment(SEG_HOST, new ByteBuf(0));
  if (name == "request.path") return new Segment(SEG_PATH, new ByteBuf(0));
  if (name == "request.method") return new Segment(SEG_METHOD, new ByteBuf(0));
  if (name == "source.ip") return new Segment(SEG_SOURCE_IP, ByteBuf.fromString("source\0address"));
  if (name.startsWith("request.headers.")) {
    let h = name.substring(16);
    if (!validName(h)) { res.error = "invalid header name \"" + h + "\""; return null; }
    return new Segment(SEG_HEADER, ByteBuf.fromString(h.toLowerCase()));
  }
  if (name.startsWith("request.query.")) {
    let q = name.substring(14);
    if (!validName(q)) { res.error = "invalid query parameter name \"" + q + "\""; return null; }
    return new Segment(SEG_QUERY, ByteBuf.fromString(q));
  }
  for (let i = 0; i < PROPS.length; i += 2) {
    if (name == PROPS[i]) return new Segment(SEG_PROPERTY, ByteBuf.fromString(PROPS[i + 1]));
  }
  res.error = "unknown template variable \"" + name + "\" (known: " + TEMPLATE_VARIABLES + ")";
  return null;
}

/** Parses "literal {{ variable }} literal ...". */
export function parseTemplate(text: string): TemplateResult {
  let res = new TemplateResult();
  let t = new Template();
  t.text = text;
  let i = 0;
  let lit = "";
  while (i < text.length) {
    let open = text.indexOf("{{", i);
    if (open < 0) { lit += text.substring(i); break; }
    lit += text.substring(i, open);
    let close = text.indexOf("}}", open + 2);
    if (close < 0) { res.error = "unclosed \"{{\" at offset " + open.toString(); return res; }
    let name = text.substring(open + 2, close).trim();
    let seg = variable(name, res);
    if (seg === null) return res;
    if (lit.length > 0) { t.segments.push(new Segment(SEG_LITERAL, ByteBuf.fromString(lit))); lit = ""; }
    t.segments.push(seg);
    i = close + 2;
  }
  if (lit.length > 0) t.segments.push(new Segment(SEG_LITERAL, ByteBuf.fromString(lit)));
  if (t.segments.length == 0) { res.error = "empty key template"; return res; }
  res.template = t;
  return res;
}

/** Value of one placeholder for the current request; null or empty means missing. */
export function resolve(seg: Segment, req: RequestView): ByteBuf | null {
  let k = seg.kind;
  if (k == SEG_HEADER) return requestHeader(seg.arg);
  if (k == SEG_HOST) return req.host();
  if (k == SEG_PATH) return req.path();
  if (k == SEG_METHOD) return req.method();
  if (k == SEG_QUERY) return req.query(seg.arg);
  if (k == SEG_PROPERTY) return property(seg.arg);
  if (k == SEG_SOURCE_IP) {
    let a = property(seg.arg);
    if (a === null) return null;
    return addressIp(a);
  }
  return seg.arg;
}
