// pluginConfig: parsed and validated once in proxy_on_configure. Any invalid field makes
// configuration fail with an error naming the field and the offending value.

import { ByteBuf } from "./bytes";
import { parseJson, JValue, J_OBJ, J_ARR, J_STR, J_BOOL } from "./json";
import { Template, parseTemplate, SEG_BODY } from "./template";
import { ErrorCollector, knownFields, str, intIn, nonEmptyString, intField, boolField, ratioField } from "./config-fields";

export const M_EXACT = 0;
export const M_PREFIX = 1;
export const M_SUFFIX = 2;

export class StrMatch {
  kind: i32;
  value: ByteBuf;
  constructor(kind: i32, value: ByteBuf) {
    this.kind = kind;
    this.value = value;
  }
}

export class MatchRule {
  host: StrMatch | null = null;
  path: StrMatch | null = null;
  route: StrMatch | null = null; // Envoy's route name (xds.route_name): a client cannot spell it otherwise
  cluster: StrMatch | null = null; // Envoy's upstream cluster name (xds.cluster_name)
}

// rejectBody: the form of local replies (reply.ts).
export const BODY_OPENAI = 0;
export const BODY_TEXT = 1;
export const DEFAULT_NO_RETRY_ABOVE_SECONDS = 30;

// upgrades: what a matched request asking for a protocol upgrade (WebSocket) gets.
export const UPGRADES_REFUSE = 0; // a local 403: the session would never be charged
export const UPGRADES_UNMETERED = 1; // let it through, uncharged (the operator's choice)

export const MISSING_DENY = 0;
export const MISSING_SKIP = 1;
export const MISSING_DEFAULT = 2;

export const DEFAULT_TIMEOUT_MS: u32 = 1000;
export const DEFAULT_REJECT_STATUS: u32 = 429;
export const DEFAULT_MAX_BUFFER_BYTES = 16384;
export const DEFAULT_MAX_KEY_BYTES = 256;
// What the protocol can carry (the service refuses more; a refused check must never be
// something a client can cause, so the plugin refuses such a configuration instead).
export const MAX_KEYS = 16;
export const MAX_KEY_BYTES = 512;
export const MIN_KEY_BYTES = 64; // room for a prefix plus the 32-hex-digit digest
export const DEFAULT_MAX_QUEUED_REPORTS = 10000;
export const DEFAULT_MAX_REQUEST_BODY_BYTES = 262144;

// estimate: token estimates without a tokenizer (token-estimate.ts), for what a request will
// cost (reserve mode's reservation) and what a response without usage cost (estimateMissingUsage).
export const DEFAULT_CHARS_PER_TOKEN: f64 = 4;
export const DEFAULT_CJK_CHARS_PER_TOKEN: f64 = 1;
export const DEFAULT_COMPLETION_TOKENS = 1024;

/** The settings of token estimates: `estimate`, or the same fields under `reserve` (read there too). */
export class EstimateConfig {
  charsPerToken: f64 = DEFAULT_CHARS_PER_TOKEN;
  cjkCharsPerToken: f64 = DEFAULT_CJK_CHARS_PER_TOKEN;
  defaultCompletionTokens: i32 = DEFAULT_COMPLETION_TOKENS;
}

export class Config {
  estimate: EstimateConfig = new EstimateConfig();
  reserve: bool = false; // reserve.enabled: the check reserves the request's estimated cost
  matches: MatchRule[] = [];
  keys: Template[] = [];
  keysNeedBody: bool = false; // a key template reads the request body: the check waits for it
  cluster: ByteBuf = new ByteBuf(0);
  authority: ByteBuf = new ByteBuf(0);
  token: ByteBuf | null = null; // sent as "authorization: Bearer <token>" to the service
  timeoutMs: u32 = DEFAULT_TIMEOUT_MS;
  failOpen: bool = true;
  rejectStatus: u32 = DEFAULT_REJECT_STATUS;
  rejectBody: i32 = BODY_OPENAI;
  noRetryAboveSeconds: i32 = DEFAULT_NO_RETRY_ABOVE_SECONDS;
  budgetHeaders: bool = true; // allowed responses say the limit and what was left (reply.ts)
  onMissingKey: i32 = MISSING_DENY;
  missingDefault: ByteBuf = new ByteBuf(0);
  maxBufferBytes: i32 = DEFAULT_MAX_BUFFER_BYTES;
  maxKeyBytes: i32 = DEFAULT_MAX_KEY_BYTES;
  maxRequestBodyBytes: i32 = DEFAULT_MAX_REQUEST_BODY_BYTES;
  includeStreamUsage: bool = true;
  estimateMissingUsage: bool = true;
  maxQueuedReports: i32 = DEFAULT_MAX_QUEUED_REPORTS;
  allowCompressedRequests: bool = false; // a request body with a content-encoding: 415 unless true
  upgrades: i32 = UPGRADES_REFUSE;
  /** The body fields key templates read (NUL-separated paths): checked for ambiguous spellings. */
  bodyPaths: ByteBuf[] = [];
}

