// The one change the plugin makes to a request body (includeStreamUsage): a streaming
// OpenAI-style request that does not ask for usage is made to, so the response carries it.

import { ByteBuf } from "./bytes";
import { JValue, J_OBJ, J_BOOL } from "./json";

/**
 * For an OpenAI-style streaming request ({"stream": true, "messages" or "prompt"}) without
 * stream_options.include_usage: the same bytes with it added (merged into an existing
 * stream_options object). Null when nothing needs to change. Edits are textual, at the
 * parsed value offsets, so everything else stays byte for byte.
 */
export function withStreamUsage(body: ByteBuf, root: JValue): ByteBuf | null {
  const st = root.get("stream");
  if (st === null || st.kind != J_BOOL || !st.b) return null;
  if (root.get("messages") === null && root.get("prompt") === null) return null;
  if (root.get("anthropic_version") !== null) return null;
  const so = root.get("stream_options");
  if (so === null) {
    // (if/else, not ?: on strings: see the README's toolchain notes)
    let text = '"stream_options":{"include_usage":true}';
    if (root.keys.length > 0) text = "," + text;
    return splice(body, root.end - 1, root.end - 1, text);
  }
  if (so.kind != J_OBJ) return splice(body, so.start, so.end, '{"include_usage":true}');
  const iu = so.get("include_usage");
  if (iu === null) {
    let text = '"include_usage":true';
    if (so.keys.length > 0) text = "," + text;
    return splice(body, so.end - 1, so.end - 1, text);
  }
  if (iu.kind == J_BOOL && iu.b) return null;
  return splice(body, iu.start, iu.end, "true");
}

function splice(body: ByteBuf, from: i32, to: i32, text: string): ByteBuf {
  const out = new ByteBuf(body.length + text.length);
  out.appendRaw(body.ptr(), from);
  out.appendString(text);
  out.appendRaw(body.ptr() + <usize>to, body.length - to);
  return out;
}
