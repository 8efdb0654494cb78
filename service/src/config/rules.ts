/**
 * Rule configuration: the reference format (a JSON array of rules) plus the optional
 * `charge` field. Validation errors name the rule index, the field and the value.
 */
export type ChargeField = 'total_tokens' | 'prompt_tokens' | 'completion_tokens';
export const CHARGE_FIELDS: readonly ChargeField[] = ['total_tokens', 'prompt_tokens', 'completion_tokens'];

export interface RuleConfig {
  rate_limit_key_regex: string;
  redis_expired_seconds: number;
  fill_interval_second: number;
  tokens_per_fill: number;
  max_tokens: number;
  charge?: ChargeField;
}

/** A validated rule, with its regex compiled once. */
export interface Rule {
  index: number;
  regexSource: string;
  regex: RegExp;
  expiredSeconds: number;
  fillIntervalSeconds: number;
  tokensPerFill: number;
  maxTokens: number;
  charge: ChargeField;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const INT_FIELDS = ['redis_expired_seconds', 'fill_interval_second', 'tokens_per_fill', 'max_tokens'] as const;
const KNOWN = new Set<string>(['rate_limit_key_regex', ...INT_FIELDS, 'charge']);
/** Upper bound keeping every bucket computation exact in doubles (Lua and JS). */
const MAX_INT = 1e12;

function show(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Parses and validates a JSON text of rules. Throws ConfigError. */
export function parseRules(text: string, source = 'RATE_LIMIT_CONFIG'): Rule[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${source}: not valid JSON: ${(e as Error).message}`);
  }
  return validateRules(raw, source);
}

export function validateRules(raw: unknown, source = 'RATE_LIMIT_CONFIG'): Rule[] {
  if (!Array.isArray(raw)) throw new ConfigError(`${source}: expected a JSON array of rules, got ${show(raw)}`);
  if (raw.length === 0) throw new ConfigError(`${source}: the rule list is empty`);
  return raw.map((r, i) => validateRule(r, i, source));
}

function validateRule(r: unknown, i: number, source: string): Rule {
  const at = (field: string, value: unknown, why: string) =>
    new ConfigError(`${source}: rule ${i}: field "${field}" = ${show(value)}: ${why}`);
  if (r === null || typeof r !== 'object' || Array.isArray(r)) {
    throw new ConfigError(`${source}: rule ${i}: expected an object, got ${show(r)}`);
  }
  const o = r as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw at(k, o[k], 'unknown field');
  const re = o.rate_limit_key_regex;
  if (typeof re !== 'string' || re.length === 0) throw at('rate_limit_key_regex', re, 'must be a non-empty string');
  let regex: RegExp;
  try {
    regex = new RegExp(re);
  } catch (e) {
    throw at('rate_limit_key_regex', re, `does not compile: ${(e as Error).message}`);
  }
  for (const f of INT_FIELDS) {
    const v = o[f];
    if (v === undefined) throw at(f, v, 'is required');
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw at(f, v, 'must be a positive integer');
    if (v > MAX_INT) throw at(f, v, `must be at most ${MAX_INT}`);
  }
  const expired = o.redis_expired_seconds as number;
  const interval = o.fill_interval_second as number;
  if (expired < interval) {
    throw at('redis_expired_seconds', expired, `is shorter than fill_interval_second (${interval})`);
  }
  const charge = o.charge === undefined ? 'total_tokens' : o.charge;
  if (typeof charge !== 'string' || !(CHARGE_FIELDS as readonly string[]).includes(charge)) {
    throw at('charge', o.charge, `must be one of ${CHARGE_FIELDS.join(', ')}`);
  }
  return {
    index: i,
    regexSource: re,
    regex,
    expiredSeconds: expired,
    fillIntervalSeconds: interval,
    tokensPerFill: o.tokens_per_fill as number,
    maxTokens: o.max_tokens as number,
    charge: charge as ChargeField,
  };
}
