import type { Rule } from '../config/rules';
import type { BucketParams } from '../bucket/math';

export interface CompiledRule extends Rule {
  params: BucketParams;
}

/**
 * The active rules, with a bounded key → rule cache so a key already seen costs one
 * Map lookup (no regex scan). A new RuleSet (and cache) is built on every reload.
 */
export class RuleSet {
  readonly rules: readonly CompiledRule[];
  private readonly cache = new Map<string, CompiledRule | null>();

  constructor(
    rules: readonly Rule[],
    private readonly cacheSize = 10_000,
  ) {
    this.rules = rules.map((r) => ({
      ...r,
      params: {
        maxTokens: r.maxTokens,
        tokensPerFill: r.tokensPerFill,
        fillIntervalUs: r.fillIntervalSeconds * 1_000_000,
        ttlSeconds: r.expiredSeconds,
        maxDebt: r.maxDebt,
      },
    }));
  }

  /** The first rule whose regex matches anywhere in the key (unanchored), or null. */
  match(key: string): CompiledRule | null {
    const hit = this.cache.get(key);
    if (hit !== undefined) return hit;
    let found: CompiledRule | null = null;
    for (const r of this.rules) {
      if (r.regex.test(key)) {
        found = r;
        break;
      }
    }
    if (this.cache.size >= this.cacheSize) this.cache.clear();
    this.cache.set(key, found);
    return found;
  }
}
