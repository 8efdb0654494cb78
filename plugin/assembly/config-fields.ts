// Typed readers of pluginConfig fields. Each checks one value and, when it is wrong, records an
// error naming the field and the value (the first error stops parsing: config.ts reports it).

import { ByteBuf } from "./bytes";
import { JValue, J_STR, J_NUM, J_BOOL } from "./json";

/** Keeps the first configuration error (field, problem, value); parsing stops at it. */
export class ErrorCollector {
  error: string = "";
  fail(field: string, problem: string, v: JValue | null): bool {
    if (this.error.length == 0) {
      let got = "";
      if (v !== null) got = ", got " + v.display();
      this.error = field + ": " + problem + got;
    }
    return false;
  }
}

export function knownFields(c: ErrorCollector, obj: JValue, prefix: string, allowed: string[]): bool {
  for (let i = 0; i < obj.keys.length; i++) {
    const k = obj.keys[i];
    let ok = false;
    for (let j = 0; j < allowed.length; j++)
      if (k.eqStr(allowed[j])) {
        ok = true;
        break;
      }
    if (!ok) return c.fail(prefix + k.display(60), "unknown field (allowed: " + allowed.join(", ") + ")", obj.items[i]);
  }
  return true;
}

/** A JSON string whose bytes we know are valid UTF-8 (the parser checks) as an AS string. */
export function str(v: JValue): string {
  const s = v.s;
  if (s === null) return "";
  return String.UTF8.decode(s.buf.slice(0, s.length));
}

export function intIn(c: ErrorCollector, v: JValue, field: string, lo: f64, hi: f64): i32 {
  if (v.kind != J_NUM || v.n != Math.floor(v.n) || v.n < lo || v.n > hi) {
    c.fail(field, "expected an integer from " + (<i64>lo).toString() + " to " + (<i64>hi).toString(), v);
    return -1;
  }
  return <i32>v.n;
}

export function nonEmptyString(c: ErrorCollector, v: JValue, field: string): bool {
  if (v.kind != J_STR || v.s === null || (<ByteBuf>v.s).length == 0) return c.fail(field, "expected a non-empty string", v);
  return true;
}

/** An optional integer field of `obj` in [lo, hi]; `dflt` when absent, -1 (and an error) when invalid. */
export function intField(c: ErrorCollector, obj: JValue, name: string, field: string, lo: i32, hi: i32, dflt: i32): i32 {
  const v = obj.get(name);
  if (v === null) return dflt;
  return intIn(c, v, field, <f64>lo, <f64>hi);
}

export function boolField(c: ErrorCollector, obj: JValue, name: string, field: string, dflt: bool): i32 {
  const v = obj.get(name);
  if (v === null) return dflt ? 1 : 0;
  if (v.kind != J_BOOL) {
    c.fail(field, "expected true or false", v);
    return -1;
  }
  return v.b ? 1 : 0;
}

export function ratioField(c: ErrorCollector, obj: JValue, name: string, field: string, dflt: f64): f64 {
  const v = obj.get(name);
  if (v === null) return dflt;
  if (v.kind != J_NUM || !(v.n >= 0.1) || v.n > 100) {
    c.fail(field, "expected a number from 0.1 to 100", v);
    return -1;
  }
  return v.n;
}
