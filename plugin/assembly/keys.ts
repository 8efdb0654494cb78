// Renders the configured key templates for one request, applying onMissingKey and the
// key length cap.

import { ByteBuf } from "./bytes";
import { Config, MISSING_DENY, MISSING_SKIP } from "./config";
import { RequestView } from "./request";
import { SEG_LITERAL, resolve } from "./template";
import { utf8Boundary } from "./encode";

export class RenderedKeys {
  keys: ByteBuf[] = [];
  /** Set when onMissingKey is "deny" and a placeholder had no value: that template's text. */
  missing: string | null = null;
}

export function renderKeys(cfg: Config, req: RequestView): RenderedKeys {
  let res = new RenderedKeys();
  for (let t = 0; t < cfg.keys.length; t++) {
    let tpl = cfg.keys[t];
    let out = new ByteBuf(64);
    let skip = false;
    for (let s = 0; s < tpl.segments.length; s++) {
      let seg = tpl.segments[s];
      if (seg.kind == SEG_LITERAL) { out.appendBuf(seg.arg); continue; }
      let v = resolve(seg, req);
      if (v !== null && v.length > 0) { out.appendBuf(v); continue; }
      // A client that omits the attribute must not silently escape its limit.
      if (cfg.onMissingKey == MISSING_DENY) { res.missing = tpl.text; return res; }
      if (cfg.onMissingKey == MISSING_SKIP) { skip = true; break; }
      out.appendBuf(cfg.missingDefault);
    }
    if (skip) continue;
    out.length = utf8Boundary(out, cfg.maxKeyBytes);
    res.keys.push(out);
  }
  return res;
}
