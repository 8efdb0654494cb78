// Which requests the plugin handles: any `matches` entry whose conditions (host, path,
// route, cluster; each optional) all hold. No entries = every request. Host: lower case,
// without port or trailing dot. Path: without the query string. Route and cluster: the
// names Envoy resolved for the request (xds.route_name, xds.cluster_name).

import { ByteBuf, matchAt } from "./bytes";
import { Config, StrMatch } from "./config";
import { RequestView, property } from "./request";

export const MATCH_NO = 0;
export const MATCH_YES = 1;
/** A host rule had to judge a malformed Host (see RequestView.hostMalformed): refuse the request. */
export const MATCH_BAD_HOST = 2;

const ROUTE_NAME = ByteBuf.fromString("xds\0route_name");
const CLUSTER_NAME = ByteBuf.fromString("xds\0cluster_name");

function matchStr(m: StrMatch, v: ByteBuf | null): bool {
  if (v === null) return false;
  return matchAt(m.kind, m.value, v.ptr(), v.length, false);
}

export function requestMatches(cfg: Config, req: RequestView): i32 {
  const rules = cfg.matches;
  if (rules.length == 0) return MATCH_YES;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    const h = r.host;
    if (h !== null) {
      if (req.hostMalformed()) return MATCH_BAD_HOST;
      if (!req.hostMatches(h.kind, h.value)) continue;
    }
    const p = r.path;
    if (p !== null && !matchStr(p, req.path())) continue;
    const rt = r.route;
    if (rt !== null && !matchStr(rt, property(ROUTE_NAME))) continue;
    const cl = r.cluster;
    if (cl !== null && !matchStr(cl, property(CLUSTER_NAME))) continue;
    return MATCH_YES;
  }
  return MATCH_NO;
}
