// Which requests the plugin handles: any `matches` entry whose host and path (both
// optional) match. No entries = every request. Host: lower case, without port.
// Path: without the query string.

import { ByteBuf } from "./bytes";
import { Config, StrMatch, M_EXACT, M_PREFIX } from "./config";
import { RequestView } from "./request";

function matchStr(m: StrMatch, v: ByteBuf | null): bool {
  if (v === null) return false;
  let p = m.value;
  let n = p.length;
  if (m.kind == M_EXACT) return v.equals(p);
  if (n > v.length) return false;
  let off: usize = m.kind == M_PREFIX ? 0 : <usize>(v.length - n);
  return memory.compare(v.ptr() + off, p.ptr(), <usize>n) == 0;
}

export function requestMatches(cfg: Config, req: RequestView): bool {
  let rules = cfg.matches;
  if (rules.length == 0) return true;
  for (let i = 0; i < rules.length; i++) {
    let r = rules[i];
    let h = r.host;
    if (h !== null && !req.hostMatches(h.kind, h.value)) continue;
    let p = r.path;
    if (p !== null && !matchStr(p, req.path())) continue;
    return true;
  }
  return false;
}
