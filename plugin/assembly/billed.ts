// What a response's usage says it cost, as the provider bills it: every usage field seen in
// the response, each on its own, and how they add up to prompt / completion / total (the
// usage scanner in usage.ts finds the usage objects; this reads them).
//
// "Add" parts are billed on top of the base count (Anthropic cache reads/writes, Gemini
// thoughts); "in" parts are already inside it (OpenAI cached/reasoning details): reported,
// never added twice. See plugin/README.md, "Usage accounting", for the table per provider.
//
// The parts (cache read/write, reasoning) never change the charge (prompt + completion), and
// each is reported within its count: a pricing pipeline that bills the base as prompt - read -
// write must never see it negative. Where a provider's parts disagree with its counts, the
// cheap part (cache read) gives way first, then the cache write: the base, billed at full
// price, takes what they lose.

import { JValue, J_OBJ, J_NUM, J_ARR, J_STR } from "./json";

const MAX_TOKENS: f64 = 1e15;
export const MAX_SUM: i64 = 1000000000000000; // a sum of counts is as sane as one count

export class BilledUsage {
  // Usage fields as last reported (-1 = never seen).
  prompt: i64 = -1;            // prompt_tokens | input_tokens | promptTokenCount | inputTokens | Cohere input
  completion: i64 = -1;        // completion_tokens | output_tokens | candidatesTokenCount | outputTokens | Cohere output
  total: i64 = -1;             // total_tokens | totalTokenCount | totalTokens (as stated)
  cacheReadAdd: i64 = -1;      // Anthropic cache_read_input_tokens, Bedrock cacheReadInputTokens
  cacheWriteAdd: i64 = -1;     // Anthropic cache_creation_input_tokens, Bedrock cacheWriteInputTokens
  cacheReadIn: i64 = -1;       // *_tokens_details.cached_tokens, cachedContentTokenCount, prompt_cache_hit_tokens
  reasoningIn: i64 = -1;       // *_tokens_details.reasoning_tokens (OpenAI: inside; xAI: outside, see completionTokens)
  reasoningAdd: i64 = -1;      // Gemini thoughtsTokenCount
  toolPromptAdd: i64 = -1;     // Gemini toolUsePromptTokenCount
  iterIn: i64 = -1;            // Anthropic usage.iterations[]: sums over the billed iterations
  iterOut: i64 = -1;
  iterCacheRead: i64 = -1;
  iterCacheWrite: i64 = -1;
  // Bedrock InvokeModel streams: amazon-bedrock-invocationMetrics in the last chunk, for any
  // model. Used only when the model's own usage was not found.
  metricsIn: i64 = -1;         // inputTokenCount
  metricsOut: i64 = -1;        // outputTokenCount
  metricsCacheRead: i64 = -1;  // cacheReadInputTokenCount
  metricsCacheWrite: i64 = -1; // cacheWriteInputTokenCount
  // Bedrock InvokeModel, Amazon Titan embeddings: {"embedding":[...],"inputTextTokenCount":N}.
  // Titan Text carries the same count without its output's: read only in an embeddings response.
  titanIn: i64 = -1;           // inputTextTokenCount
  embedding: bool = false;     // an "embedding" / "embeddingsByType" key at the top

  found(): bool { return this.ownUsage() || this.metricsIn >= 0 || this.metricsOut >= 0; }

  /** Usage in the provider's own format was seen (else only Bedrock's invocation metrics, if any). */
  ownUsage(): bool {
    return this.basePrompt() >= 0 || this.completion >= 0 || this.total >= 0 || this.cacheReadAdd >= 0 ||
      this.cacheWriteAdd >= 0 || this.iterIn >= 0 || this.iterOut >= 0;
  }

  /** The stated prompt count; an embeddings response's inputTextTokenCount (Titan) when none. */
  private basePrompt(): i64 {
    if (this.prompt >= 0) return this.prompt;
    return this.embedding ? this.titanIn : -1;
  }

