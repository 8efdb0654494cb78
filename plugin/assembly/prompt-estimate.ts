// What a request will cost, estimated from its parsed JSON body (token-estimate.ts does the
// counting). Prompt: the text the model will read — messages[].content (strings, or parts with
// text), prompt, input, instructions, system, contents[].parts[].text, systemInstruction —
// or, without any, the body's length. Completion: the request's own output bound
// (max_tokens, max_completion_tokens, max_output_tokens, generationConfig.maxOutputTokens)
// or defaultCompletionTokens, times `n` choices.

import { EstimateConfig } from "./config";
import { JValue, J_OBJ, J_ARR, J_STR, J_NUM } from "./json";
import { CharCounter, tokensFor, lengthTokens, MAX_ESTIMATE } from "./token-estimate";

const MAX_TEXT_DEPTH = 12;

// Top-level fields holding text the model reads, across the supported APIs.
const PROMPT_FIELDS = ["messages", "prompt", "input", "instructions", "system", "contents",
  "systemInstruction", "system_instruction"];
// Inside those: where text sits in messages, parts and items.
const TEXT_KEYS = ["text", "content", "parts"];

function countText(v: JValue, cc: CharCounter, depth: i32): void {
  if (depth > MAX_TEXT_DEPTH) return;
  if (v.kind == J_STR) {
    let s = v.s;
    if (s !== null) cc.bytes(s.ptr(), s.length);
  } else if (v.kind == J_ARR) {
    for (let i = 0; i < v.items.length; i++) countText(v.items[i], cc, depth + 1);
  } else if (v.kind == J_OBJ) {
    for (let k = 0; k < TEXT_KEYS.length; k++) {
      let f = v.get(TEXT_KEYS[k]);
      if (f !== null) countText(f, cc, depth + 1);
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
  let cc = new CharCounter();
  for (let i = 0; i < PROMPT_FIELDS.length; i++) {
    let f = root.get(PROMPT_FIELDS[i]);
    if (f !== null) countText(f, cc, 0);
  }
  if (cc.chars() > 0) return tokensFor(cc.other, cc.cjk, r);
  return lengthTokens(bodyLength, r);
}