export class ConfigResult {
  config: Config | null = null;
  error: string = "";
}

const TOP_FIELDS = [
  "matches",
  "rateLimitKeys",
  "rateLimitService",
  "failOpen",
  "fallOpen",
  "rejectStatus",
  "onMissingKey",
  "maxBufferBytes",
  "maxKeyBytes",
  "reserve",
  "estimate",
  "includeStreamUsage",
  "estimateMissingUsage",
  "maxRequestBodyBytes",
  "maxQueuedReports",
  "rejectBody",
  "noRetryAboveSeconds",
  "budgetHeaders",
  "allowCompressedRequests",
  "upgrades",
];
// reserve.maxBodyBytes and reserve.includeStreamUsage: earlier names of the top-level settings.
const RESERVE_FIELDS = ["enabled", "maxBodyBytes", "charsPerToken", "cjkCharsPerToken", "defaultCompletionTokens", "includeStreamUsage"];
const ESTIMATE_FIELDS = ["charsPerToken", "cjkCharsPerToken", "defaultCompletionTokens"];
const SERVICE_FIELDS = ["service", "port", "cluster", "timeoutMs", "authority", "token"];
const MATCH_FIELDS = ["host", "path", "route", "cluster"];
const STRMATCH_FIELDS = ["exact", "prefix", "suffix", "regex"];

function parseStrMatch(c: ErrorCollector, v: JValue, field: string, lowerCase: bool): StrMatch | null {
  if (v.kind != J_OBJ) {
    c.fail(field, "expected an object with one of exact, prefix, suffix", v);
    return null;
  }
  if (!knownFields(c, v, field + ".", STRMATCH_FIELDS)) return null;
  if (v.keys.length != 1) {
    c.fail(field, "expected exactly one of exact, prefix, suffix", v);
    return null;
  }
  const k = v.keys[0];
  const val = v.items[0];
  const name = field + "." + k.display(20);
  if (k.eqStr("regex")) {
    c.fail(name, "regular expressions are not supported (see the plugin README); use exact, prefix or suffix", val);
    return null;
  }
  if (val.kind != J_STR) {
    c.fail(name, "expected a string", val);
    return null;
  }
  let bytes = <ByteBuf>val.s;
  if (lowerCase) bytes = bytes.lower();
  const kind = k.eqStr("exact") ? M_EXACT : k.eqStr("prefix") ? M_PREFIX : M_SUFFIX;
  return new StrMatch(kind, bytes);
}

export function parseConfig(raw: ByteBuf): ConfigResult {
  const res = new ConfigResult();
  const c = new ErrorCollector();
  const cfg = parse(c, raw);
  if (cfg === null) {
    if (c.error.length > 0) res.error = c.error;
    else res.error = "invalid configuration";
  }
  res.config = cfg;
  return res;
}

function parse(c: ErrorCollector, raw: ByteBuf): Config | null {
  if (raw.length == 0) {
    c.fail("pluginConfig", "empty; rateLimitKeys and rateLimitService are required", null);
    return null;
  }
  const root = parseJson(raw);
  if (root === null) {
    c.fail("pluginConfig", "not valid JSON: " + raw.display(120), null);
    return null;
  }
  if (root.kind != J_OBJ) {
    c.fail("pluginConfig", "expected a JSON object", root);
    return null;
  }
  if (!knownFields(c, root, "", TOP_FIELDS)) return null;
  const cfg = new Config();
  if (!parseMatches(c, root.get("matches"), cfg)) return null;
  if (!parseKeys(c, root.get("rateLimitKeys"), cfg)) return null;
  if (!parseService(c, root.get("rateLimitService"), cfg)) return null;
  if (!parseFailurePolicy(c, root, cfg)) return null;
  if (!parseLimits(c, root, cfg)) return null;
  const rv = root.get("reserve");
  if (rv !== null && !parseReserve(c, rv, cfg)) return null;
  const ev = root.get("estimate");
  if (ev !== null && !parseEstimate(c, ev, cfg.estimate)) return null;
  return cfg;
}