  /** Prompt as billed: base input + cache reads + cache writes (+ Gemini tool-use prompt); compaction: all iterations. */
  promptTokens(): i64 {
    if (this.iterIn >= 0 || this.iterOut >= 0) return pos(this.iterIn) + pos(this.iterCacheRead) + pos(this.iterCacheWrite);
    if (!this.ownUsage()) return pos(this.metricsIn) + pos(this.metricsCacheRead) + pos(this.metricsCacheWrite);
    return pos(this.basePrompt()) + pos(this.cacheReadAdd) + pos(this.cacheWriteAdd) + pos(this.toolPromptAdd);
  }

  /** Completion as billed: output + reasoning/thinking tokens when the provider reports them apart. */
  completionTokens(): i64 {
    if (this.iterIn >= 0 || this.iterOut >= 0) return pos(this.iterOut);
    if (!this.ownUsage()) return pos(this.metricsOut);
    let c = pos(this.completion) + pos(this.reasoningAdd);
    // xAI: completion_tokens leaves reasoning out, total_tokens has it. OpenAI: reasoning is
    // inside completion_tokens, and prompt + completion = total already.
    let r = this.reasoningIn;
    if (r > 0 && this.total >= 0 && this.promptTokens() + c + r == this.total) c += r;
    return c;
  }

  /** The stated total, unless it is below prompt + completion (then their sum). */
  totalTokens(): i64 {
    let sum = this.promptTokens() + this.completionTokens();
    if (this.iterIn >= 0 || this.iterOut >= 0) return sum;
    return this.total > sum ? this.total : sum;
  }

  /** Prompt tokens read from a cache (part of promptTokens, beside the cache write), 0 when unknown. */
  cacheReadTokens(): i64 {
    let r: i64;
    if (this.iterIn >= 0 || this.iterOut >= 0) r = pos(this.iterCacheRead);
    else if (!this.ownUsage()) r = pos(this.metricsCacheRead);
    else r = this.cacheReadAdd >= 0 ? this.cacheReadAdd : pos(this.cacheReadIn);
    let room = this.promptTokens() - this.cacheWriteTokens();
    return within(r, room);
  }

  /** Prompt tokens written to a cache (part of promptTokens), 0 when unknown. */
  cacheWriteTokens(): i64 {
    let w: i64;
    if (this.iterIn >= 0 || this.iterOut >= 0) w = pos(this.iterCacheWrite);
    else if (!this.ownUsage()) w = pos(this.metricsCacheWrite);
    else w = pos(this.cacheWriteAdd);
    return within(w, this.promptTokens());
  }

  /** Reasoning / thinking tokens (part of completionTokens), 0 when unknown. */
  reasoningTokens(): i64 {
    let r = this.reasoningAdd >= 0 ? this.reasoningAdd : pos(this.reasoningIn);
    return within(r, this.completionTokens());
  }

  /** Titan's inputTextTokenCount (a bare number at the top of the document). */
  mergeInputTextTokens(n: i64): void {
    if (n >= 0 && n <= MAX_SUM) this.titanIn = n;
  }

  /** Bedrock's amazon-bedrock-invocationMetrics object. */
  mergeMetrics(v: JValue): void {
    if (v.kind != J_OBJ) return;
    let x = num(v, "inputTokenCount");
    if (x >= 0) this.metricsIn = x;
    x = num(v, "outputTokenCount");
    if (x >= 0) this.metricsOut = x;
    x = num(v, "cacheReadInputTokenCount");
    if (x >= 0) this.metricsCacheRead = x;
    x = num(v, "cacheWriteInputTokenCount");
    if (x >= 0) this.metricsCacheWrite = x;
  }

