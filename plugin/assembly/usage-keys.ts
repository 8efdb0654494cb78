// What the key before a value tells the usage scanner (usage.ts): a usage object, a parent of
// one, generated text (counted for estimates), or nothing of interest; and, from the key and
// the depth, where a usage object is accepted. Classified by length, then first byte: most
// keys match none, and this runs for every key near the top of every event.

import { ByteBuf } from "./bytes";

export const K_OTHER = 0;
export const K_USAGE = 1;
export const K_MESSAGE = 2;
export const K_RESPONSE = 3;
export const K_TEXT = 4;     // generated text (only with countText): content, text, reasoning, ...
export const K_DELTA = 5;    // "delta": a parent of usage (Cohere message-end) or, as a string, generated text
export const K_XGROQ = 6;    // "x_groq": parent of usage in older Groq streams
export const K_METRICS = 7;  // "amazon-bedrock-invocationMetrics": Bedrock InvokeModel stream counts (a fallback)
export const K_CHOICES = 8;  // "choices": its elements may hold usage (Moonshot's 2024 streams: choices[0].usage)
export const K_EMBEDDING = 9;      // "embedding" / "embeddingsByType": the document is an embeddings response
export const K_INPUT_TEXT_TOKENS = 10; // "inputTextTokenCount": Titan's prompt count, a bare number

/** Keys whose object may hold a usage object one level down. */
export function usageParent(k: i32): bool {
  return k == K_MESSAGE || k == K_RESPONSE || k == K_DELTA || k == K_XGROQ;
}

/**
 * What an object opened after a key of kind `ak`, `rel` levels below the top (1 = a key of the
 * document, or of an element of a top-level array), is: K_USAGE, K_METRICS or -1 (nothing to
 * read). `parent`: the kind of the top-level key whose value holds it (arrayParent for arrays).
 * Accepted: usage at the top, one level down under message/response/delta/x_groq, and in an
 * element of "choices"; Bedrock's metrics at the top only.
 */
@inline export function objectAt(ak: i32, rel: i32, parent: i32): i32 {
  if (ak == K_USAGE) {
    if (rel == 1 || (rel == 2 && usageParent(parent)) || (rel == 3 && parent == K_CHOICES)) return K_USAGE;
    return -1;
  }
  return ak == K_METRICS && rel == 1 ? K_METRICS : -1;
}

/** The parent kind an array opened after a top-level key of kind `ak` gives the values in it. */
@inline export function arrayParent(ak: i32): i32 { return ak == K_CHOICES ? K_CHOICES : K_OTHER; }

/**
 * Whether a string `rel` levels down is read as a possible key (deeper only for text counting).
 * In an element of "choices" only "usage" is of interest: `first`, the string's first byte
 * (-1: not known yet), spares reading the others (these are in every event of an OpenAI stream).
 */
@inline export function tracksKeys(rel: i32, parent: i32, countText: bool, first: i32): bool {
  return rel >= 1 && (rel <= 2 || countText || (rel == 3 && parent == K_CHOICES && (first == 0x75 || first < 0)));
}

/**
 * The kind of a key (K_*); text keys only when generated text is counted. Dispatched on the
 * length, then on the first byte: most keys match nothing and cost two compares (a full
 * compare is a loop with the runtime's reference counting, and this runs for every key).
 */
export function classify(k: ByteBuf, countText: bool): i32 {
  let n = k.length;
  if (n < 4) return K_OTHER;
  let c = k.at(0);
  switch (n) {
    case 4: return countText && c == 0x74 && k.eqStr("text") ? K_TEXT : K_OTHER;
    case 5:
      if (c == 0x75) return k.eqStr("usage") ? K_USAGE : K_OTHER;
      return c == 0x64 && k.eqStr("delta") ? K_DELTA : K_OTHER;
    case 6: return c == 0x78 && k.eqStr("x_groq") ? K_XGROQ : K_OTHER;
    case 7:
      if (c == 0x6d) return k.eqStr("message") ? K_MESSAGE : K_OTHER;
      if (c == 0x63) {
        if (k.eqStr("choices")) return K_CHOICES;
        return countText && k.eqStr("content") ? K_TEXT : K_OTHER;
      }
      return K_OTHER;
    case 8:
      if (c == 0x72) return k.eqStr("response") ? K_RESPONSE : K_OTHER;
      return countText && c == 0x74 && k.eqStr("thinking") ? K_TEXT : K_OTHER;
    case 9:
      if (c == 0x65) return k.eqStr("embedding") ? K_EMBEDDING : K_OTHER;
      if (!countText) return K_OTHER;
      return (c == 0x72 && k.eqStr("reasoning")) || (c == 0x61 && k.eqStr("arguments")) ? K_TEXT : K_OTHER;
    // Bedrock InvokeModel bodies: Titan Text's and Llama's generated text.
    case 10:
      if (!countText) return K_OTHER;
      return (c == 0x6f && k.eqStr("outputText")) || (c == 0x67 && k.eqStr("generation")) ? K_TEXT : K_OTHER;
    case 12: return countText && c == 0x70 && k.eqStr("partial_json") ? K_TEXT : K_OTHER;
    case 13: return c == 0x75 && k.eqStr("usageMetadata") ? K_USAGE : K_OTHER;
    case 16: return c == 0x65 && k.eqStr("embeddingsByType") ? K_EMBEDDING : K_OTHER;
    case 17: return countText && c == 0x72 && k.eqStr("reasoning_content") ? K_TEXT : K_OTHER;
    case 19: return c == 0x69 && k.eqStr("inputTextTokenCount") ? K_INPUT_TEXT_TOKENS : K_OTHER;
    case 32: return c == 0x61 && k.eqStr("amazon-bedrock-invocationMetrics") ? K_METRICS : K_OTHER;
  }
  return K_OTHER;
}
