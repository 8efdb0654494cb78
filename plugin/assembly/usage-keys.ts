// What the key before a value tells the usage scanner (usage.ts): a usage object, a parent of
// one, generated text (counted for estimates), or nothing of interest. Classified by length
// first: most keys match none, and this runs for every key near the top of every event.

import { ByteBuf } from "./bytes";

export const K_OTHER = 0;
export const K_USAGE = 1;
export const K_MESSAGE = 2;
export const K_RESPONSE = 3;
export const K_TEXT = 4;     // generated text (only with countText): content, text, reasoning, ...
export const K_DELTA = 5;    // "delta": a parent of usage (Cohere message-end) or, as a string, generated text
export const K_XGROQ = 6;    // "x_groq": parent of usage in older Groq streams
export const K_METRICS = 7;  // "amazon-bedrock-invocationMetrics": Bedrock InvokeModel stream counts (a fallback)

/** Keys whose object may hold a usage object one level down. */
export function usageParent(k: i32): bool {
  return k == K_MESSAGE || k == K_RESPONSE || k == K_DELTA || k == K_XGROQ;
}

/** The kind of a key (K_*); text keys only when generated text is counted. */
export function classify(k: ByteBuf, countText: bool): i32 {
  switch (k.length) {
    case 4: return countText && k.eqStr("text") ? K_TEXT : K_OTHER;
    case 5:
      if (k.eqStr("usage")) return K_USAGE;
      if (k.eqStr("delta")) return K_DELTA;
      return K_OTHER;
    case 6: return k.eqStr("x_groq") ? K_XGROQ : K_OTHER;
    case 7:
      if (k.eqStr("message")) return K_MESSAGE;
      return countText && k.eqStr("content") ? K_TEXT : K_OTHER;
    case 8:
      if (k.eqStr("response")) return K_RESPONSE;
      return countText && k.eqStr("thinking") ? K_TEXT : K_OTHER;
    case 9: return countText && (k.eqStr("reasoning") || k.eqStr("arguments")) ? K_TEXT : K_OTHER;
    case 12: return countText && k.eqStr("partial_json") ? K_TEXT : K_OTHER;
    case 13: return k.eqStr("usageMetadata") ? K_USAGE : K_OTHER;
    case 17: return countText && k.eqStr("reasoning_content") ? K_TEXT : K_OTHER;
    case 32: return k.eqStr("amazon-bedrock-invocationMetrics") ? K_METRICS : K_OTHER;
  }
  return K_OTHER;
}