  /** One usage object: the fields it carries replace the ones seen before, field by field. */
  merge(v: JValue): void {
    if (v.kind != J_OBJ) return;
    // One pass over the keys (a switch on the length, then a compare or two): this runs for
    // every usage object, and most responses carry just a handful of keys.
    let pt: i64 = -1, it: i64 = -1, ptc: i64 = -1, iT: i64 = -1;         // prompt candidates, by preference
    let ct: i64 = -1, ot: i64 = -1, cand: i64 = -1, oT: i64 = -1;        // completion candidates
    let tt: i64 = -1, ttc: i64 = -1, tT: i64 = -1;                       // total candidates
    let crA: i64 = -1, crB: i64 = -1, cwA: i64 = -1, cwB: i64 = -1;
    let crIn: i64 = -1, crIn2: i64 = -1, crIn3: i64 = -1, crIn4: i64 = -1, crIn5: i64 = -1;
    let rsIn: i64 = -1, rsIn2: i64 = -1, rsIn3: i64 = -1, thoughts: i64 = -1, toolUse: i64 = -1;
    let billed: JValue | null = null, toks: JValue | null = null, iters: JValue | null = null;
    let keys = v.keys;
    let items = v.items;
    for (let k = 0, n = keys.length; k < n; k++) {
      let key = keys[k];
      let item = items[k];
      switch (key.length) {
        case 6: if (key.eqStr("tokens")) toks = item; break;
        case 10: if (key.eqStr("iterations")) iters = item; break;
        case 11:
          if (key.eqStr("inputTokens")) iT = count(item);
          else if (key.eqStr("totalTokens")) tT = count(item);
          break;
        case 12:
          if (key.eqStr("input_tokens")) it = count(item);
          else if (key.eqStr("total_tokens")) tt = count(item);
          else if (key.eqStr("outputTokens")) oT = count(item);
          else if (key.eqStr("billed_units")) billed = item;
          break;
        case 13:
          if (key.eqStr("prompt_tokens")) pt = count(item);
          else if (key.eqStr("output_tokens")) ot = count(item);
          else if (key.eqStr("cached_tokens")) crIn5 = count(item);
          break;
        case 15: if (key.eqStr("totalTokenCount")) ttc = count(item); break;
        case 16: if (key.eqStr("promptTokenCount")) ptc = count(item); break;
        case 17: if (key.eqStr("completion_tokens")) ct = count(item); break;
        case 18: if (key.eqStr("thoughtsTokenCount")) thoughts = count(item); break;
        case 20:
          if (key.eqStr("candidatesTokenCount")) cand = count(item);
          else if (key.eqStr("cacheReadInputTokens")) crB = count(item);
          else if (key.eqStr("input_tokens_details")) crIn2 = num(item, "cached_tokens");
          break;
        case 21:
          if (key.eqStr("cacheWriteInputTokens")) cwB = count(item);
          else if (key.eqStr("prompt_tokens_details")) crIn = num(item, "cached_tokens");
          else if (key.eqStr("output_tokens_details")) {
            rsIn2 = num(item, "reasoning_tokens");
            rsIn3 = num(item, "thinking_tokens");
          }
          break;
        case 23:
          if (key.eqStr("cache_read_input_tokens")) crA = count(item);
          else if (key.eqStr("cachedContentTokenCount")) crIn3 = count(item);
          else if (key.eqStr("prompt_cache_hit_tokens")) crIn4 = count(item);
          else if (key.eqStr("toolUsePromptTokenCount")) toolUse = count(item);
          break;
        case 25: if (key.eqStr("completion_tokens_details")) rsIn = num(item, "reasoning_tokens"); break;
        case 27: if (key.eqStr("cache_creation_input_tokens")) cwA = count(item); break;
      }
    }
    let p = pick4(pt, it, ptc, iT);
    let c = pick4(ct, ot, cand, oT);
    let t = pick4(tt, ttc, tT, -1);
    if (p < 0 && c < 0) { // Cohere v2: what is billed, else what was processed
      let processed = num(toks, "input_tokens");
      p = num(billed, "input_tokens");
      // Its cached_tokens counts processed tokens, the billed ones and those Cohere adds and
      // does not bill: at least cached - (processed - billed) of them are billed ones.
      if (p >= 0 && crIn5 >= 0) {
        let unbilled = pos(processed - p);
        crIn5 = processed >= 0 ? pos(crIn5 - unbilled) : 0;
      }
      if (p < 0) p = processed;
      c = num(billed, "output_tokens");
      if (c < 0) c = num(toks, "output_tokens");
    }
    if (p >= 0) this.prompt = p;
    if (c >= 0) this.completion = c;
    if (t >= 0) this.total = t;
    else if (p >= 0 || c >= 0) this.total = -1; // recompute from the newer parts

    let x = pick4(crA, crB, -1, -1);
    if (x >= 0) this.cacheReadAdd = x;
    x = pick4(cwA, cwB, -1, -1);
    if (x >= 0) this.cacheWriteAdd = x;
    let crTail = pick4(crIn4, crIn5, -1, -1);
    x = pick4(crIn, crIn2, crIn3, crTail);
    if (x >= 0) this.cacheReadIn = x;
    x = pick4(rsIn, rsIn2, rsIn3, -1);
    if (x >= 0) this.reasoningIn = x;
    if (thoughts >= 0) this.reasoningAdd = thoughts;
    if (toolUse >= 0) this.toolPromptAdd = toolUse;

    if (iters !== null && iters.kind == J_ARR) this.mergeIterations(iters.items);
  }