/** matches: absent or [] = every request the filter sees. */
function parseMatches(c: ErrorCollector, m: JValue | null, cfg: Config): bool {
  if (m === null) return true;
  if (m.kind != J_ARR) return c.fail("matches", "expected an array", m);
  for (let i = 0; i < m.items.length; i++) {
    const e = m.items[i];
    const f = "matches[" + i.toString() + "]";
    if (e.kind != J_OBJ) return c.fail(f, "expected an object with host, path, route and/or cluster", e);
    if (!knownFields(c, e, f + ".", MATCH_FIELDS)) return false;
    const rule = new MatchRule();
    const h = e.get("host");
    if (h !== null) {
      const hm = parseStrMatch(c, h, f + ".host", true);
      if (hm === null) return false;
      // Hosts compare without a trailing dot (as request hosts do): "a.com." = "a.com".
      const v = hm.value;
      while (v.length > 0 && v.at(v.length - 1) == 0x2e && hm.kind != M_PREFIX) v.length--;
      rule.host = hm;
    }
    const p = e.get("path");
    if (p !== null) {
      rule.path = parseStrMatch(c, p, f + ".path", false);
      if (rule.path === null) return false;
    }
    const r = e.get("route");
    if (r !== null) {
      rule.route = parseStrMatch(c, r, f + ".route", false);
      if (rule.route === null) return false;
    }
    const cl = e.get("cluster");
    if (cl !== null) {
      rule.cluster = parseStrMatch(c, cl, f + ".cluster", false);
      if (rule.cluster === null) return false;
    }
    cfg.matches.push(rule);
  }
  return true;
}

function parseKeys(c: ErrorCollector, keys: JValue | null, cfg: Config): bool {
  if (keys === null) return c.fail("rateLimitKeys", "required", null);
  if (keys.kind != J_ARR || keys.items.length == 0) return c.fail("rateLimitKeys", "expected a non-empty array of strings", keys);
  if (keys.items.length > MAX_KEYS) {
    return c.fail("rateLimitKeys", "at most " + MAX_KEYS.toString() + " key templates (the protocol's bound), got " + keys.items.length.toString(), null);
  }
  for (let i = 0; i < keys.items.length; i++) {
    const k = keys.items[i];
    const f = "rateLimitKeys[" + i.toString() + "]";
    if (!nonEmptyString(c, k, f)) return false;
    const t = parseTemplate(str(k));
    if (t.template === null) return c.fail(f, t.error, k);
    const tpl = <Template>t.template;
    if (tpl.needsBody) cfg.keysNeedBody = true;
    for (let j = 0; j < tpl.segments.length; j++) {
      if (tpl.segments[j].kind == SEG_BODY) cfg.bodyPaths.push(tpl.segments[j].arg);
    }
    cfg.keys.push(tpl);
  }
  return true;
}

