// What a request will cost, estimated from its parsed JSON body (token-estimate.ts does the
// counting). Prompt: every string value in the body, wherever it sits — providers bill tool
// definitions and arguments, system prompts, instructions, Anthropic's system and tools,
// Gemini's contents and systemInstruction as input, and a client must not be able to move text
// to where a list of known fields does not look. Left out: the values of a few labels that are
// not text the model reads (model, role, type, ids, enums) and of settings (metadata,
// stream_options, cache_control). Object keys count inside JSON schemas (tool parameters,
// response formats) and tool-call inputs given as objects, where the provider bills them too. Images, audio, files: a
// fixed MEDIA_TOKENS each, whatever their encoding. Strings count as the characters they
// decode to (\uXXXX escapes included). A body with no text at all: its length.
// Completion: the request's own output bound (max_tokens, max_completion_tokens,
// max_output_tokens, generationConfig.maxOutputTokens) or defaultCompletionTokens, times `n`.

import { EstimateConfig } from "./config";
import { JValue, J_OBJ, J_ARR, J_STR, J_NUM } from "./json";
import { ByteBuf } from "./bytes";
import { CharCounter, tokensFor, lengthTokens, MAX_ESTIMATE } from "./token-estimate";

/**
 * One image, audio clip or file in a prompt. Anthropic bills an image of up to 1.15 megapixels
 * about 1,600 tokens (width x height / 750); OpenAI a high-detail 2048x768 image 1,105; Gemini
 * 258 per 768x768 tile. Audio and files vary more; this is the estimate's fixed cost for any of them.
 */
export const MEDIA_TOKENS: i64 = 1600;

// String values that label rather than say something (left out when they are strings).
const LABEL_KEYS = ["model", "role", "type", "id", "object", "tool_call_id", "call_id", "user", "tool_choice",
  "service_tier", "reasoning_effort", "prompt_cache_key", "safety_identifier", "previous_response_id",
  "mime_type", "mimeType", "media_type", "detail", "encoding_format", "voice", "truncation", "status"];
// Values that are settings, never sent to the model (left out whatever they hold).
const SETTING_KEYS = ["metadata", "stream_options", "cache_control", "modalities", "include"];
// Values that are one media item each (image, audio, file), charged MEDIA_TOKENS.
const MEDIA_KEYS = ["image_url", "input_audio", "inlineData", "inline_data", "fileData", "file_data",
  "image", "audio", "video", "file", "file_id", "file_url", "image_file", "document"];
// Values whose keys are billed too: JSON schemas (property names) and, when they are objects,
// tool calls' inputs and results (Anthropic tool_use input, Gemini functionCall args and
// functionResponse response): a client must not hide text in key names there.
const SCHEMA_KEYS = ["parameters", "input_schema", "inputSchema", "schema", "json_schema", "parametersJsonSchema",
  "responseSchema", "response_schema", "responseJsonSchema"];
const FREE_FORM_KEYS = ["input", "args", "response", "arguments"];

function isOneOf(k: ByteBuf, list: string[]): bool {
  for (let i = 0; i < list.length; i++) if (k.eqStr(list[i])) return true;
  return false;
}

// What the prompt holds, counted by countValue: characters and media items (reused: one
// count at a time, nothing allocated per request).
const chars = new CharCounter();
let media: i64 = 0;

/** Anthropic's content-block "source": binary (base64, url, file) is a media item; a text source is text. */
function binarySource(v: JValue): bool {
  if (v.kind != J_OBJ) return false;
  let t = v.get("type");
  if (t === null || t.kind != J_STR || t.s === null) return true;
  let ts = <ByteBuf>t.s;
  return !(ts.eqStr("text") || ts.eqStr("content"));
}

/** `top`: v is the body itself (its "audio" is OpenAI's output-audio setting, not an input clip). */
function countValue(v: JValue, schema: bool, top: bool = false): void {
  if (v.kind == J_STR) {
    let s = v.s;
    if (s !== null) chars.bytes(s.ptr(), s.length);
  } else if (v.kind == J_ARR) {
    for (let i = 0; i < v.items.length; i++) countValue(v.items[i], schema);
  } else if (v.kind == J_OBJ) {
    for (let i = 0; i < v.keys.length; i++) {
      let k = v.keys[i];
      let f = v.items[i];
      if (schema) chars.bytes(k.ptr(), k.length);
      if (f.kind == J_STR && isOneOf(k, LABEL_KEYS)) continue;
      if (isOneOf(k, SETTING_KEYS) || (top && k.eqStr("audio"))) continue;
      if (isOneOf(k, MEDIA_KEYS) || (k.eqStr("source") && binarySource(f))) { media++; continue; }
      countValue(f, schema || isOneOf(k, SCHEMA_KEYS) || (f.kind == J_OBJ && isOneOf(k, FREE_FORM_KEYS)));
    }
  }
}

/** A sane token bound from a JSON number, or -1. */
function bound(v: JValue | null): i64 {
  if (v === null || v.kind != J_NUM) return -1;
  let n = v.n;
  if (!(n >= 0)) return -1;
  if (n > <f64>MAX_ESTIMATE) return MAX_ESTIMATE;
  return <i64>Math.floor(n);
}

/** The completion's bound: the request's own, or dflt; times its choices. */
export function completionBound(root: JValue, dflt: i64): i64 {
  let b = bound(root.get("max_tokens"));
  if (b < 0) b = bound(root.get("max_completion_tokens"));
  if (b < 0) b = bound(root.get("max_output_tokens"));
  if (b < 0) {
    let gc = root.get("generationConfig");
    if (gc === null) gc = root.get("generation_config");
    if (gc !== null && gc.kind == J_OBJ) {
      b = bound(gc.get("maxOutputTokens"));
      if (b < 0) b = bound(gc.get("max_output_tokens"));
    }
  }
  if (b < 0) b = dflt;
  // OpenAI `n`: that many choices, each up to the bound.
  let n = root.get("n");
  if (n !== null && n.kind == J_NUM && n.n >= 2 && n.n <= 128) b *= <i64>Math.floor(n.n);
  if (b > MAX_ESTIMATE) b = MAX_ESTIMATE;
  return b;
}

/**
 * Tokens of the prompt in a parsed body object (`bodyLength` bytes long). Inlined: as a call it
 * would retain and release the parsed body once more (and the module would grow).
 */
@inline export function promptTokens(root: JValue, bodyLength: i32, r: EstimateConfig): i64 {
  chars.reset();
  media = 0;
  countValue(root, false, true);
  if (chars.chars() == 0 && media == 0) return lengthTokens(bodyLength, r);
  let t = tokensFor(chars.other, chars.cjk, r) + media * MEDIA_TOKENS;
  return t > MAX_ESTIMATE ? MAX_ESTIMATE : t;
}
