// pluginConfig: parsed and validated once in proxy_on_configure. Any invalid field makes
// configuration fail with an error naming the field and the offending value.

import { ByteBuf } from "./bytes";
import { parseJson, JValue, J_OBJ, J_ARR, J_STR, J_NUM, J_BOOL } from "./json";
import { Template, parseTemplate } from "./template";

export const M_EXACT = 0;
export const M_PREFIX = 1;
export const M_SUFFIX = 2;

export class StrMatch {
  kind: i32;
  value: ByteBuf;
  constructor(kind: i32, value: ByteBuf) { this.kind = kind; this.value = value; }
}

export class MatchRule {
  host: StrMatch | null = null;
  path: StrMatch | null = null;
}

export const MISSING_DENY = 0;
export const MISSING_SKIP = 1;
export const MISSING_DEFAULT = 2;

export const DEFAULT_TIMEOUT_MS: u32 = 1000;
export const DEFAULT_REJECT_STATUS: u32 = 429;
export const DEFAULT_MAX_BUFFER_BYTES = 16384;
export const DEFAULT_MAX_KEY_BYTES = 256;

// reserve: estimate a request's cost from its body and reserve it with the check.
export const DEFAULT_RESERVE_MAX_BODY_BYTES = 262144;
export const DEFAULT_CHARS_PER_TOKEN: f64 = 4;
export const DEFAULT_CJK_CHARS_PER_TOKEN: f64 = 1;
export const DEFAULT_COMPLETION_TOKENS = 1024;

export class ReserveConfig {
  enabled: bool = false;
  maxBodyBytes: i32 = DEFAULT_RESERVE_MAX_BODY_BYTES;
  charsPerToken: f64 = DEFAULT_CHARS_PER_TOKEN;
  cjkCharsPerToken: f64 = DEFAULT_CJK_CHARS_PER_TOKEN;
  defaultCompletionTokens: i32 = DEFAULT_COMPLETION_TOKENS;
  includeStreamUsage: bool = false;
}

export class Config {
  reserve: ReserveConfig = new ReserveConfig();
  matches: MatchRule[] = [];
  needHost: bool = false;
  needPath: bool = false;
  keys: Template[] = [];
  cluster: ByteBuf = new ByteBuf(0);
  authority: ByteBuf = new ByteBuf(0);
  timeoutMs: u32 = DEFAULT_TIMEOUT_MS;
  failOpen: bool = true;
  rejectStatus: u32 = DEFAULT_REJECT_STATUS;
  onMissingKey: i32 = MISSING_DENY;
  missingDefault: ByteBuf = new ByteBuf(0);
  maxBufferBytes: i32 = DEFAULT_MAX_BUFFER_BYTES;
  maxKeyBytes: i32 = DEFAULT_MAX_KEY_BYTES;
}

export class ConfigResult {
  config: Config | null = null;
  error: string = "";
}

const TOP_FIELDS = ["matches", "rateLimitKeys", "rateLimitService", "failOpen", "fallOpen",
  "rejectStatus", "onMissingKey", "maxBufferBytes", "maxKeyBytes", "reserve"];
const RESERVE_FIELDS = ["enabled", "maxBodyBytes", "charsPerToken", "cjkCharsPerToken", "defaultCompletionTokens",
  "includeStreamUsage"];
const SERVICE_FIELDS = ["service", "port", "cluster", "timeoutMs", "authority"];
const MATCH_FIELDS = ["host", "path"];
const STRMATCH_FIELDS = ["exact", "prefix", "suffix", "regex"];

class Ctx {
  error: string = "";
  fail(field: string, problem: string, v: JValue | null): bool {
    if (this.error.length == 0) {
      let got = "";
      if (v !== null) got = ", got " + v.display();
      this.error = field + ": " + problem + got;
    }
    return false;
  }
}

function knownFields(c: Ctx, obj: JValue, prefix: string, allowed: string[]): bool {
  for (let i = 0; i < obj.keys.length; i++) {
    let k = obj.keys[i];
    let ok = false;
    for (let j = 0; j < allowed.length; j++) if (k.eqStr(allowed[j])) { ok = true; break; }
    if (!ok) return c.fail(prefix + k.display(60), "unknown field (allowed: " + allowed.join(", ") + ")", obj.items[i]);
  }
  return true;
}

/** A JSON string whose bytes we know are valid UTF-8 (the parser checks) as an AS string. */
function str(v: JValue): string {
  let s = v.s;
  if (s === null) return "";
  return String.UTF8.decode(s.buf.slice(0, s.length));
}

function intIn(c: Ctx, v: JValue, field: string, lo: f64, hi: f64): i32 {
  if (v.kind != J_NUM || v.n != Math.floor(v.n) || v.n < lo || v.n > hi) {
    c.fail(field, "expected an integer from " + (<i64>lo).toString() + " to " + (<i64>hi).toString(), v);
    return -1;
  }
  return <i32>v.n;
}

function nonEmptyString(c: Ctx, v: JValue, field: string): bool {
  if (v.kind != J_STR || v.s === null || (<ByteBuf>v.s).length == 0) return c.fail(field, "expected a non-empty string", v);
  return true;
}