function parseService(c: ErrorCollector, svc: JValue | null, cfg: Config): bool {
  if (svc === null) return c.fail("rateLimitService", "required", null);
  if (svc.kind != J_OBJ) return c.fail("rateLimitService", "expected an object", svc);
  if (!knownFields(c, svc, "rateLimitService.", SERVICE_FIELDS)) return false;
  const service = svc.get("service");
  const port = svc.get("port");
  const cluster = svc.get("cluster");
  let serviceName = "";
  if (service !== null) {
    if (!nonEmptyString(c, service, "rateLimitService.service")) return false;
    serviceName = str(service);
  }
  let portNum = -1;
  if (port !== null) {
    portNum = intIn(c, port, "rateLimitService.port", 1, 65535);
    if (portNum < 0) return false;
  }
  if (cluster !== null) {
    if (!nonEmptyString(c, cluster, "rateLimitService.cluster")) return false;
    cfg.cluster = <ByteBuf>cluster.s;
  } else {
    if (service === null) return c.fail("rateLimitService.service", "required (or set rateLimitService.cluster)", null);
    if (port === null) return c.fail("rateLimitService.port", "required (or set rateLimitService.cluster)", null);
    // Istio's sidecar names the outbound cluster of a service port like this.
    cfg.cluster = ByteBuf.fromString("outbound|" + portNum.toString() + "||" + serviceName);
  }
  const auth = svc.get("authority");
  if (auth !== null) {
    if (!nonEmptyString(c, auth, "rateLimitService.authority")) return false;
    cfg.authority = <ByteBuf>auth.s;
  } else if (service !== null) {
    cfg.authority = ByteBuf.fromString(serviceName);
  } else {
    cfg.authority = cfg.cluster;
  }
  const timeout = svc.get("timeoutMs");
  if (timeout !== null) {
    const t = intIn(c, timeout, "rateLimitService.timeoutMs", 1, 60000);
    if (t < 0) return false;
    cfg.timeoutMs = <u32>t;
  }
  const token = svc.get("token");
  if (token !== null) {
    // The value is a secret: errors never print it.
    if (token.kind != J_STR || token.s === null || (<ByteBuf>token.s).length == 0) {
      return c.fail("rateLimitService.token", "expected a non-empty string", null);
    }
    const tb = <ByteBuf>token.s;
    for (let i = 0; i < tb.length; i++) {
      const ch = tb.at(i);
      if (ch <= 0x20 || ch >= 0x7f) return c.fail("rateLimitService.token", "must be printable ASCII without spaces", null);
    }
    cfg.token = tb;
  }
  return true;
}

function parseFailurePolicy(c: ErrorCollector, root: JValue, cfg: Config): bool {
  const failOpen = root.get("failOpen");
  const fallOpen = root.get("fallOpen"); // the reference README's spelling
  if (failOpen !== null && fallOpen !== null && (failOpen.kind != fallOpen.kind || failOpen.b != fallOpen.b)) {
    return c.fail("fallOpen", "conflicts with failOpen (set only one)", fallOpen);
  }
  // (if/else, not ?: — AssemblyScript 0.17's reference counting mishandles ?: on references)
  if (failOpen !== null) {
    if (failOpen.kind != J_BOOL) return c.fail("failOpen", "expected true or false", failOpen);
    cfg.failOpen = failOpen.b;
  } else if (fallOpen !== null) {
    if (fallOpen.kind != J_BOOL) return c.fail("fallOpen", "expected true or false", fallOpen);
    cfg.failOpen = fallOpen.b;
  }
  const rs = root.get("rejectStatus");
  if (rs !== null) {
    const s = intIn(c, rs, "rejectStatus", 400, 599);
    if (s < 0) return false;
    cfg.rejectStatus = <u32>s;
  }
  const rb = root.get("rejectBody");
  if (rb !== null) {
    if (rb.kind == J_STR && (<ByteBuf>rb.s).eqStr("openai")) cfg.rejectBody = BODY_OPENAI;
    else if (rb.kind == J_STR && (<ByteBuf>rb.s).eqStr("text")) cfg.rejectBody = BODY_TEXT;
    else return c.fail("rejectBody", 'expected "openai" or "text"', rb);
  }
  const nr = intField(c, root, "noRetryAboveSeconds", "noRetryAboveSeconds", 0, 31536000, cfg.noRetryAboveSeconds);
  if (nr < 0) return false;
  cfg.noRetryAboveSeconds = nr;
  const mk = root.get("onMissingKey");
  if (mk !== null) {
    if (mk.kind == J_STR && (<ByteBuf>mk.s).eqStr("deny")) cfg.onMissingKey = MISSING_DENY;
    else if (mk.kind == J_STR && (<ByteBuf>mk.s).eqStr("skip")) cfg.onMissingKey = MISSING_SKIP;
    else if (mk.kind == J_OBJ && mk.keys.length == 1 && mk.keys[0].eqStr("default") && mk.items[0].kind == J_STR) {
      cfg.onMissingKey = MISSING_DEFAULT;
      cfg.missingDefault = <ByteBuf>mk.items[0].s;
    } else {
      return c.fail("onMissingKey", 'expected "deny", "skip" or {"default": "<literal>"}', mk);
    }
  }
  return true;
}

