// What the plugin reads from a buffered request body, parsed once as JSON: what the request
// will cost (prompt-estimate.ts), its "model" (reported with the usage), the parsed body for
// key templates that read body fields, and the body rewritten for includeStreamUsage
// (body-rewrite.ts). The filter buffers the body for this only up to maxRequestBodyBytes.

import { ByteBuf } from "./bytes";
import { EstimateConfig } from "./config";
import { parseJson, foldEq, JValue, J_OBJ, J_STR } from "./json";
import { lengthTokens } from "./token-estimate";
import { promptTokens, completionBound } from "./prompt-estimate";
import { withStreamUsage } from "./body-rewrite";

export const MAX_MODEL_BYTES = 128;

// Top-level fields the plugin reads (model, the rewrite, the estimate). An upstream that matches
// names case-insensitively (Go's encoding/json: the last spelling wins) may read another one than
// the plugin (exact, last wins): {"model":"gpt-cheap","Model":"gpt-expensive"}. So each must be
// spelled exactly and appear once.
const READ_FIELDS = [
  "model",
  "stream",
  "stream_options",
  "messages",
  "prompt",
  "input",
  "instructions",
  "system",
  "contents",
  "systemInstruction",
  "system_instruction",
  "max_tokens",
  "max_completion_tokens",
  "max_output_tokens",
  "generationConfig",
  "generation_config",
  "n",
  "anthropic_version",
];
const READ_NAMES: ByteBuf[] = [];
for (let i = 0; i < READ_FIELDS.length; i++) READ_NAMES.push(ByteBuf.fromString(READ_FIELDS[i]));
const INCLUDE_USAGE = ByteBuf.fromString("include_usage");
const STREAM_OPTIONS = ByteBuf.fromString("stream_options");

export class RequestBody {
  prompt: i64 = 0; // estimated prompt tokens
  completion: i64 = 0; // estimated completion tokens (the request's bound)
  /** The body with stream_options.include_usage added, when includeStreamUsage applied. */
  rewritten: ByteBuf | null = null;
  /** The parsed body (null if not JSON), for key templates that read body fields. */
  json: JValue | null = null;
  /** The request's "model" (a string of at most MAX_MODEL_BYTES), reported with the usage. */
  model: ByteBuf | null = null;
  /** A field the plugin reads that appears twice or spelled otherwise (case folded): the request is refused. */
  ambiguous: ByteBuf | null = null;
}

/**
 * Reads a buffered request body. `mayRewrite`: includeStreamUsage is on and the request is
 * not for an API that rejects stream_options (see filter.ts).
 */
export function readRequestBody(body: ByteBuf, r: EstimateConfig, mayRewrite: bool, bodyPaths: ByteBuf[]): RequestBody {
  const e = new RequestBody();
  const root = parseJson(body);
  e.json = root;
  if (root === null || root.kind != J_OBJ) {
    e.prompt = lengthTokens(body.length, r);
    e.completion = r.defaultCompletionTokens;
    return e;
  }
  e.ambiguous = ambiguousField(root, bodyPaths);
  if (e.ambiguous !== null) return e;
  const m = root.get("model");
  if (m !== null && m.kind == J_STR && m.s !== null && (<ByteBuf>m.s).length <= MAX_MODEL_BYTES) e.model = m.s;
  e.prompt = promptTokens(root, body.length, r);
  e.completion = completionBound(root, r.defaultCompletionTokens);
  if (mayRewrite) e.rewritten = withStreamUsage(body, root);
  return e;
}

/** Whether `name` is, among obj's members, other than exactly one member spelled exactly so (case folded). */
function ambiguousName(obj: JValue, name: ByteBuf): bool {
  let n = 0;
  let exact = false;
  const keys = obj.keys;
  for (let i = 0; i < keys.length; i++) {
    if (keys[i].length > name.length * 3) continue; // too long to fold to it
    if (foldEq(keys[i], name)) {
      n++;
      if (keys[i].equals(name)) exact = true;
    }
  }
  return n > 1 || (n == 1 && !exact);
}

/** The first field the plugin reads that is ambiguous (see READ_FIELDS), as a dotted path; or null. */
function ambiguousField(root: JValue, bodyPaths: ByteBuf[]): ByteBuf | null {
  for (let i = 0; i < READ_NAMES.length; i++) {
    if (ambiguousName(root, READ_NAMES[i])) return READ_NAMES[i];
  }
  const so = root.member(STREAM_OPTIONS);
  if (so !== null && so.kind == J_OBJ && ambiguousName(so, INCLUDE_USAGE)) return ByteBuf.fromString("stream_options.include_usage");
  // Key templates' body fields ("metadata\0user_id"): every level of the path.
  for (let p = 0; p < bodyPaths.length; p++) {
    const path = bodyPaths[p];
    let v: JValue | null = root;
    let start = 0;
    for (let i = 0; i <= path.length && v !== null && v.kind == J_OBJ; i++) {
      if (i < path.length && path.at(i) != 0) continue;
      const seg = path.slice(start, i);
      if (ambiguousName(<JValue>v, seg)) return pathText(path);
      v = (<JValue>v).member(seg);
      start = i + 1;
    }
  }
  return null;
}

/** "a\0b" -> "a.b". */
function pathText(path: ByteBuf): ByteBuf {
  const out = new ByteBuf(path.length);
  for (let i = 0; i < path.length; i++) out.push(path.at(i) == 0 ? 0x2e : path.at(i));
  return out;
}
