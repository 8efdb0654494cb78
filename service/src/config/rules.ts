/**
 * Rule configuration: the reference format (a JSON array of rules) plus the optional
 * `charge` and `max_debt` fields. Validation errors name the rule index, the field and the value.
 * Regexes are RE2 (re2js), as the reference's Go `regexp`: same syntax, same meaning,
 * matching time linear in the key.
 */
import { RE2JS } from 're2js';

export type ChargeField = 'total_tokens' | 'prompt_tokens' | 'completion_tokens';
export const CHARGE_FIELDS: readonly ChargeField[] = ['total_tokens', 'prompt_tokens', 'completion_tokens'];

export interface RuleConfig {
  rate_limit_key_regex: string;
  redis_expired_seconds: number;
  fill_interval_second: number;
  tokens_per_fill: number;
  max_tokens: number;
  charge?: ChargeField;
  max_debt?: number;
}

/** What a rule needs of its compiled regex: an unanchored search. */
export interface KeyPattern {
  test(key: string): boolean;
}

/** Default `max_debt`, as a multiple of `max_tokens`. */
export const DEFAULT_DEBT_MULTIPLE = 10;

/** A validated rule, with its regex compiled once. */
export interface Rule {
  index: number;
  regexSource: string;
  regex: KeyPattern;
  expiredSeconds: number;
  fillIntervalSeconds: number;
  tokensPerFill: number;
  maxTokens: number;
  charge: ChargeField;
  /** How far below zero a balance may go (a charge beyond it is clamped). */
  maxDebt: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const INT_FIELDS = ['redis_expired_seconds', 'fill_interval_second', 'tokens_per_fill', 'max_tokens'] as const;
const KNOWN = new Set<string>(['rate_limit_key_regex', ...INT_FIELDS, 'charge', 'max_debt']);
/** Upper bound keeping every bucket computation exact in doubles (Lua and JS). */
const MAX_INT = 1e12;
/** Upper bound of `max_debt` (the default, 10 × max_tokens, is at most this too). */
const MAX_DEBT = 1e13;

/**
 * Compiles a rule regex with RE2 semantics (Go's `regexp`, which the reference uses):
 * `[[:digit:]]`, `\z`, `\Q…\E`, `(?i)`, `(?P<name>…)` mean what they mean there.
 */
export function compileKeyRegex(source: string): KeyPattern {
  const re = RE2JS.compile(source);
  return { test: (key: string) => re.matcher(key).find() };
}

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
  const at = (field: string, value: unknown, why: string) => new ConfigError(`${source}: rule ${i}: field "${field}" = ${show(value)}: ${why}`);
  if (r === null || typeof r !== 'object' || Array.isArray(r)) {
    throw new ConfigError(`${source}: rule ${i}: expected an object, got ${show(r)}`);
  }
  const o = r as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KNOWN.has(k)) throw at(k, o[k], 'unknown field');
  const re = o.rate_limit_key_regex;
  if (typeof re !== 'string' || re.length === 0) throw at('rate_limit_key_regex', re, 'must be a non-empty string');
  let regex: KeyPattern;
  try {
    regex = compileKeyRegex(re);
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
  let maxDebt = DEFAULT_DEBT_MULTIPLE * (o.max_tokens as number);
  if (o.max_debt !== undefined) {
    const d = o.max_debt;
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) throw at('max_debt', d, 'must be a non-negative integer');
    if (d > MAX_DEBT) throw at('max_debt', d, `must be at most ${MAX_DEBT}`);
    maxDebt = d;
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
    maxDebt,
  };
}