/** Sizes, bounds and the usage switches. */
function parseLimits(c: ErrorCollector, root: JValue, cfg: Config): bool {
  let v = intField(c, root, "maxBufferBytes", "maxBufferBytes", 256, 1048576, cfg.maxBufferBytes);
  if (v < 0) return false;
  cfg.maxBufferBytes = v;
  v = intField(c, root, "maxKeyBytes", "maxKeyBytes", MIN_KEY_BYTES, MAX_KEY_BYTES, cfg.maxKeyBytes);
  if (v < 0) return false;
  cfg.maxKeyBytes = v;
  v = intField(c, root, "maxRequestBodyBytes", "maxRequestBodyBytes", 1024, 16777216, cfg.maxRequestBodyBytes);
  if (v < 0) return false;
  cfg.maxRequestBodyBytes = v;
  v = intField(c, root, "maxQueuedReports", "maxQueuedReports", 0, 1000000, cfg.maxQueuedReports);
  if (v < 0) return false;
  cfg.maxQueuedReports = v;
  let b = boolField(c, root, "includeStreamUsage", "includeStreamUsage", cfg.includeStreamUsage);
  if (b < 0) return false;
  cfg.includeStreamUsage = b == 1;
  b = boolField(c, root, "estimateMissingUsage", "estimateMissingUsage", cfg.estimateMissingUsage);
  if (b < 0) return false;
  cfg.estimateMissingUsage = b == 1;
  b = boolField(c, root, "budgetHeaders", "budgetHeaders", cfg.budgetHeaders);
  if (b < 0) return false;
  cfg.budgetHeaders = b == 1;
  b = boolField(c, root, "allowCompressedRequests", "allowCompressedRequests", cfg.allowCompressedRequests);
  if (b < 0) return false;
  cfg.allowCompressedRequests = b == 1;
  const up = root.get("upgrades");
  if (up !== null) {
    if (up.kind == J_STR && (<ByteBuf>up.s).eqStr("refuse")) cfg.upgrades = UPGRADES_REFUSE;
    else if (up.kind == J_STR && (<ByteBuf>up.s).eqStr("unmetered")) cfg.upgrades = UPGRADES_UNMETERED;
    else return c.fail("upgrades", 'expected "refuse" or "unmetered"', up);
  }
  return true;
}

function parseReserve(c: ErrorCollector, v: JValue, cfg: Config): bool {
  if (v.kind != J_OBJ) return c.fail("reserve", "expected an object", v);
  if (!knownFields(c, v, "reserve.", RESERVE_FIELDS)) return false;
  const en = boolField(c, v, "enabled", "reserve.enabled", false);
  if (en < 0) return false;
  cfg.reserve = en == 1;
  const mb = intField(c, v, "maxBodyBytes", "reserve.maxBodyBytes", 1024, 16777216, cfg.maxRequestBodyBytes);
  if (mb < 0) return false;
  cfg.maxRequestBodyBytes = mb;
  const isu = boolField(c, v, "includeStreamUsage", "reserve.includeStreamUsage", cfg.includeStreamUsage);
  if (isu < 0) return false;
  cfg.includeStreamUsage = isu == 1;
  return parseEstimateFields(c, v, "reserve.", cfg.estimate);
}

function parseEstimate(c: ErrorCollector, v: JValue, r: EstimateConfig): bool {
  if (v.kind != J_OBJ) return c.fail("estimate", "expected an object", v);
  if (!knownFields(c, v, "estimate.", ESTIMATE_FIELDS)) return false;
  return parseEstimateFields(c, v, "estimate.", r);
}

function parseEstimateFields(c: ErrorCollector, v: JValue, prefix: string, r: EstimateConfig): bool {
  const cpt = ratioField(c, v, "charsPerToken", prefix + "charsPerToken", r.charsPerToken);
  if (cpt < 0) return false;
  r.charsPerToken = cpt;
  const cjk = ratioField(c, v, "cjkCharsPerToken", prefix + "cjkCharsPerToken", r.cjkCharsPerToken);
  if (cjk < 0) return false;
  r.cjkCharsPerToken = cjk;
  const dc = intField(c, v, "defaultCompletionTokens", prefix + "defaultCompletionTokens", 0, 1000000, r.defaultCompletionTokens);
  if (dc < 0) return false;
  r.defaultCompletionTokens = dc;
  return true;
}