function parseStrMatch(c: Ctx, v: JValue, field: string, lowerCase: bool): StrMatch | null {
  if (v.kind != J_OBJ) { c.fail(field, "expected an object with one of exact, prefix, suffix", v); return null; }
  if (!knownFields(c, v, field + ".", STRMATCH_FIELDS)) return null;
  if (v.keys.length != 1) { c.fail(field, "expected exactly one of exact, prefix, suffix", v); return null; }
  let k = v.keys[0];
  let val = v.items[0];
  let name = field + "." + k.display(20);
  if (k.eqStr("regex")) {
    c.fail(name, "regular expressions are not supported (see the plugin README); use exact, prefix or suffix", val);
    return null;
  }
  if (val.kind != J_STR) { c.fail(name, "expected a string", val); return null; }
  let bytes = <ByteBuf>val.s;
  if (lowerCase) bytes = bytes.lower();
  let kind = k.eqStr("exact") ? M_EXACT : k.eqStr("prefix") ? M_PREFIX : M_SUFFIX;
  return new StrMatch(kind, bytes);
}

export function parseConfig(raw: ByteBuf): ConfigResult {
  let res = new ConfigResult();
  let c = new Ctx();
  let cfg = parse(c, raw);
  if (cfg === null) {
    if (c.error.length > 0) res.error = c.error; else res.error = "invalid configuration";
  }
  res.config = cfg;
  return res;
}

function parse(c: Ctx, raw: ByteBuf): Config | null {
  if (raw.length == 0) { c.fail("pluginConfig", "empty; rateLimitKeys and rateLimitService are required", null); return null; }
  let root = parseJson(raw);
  if (root === null) { c.fail("pluginConfig", "not valid JSON: " + raw.display(120), null); return null; }
  if (root.kind != J_OBJ) { c.fail("pluginConfig", "expected a JSON object", root); return null; }
  if (!knownFields(c, root, "", TOP_FIELDS)) return null;
  let cfg = new Config();

  // matches: absent or [] = every request the filter sees.
  let m = root.get("matches");
  if (m !== null) {
    if (m.kind != J_ARR) { c.fail("matches", "expected an array", m); return null; }
    for (let i = 0; i < m.items.length; i++) {
      let e = m.items[i];
      let f = "matches[" + i.toString() + "]";
      if (e.kind != J_OBJ) { c.fail(f, "expected an object with host and/or path", e); return null; }
      if (!knownFields(c, e, f + ".", MATCH_FIELDS)) return null;
      let rule = new MatchRule();
      let h = e.get("host");
      if (h !== null) {
        rule.host = parseStrMatch(c, h, f + ".host", true);
        if (rule.host === null) return null;
        cfg.needHost = true;
      }
      let p = e.get("path");
      if (p !== null) {
        rule.path = parseStrMatch(c, p, f + ".path", false);
        if (rule.path === null) return null;
        cfg.needPath = true;
      }
      cfg.matches.push(rule);
    }
  }

  let keys = root.get("rateLimitKeys");
  if (keys === null) { c.fail("rateLimitKeys", "required", null); return null; }
  if (keys.kind != J_ARR || keys.items.length == 0) { c.fail("rateLimitKeys", "expected a non-empty array of strings", keys); return null; }
  for (let i = 0; i < keys.items.length; i++) {
    let k = keys.items[i];
    let f = "rateLimitKeys[" + i.toString() + "]";
    if (!nonEmptyString(c, k, f)) return null;
    let t = parseTemplate(str(k));
    if (t.template === null) { c.fail(f, t.error, k); return null; }
    cfg.keys.push(<Template>t.template);
  }

  let svc = root.get("rateLimitService");
  if (svc === null) { c.fail("rateLimitService", "required", null); return null; }
  if (svc.kind != J_OBJ) { c.fail("rateLimitService", "expected an object", svc); return null; }
  if (!knownFields(c, svc, "rateLimitService.", SERVICE_FIELDS)) return null;
  let service = svc.get("service");
  let port = svc.get("port");
  let cluster = svc.get("cluster");
  let serviceName = "";
  if (service !== null) {
    if (!nonEmptyString(c, service, "rateLimitService.service")) return null;
    serviceName = str(service);
  }
  let portNum = -1;
  if (port !== null) {
    portNum = intIn(c, port, "rateLimitService.port", 1, 65535);
    if (portNum < 0) return null;
  }
  if (cluster !== null) {
    if (!nonEmptyString(c, cluster, "rateLimitService.cluster")) return null;
    cfg.cluster = <ByteBuf>cluster.s;
  } else {
    if (service === null) { c.fail("rateLimitService.service", "required (or set rateLimitService.cluster)", null); return null; }
    if (port === null) { c.fail("rateLimitService.port", "required (or set rateLimitService.cluster)", null); return null; }
    // Istio's sidecar names the outbound cluster of a service port like this.
    cfg.cluster = ByteBuf.fromString("outbound|" + portNum.toString() + "||" + serviceName);
  }
  let auth = svc.get("authority");
  if (auth !== null) {
    if (!nonEmptyString(c, auth, "rateLimitService.authority")) return null;
    cfg.authority = <ByteBuf>auth.s;
  } else if (service !== null) {
    cfg.authority = ByteBuf.fromString(serviceName);
  } else {
    cfg.authority = cfg.cluster;
  }
  let timeout = svc.get("timeoutMs");
  if (timeout !== null) {
    let t = intIn(c, timeout, "rateLimitService.timeoutMs", 1, 60000);
    if (t < 0) return null;
    cfg.timeoutMs = <u32>t;
  }

  let fo = root.get("failOpen");
  let fa = root.get("fallOpen"); // the reference README's spelling
  if (fo !== null && fa !== null && (fo.kind != fa.kind || fo.b != fa.b)) {
    c.fail("fallOpen", "conflicts with failOpen (set only one)", fa); return null;
  }
  // (if/else, not ?: — AssemblyScript 0.17's reference counting mishandles ?: on references)
  if (fo !== null) {
    if (fo.kind != J_BOOL) { c.fail("failOpen", "expected true or false", fo); return null; }
    cfg.failOpen = fo.b;
  } else if (fa !== null) {
    if (fa.kind != J_BOOL) { c.fail("fallOpen", "expected true or false", fa); return null; }
    cfg.failOpen = fa.b;
  }

  let rs = root.get("rejectStatus");
  if (rs !== null) {
    let s = intIn(c, rs, "rejectStatus", 400, 599);
    if (s < 0) return null;
    cfg.rejectStatus = <u32>s;
  }

  let mk = root.get("onMissingKey");
  if (mk !== null) {
    if (mk.kind == J_STR && (<ByteBuf>mk.s).eqStr("deny")) cfg.onMissingKey = MISSING_DENY;
    else if (mk.kind == J_STR && (<ByteBuf>mk.s).eqStr("skip")) cfg.onMissingKey = MISSING_SKIP;
    else if (mk.kind == J_OBJ && mk.keys.length == 1 && mk.keys[0].eqStr("default") && mk.items[0].kind == J_STR) {
      cfg.onMissingKey = MISSING_DEFAULT;
      cfg.missingDefault = <ByteBuf>mk.items[0].s;
    } else {
      c.fail("onMissingKey", "expected \"deny\", \"skip\" or {\"default\": \"<literal>\"}", mk); return null;
    }
  }

  let mb = root.get("maxBufferBytes");
  if (mb !== null) {
    let v = intIn(c, mb, "maxBufferBytes", 256, 1048576);
    if (v < 0) return null;
    cfg.maxBufferBytes = v;
  }
  let mkb = root.get("maxKeyBytes");
  if (mkb !== null) {
    let v = intIn(c, mkb, "maxKeyBytes", 16, 4096);
    if (v < 0) return null;
    cfg.maxKeyBytes = v;
  }
  let rv = root.get("reserve");
  if (rv !== null && !parseReserve(c, rv, cfg.reserve)) return null;
  return cfg;
}

