// What the plugin reads from a buffered request body, parsed once as JSON: what the request
// will cost (prompt-estimate.ts), its "model" (reported with the usage), the parsed body for
// key templates that read body fields, and the body rewritten for includeStreamUsage
// (body-rewrite.ts). The filter buffers the body for this only up to maxRequestBodyBytes.

import { ByteBuf } from "./bytes";
import { EstimateConfig } from "./config";
import { parseJson, JValue, J_OBJ, J_STR } from "./json";
import { lengthTokens } from "./token-estimate";
import { promptTokens, completionBound } from "./prompt-estimate";
import { withStreamUsage } from "./body-rewrite";

export const MAX_MODEL_BYTES = 128;

export class RequestBody {
  prompt: i64 = 0; // estimated prompt tokens
  completion: i64 = 0; // estimated completion tokens (the request's bound)
  /** The body with stream_options.include_usage added, when includeStreamUsage applied. */
  rewritten: ByteBuf | null = null;
  /** The parsed body (null if not JSON), for key templates that read body fields. */
  json: JValue | null = null;
  /** The request's "model" (a string of at most MAX_MODEL_BYTES), reported with the usage. */
  model: ByteBuf | null = null;
}

/**
 * Reads a buffered request body. `mayRewrite`: includeStreamUsage is on and the request is
 * not for an API that rejects stream_options (see filter.ts).
 */
export function readRequestBody(body: ByteBuf, r: EstimateConfig, mayRewrite: bool): RequestBody {
  const e = new RequestBody();
  const root = parseJson(body);
  e.json = root;
  if (root === null || root.kind != J_OBJ) {
    e.prompt = lengthTokens(body.length, r);
    e.completion = r.defaultCompletionTokens;
    return e;
  }
  const m = root.get("model");
  if (m !== null && m.kind == J_STR && m.s !== null && (<ByteBuf>m.s).length <= MAX_MODEL_BYTES) e.model = m.s;
  e.prompt = promptTokens(root, body.length, r);
  e.completion = completionBound(root, r.defaultCompletionTokens);
  if (mayRewrite) e.rewritten = withStreamUsage(body, root);
  return e;
}