  /**
   * Anthropic usage.iterations: one entry per sampling iteration (compaction, server tools,
   * advisor); the top-level fields are the last one only, the bill is the sum. With a server-side
   * fallback the served hop is a "fallback_message" entry and each declined hop a "message"
   * entry: declined hops are not billed, so then the "message" entries are left out.
   */
  private mergeIterations(list: JValue[]): void {
    let si: i64 = 0, so: i64 = 0, sr: i64 = 0, sw: i64 = 0;     // every entry
    let di: i64 = 0, dout: i64 = 0, dr: i64 = 0, dw: i64 = 0;   // "message" entries (declined hops, if a fallback served)
    let any = false, fallback = false;
    for (let k = 0; k < list.length; k++) {
      let e = list[k];
      if (e.kind != J_OBJ) continue;
      let a = num(e, "input_tokens"), b = num(e, "output_tokens");
      let r = num(e, "cache_read_input_tokens"), w = num(e, "cache_creation_input_tokens");
      if (a < 0 && b < 0 && r < 0 && w < 0) continue;
      any = true;
      si += pos(a); so += pos(b); sr += pos(r); sw += pos(w);
      let t = e.get("type");
      if (t === null || t.kind != J_STR) continue;
      let ts = t.s;
      if (ts === null) continue;
      if (ts.eqStr("fallback_message")) fallback = true;
      else if (ts.eqStr("message")) { di += pos(a); dout += pos(b); dr += pos(r); dw += pos(w); }
    }
    if (!any || si > MAX_SUM || so > MAX_SUM || sr > MAX_SUM || sw > MAX_SUM) return;
    if (fallback) { si -= di; so -= dout; sr -= dr; sw -= dw; }
    this.iterIn = si; this.iterOut = so; this.iterCacheRead = sr; this.iterCacheWrite = sw;
  }
}

/** x, but no more than limit (and not below 0): a part within its count. */
@inline function within(x: i64, limit: i64): i64 {
  if (x > limit) x = limit;
  return x > 0 ? x : 0;
}

/** The first of the candidates that is known (>= 0), or -1. */
@inline function pick4(a: i64, b: i64, c: i64, d: i64): i64 {
  if (a >= 0) return a;
  if (b >= 0) return b;
  if (c >= 0) return c;
  return d;
}

@inline function pos(x: i64): i64 { return x > 0 ? x : 0; }

/** A field of an object as a token count; -1 if absent, not an object, or not a sane count. */
function num(v: JValue | null, key: string): i64 {
  if (v === null || v.kind != J_OBJ) return -1;
  let f = v.get(key);
  if (f === null) return -1;
  return count(f);
}

/** A value as a token count; -1 if not a number or not a sane count. */
function count(f: JValue): i64 {
  if (f.kind != J_NUM) return -1;
  let n = f.n;
  if (!(n >= 0) || n > MAX_TOKENS) return -1; // also rejects NaN
  return <i64>Math.floor(n);
}