function boolField(c: Ctx, obj: JValue, name: string, field: string, dflt: bool): i32 {
  let v = obj.get(name);
  if (v === null) return dflt ? 1 : 0;
  if (v.kind != J_BOOL) { c.fail(field, "expected true or false", v); return -1; }
  return v.b ? 1 : 0;
}

function ratioField(c: Ctx, obj: JValue, name: string, field: string, dflt: f64): f64 {
  let v = obj.get(name);
  if (v === null) return dflt;
  if (v.kind != J_NUM || !(v.n >= 0.1) || v.n > 100) { c.fail(field, "expected a number from 0.1 to 100", v); return -1; }
  return v.n;
}

function parseReserve(c: Ctx, v: JValue, r: ReserveConfig): bool {
  if (v.kind != J_OBJ) return c.fail("reserve", "expected an object", v);
  if (!knownFields(c, v, "reserve.", RESERVE_FIELDS)) return false;
  let en = boolField(c, v, "enabled", "reserve.enabled", false);
  if (en < 0) return false;
  r.enabled = en == 1;
  let mb = v.get("maxBodyBytes");
  if (mb !== null) {
    let n = intIn(c, mb, "reserve.maxBodyBytes", 1024, 16777216);
    if (n < 0) return false;
    r.maxBodyBytes = n;
  }
  let cpt = ratioField(c, v, "charsPerToken", "reserve.charsPerToken", DEFAULT_CHARS_PER_TOKEN);
  if (cpt < 0) return false;
  r.charsPerToken = cpt;
  let cjk = ratioField(c, v, "cjkCharsPerToken", "reserve.cjkCharsPerToken", DEFAULT_CJK_CHARS_PER_TOKEN);
  if (cjk < 0) return false;
  r.cjkCharsPerToken = cjk;
  let dc = v.get("defaultCompletionTokens");
  if (dc !== null) {
    let n = intIn(c, dc, "reserve.defaultCompletionTokens", 0, 1000000);
    if (n < 0) return false;
    r.defaultCompletionTokens = n;
  }
  let isu = boolField(c, v, "includeStreamUsage", "reserve.includeStreamUsage", false);
  if (isu < 0) return false;
  r.includeStreamUsage = isu == 1;
  return true;
}
