/**
 * Validation of protocol input. Each failure is a 400 with a JSON error, except a bad field of
 * an update that is not a count (metadata): the counts are charged without it, and
 * UpdateBody.metadataErrors says why (a report must never be lost to a field that is not a count).
 */
import type { Usage } from '../limiter/limiter';

export const MAX_KEYS = 16;
export const MAX_KEY_BYTES = 512;
export const MAX_BODY_BYTES = 64 * 1024;
/** Bound on `reserve` (keeps every balance exact in Lua and JS doubles). */
export const MAX_RESERVE = 1e15;

export class BadRequest extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BadRequest';
  }
}

export function validateKeys(v: unknown): string[] {
  if (!Array.isArray(v)) throw new BadRequest('ratelimit_keys must be a JSON array of strings');
  if (v.length > MAX_KEYS) throw new BadRequest(`too many ratelimit_keys: ${v.length} > ${MAX_KEYS}`);
  for (let i = 0; i < v.length; i++) {
    const k = v[i];
    if (typeof k !== 'string') throw new BadRequest(`ratelimit_keys[${i}] is not a string`);
    // Cheap bound first: a UTF-8 byte is at least one UTF-16 unit... and at most 3 per unit.
    if (k.length > MAX_KEY_BYTES || (k.length * 3 > MAX_KEY_BYTES && Buffer.byteLength(k) > MAX_KEY_BYTES)) {
      throw new BadRequest(`ratelimit_keys[${i}] is longer than ${MAX_KEY_BYTES} bytes`);
    }
  }
  return v as string[];
}

/** Parses the check query parameter: a JSON array of strings. */
export function parseKeysParam(raw: unknown): string[] {
  if (typeof raw !== 'string') throw new BadRequest('missing ratelimit_keys query parameter (a JSON array of strings)');
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new BadRequest('ratelimit_keys is not valid JSON');
  }
  return validateKeys(v);
}

/** Parses the check's `reserve` parameter: absent = 0, else a non-negative integer ≤ MAX_RESERVE. */
export function parseReserveParam(raw: string | null | undefined): number {
  if (raw === null || raw === undefined) return 0;
  const n = /^[0-9]{1,16}$/.test(raw) ? Number(raw) : NaN;
  if (!(n <= MAX_RESERVE)) {
    throw new BadRequest(`reserve must be a non-negative integer (at most ${MAX_RESERVE}), got ${JSON.stringify(raw.slice(0, 100))}`);
  }
  return n;
}

function tokenCount(o: Record<string, unknown>, f: string): number | undefined {
  const v = o[f];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new BadRequest(`${f} must be a non-negative integer`);
  }
  return v;
}

export interface UpdateBody {
  keys: string[];
  usage: Usage;
  /** Tokens reserved at the check for this request (0 = none). */
  reserved: number;
  /** The plugin estimated the usage (no usage in the response). */
  estimated: boolean;
  /** The check's reservation_id (a refund needs it). */
  reservationId?: string;
  /** Idempotency id: applied at most once within the window. */
  requestId?: string;
  /** The request body's `model`, when the plugin reports it (≤ 128 bytes). */
  model?: string;
  /** Usage parts present in the body (cache_read_tokens, cache_write_tokens, reasoning_tokens). */
  parts: Partial<Record<(typeof EXTRA_COUNTS)[number], number>>;
  /** Metadata fields left out because they were bad, with why (empty: none). */
  metadataErrors: MetadataError[];
}

/** A bad metadata field of an update: `estimated`, `reservation_id`, `request_id` or `model`. */
export interface MetadataError {
  field: string;
  error: string;
}

/** Bound on `request_id`, `reservation_id` and `model` (UTF-8 bytes). */
export const MAX_ID_BYTES = 128;

/** Usage parts accepted and validated like the other counts; they do not change the charge. */
const EXTRA_COUNTS = ['cache_read_tokens', 'cache_write_tokens', 'reasoning_tokens'] as const;

/** A bad value, shown in an error: JSON, cut to a few dozen characters (a body may hold 64 KiB). */
function shown(v: unknown): string {
  const j = JSON.stringify(v) ?? String(v);
  return j.length > 40 ? `${j.slice(0, 40)}…` : j;
}

/**
 * An id or name: a non-empty string of at most MAX_ID_BYTES. Anything else is left out and
 * noted in `errors` (the update is still charged): a bad request_id then means no
 * deduplication (a retry is charged again, never a report charged zero), a bad reservation_id
 * no refund (the reservation stays live until its TTL), a bad model no model in the record.
 */
function idField(o: Record<string, unknown>, f: string, errors: MetadataError[]): string | undefined {
  const v = o[f];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length === 0) {
    errors.push({ field: f, error: `must be a non-empty string, got ${shown(v)}` });
    return undefined;
  }
  if (v.length > MAX_ID_BYTES || Buffer.byteLength(v) > MAX_ID_BYTES) {
    errors.push({ field: f, error: `${Buffer.byteLength(v)} bytes, more than ${MAX_ID_BYTES}` });
    return undefined;
  }
  return v;
}

/**
 * Parses the update body. Missing counts are 0; a missing total_tokens is prompt + completion;
 * reserved_tokens (default 0) and estimated (default false) are optional; other fields are ignored.
 * Bad keys or counts throw BadRequest; bad metadata is left out (see idField) and listed.
 */
export function parseUpdateBody(text: string): UpdateBody {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new BadRequest('body is not valid JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BadRequest('body must be a JSON object');
  const o = v as Record<string, unknown>;
  const keys = validateKeys(o.ratelimit_keys);
  const prompt = tokenCount(o, 'prompt_tokens') ?? 0;
  const completion = tokenCount(o, 'completion_tokens') ?? 0;
  const total = tokenCount(o, 'total_tokens') ?? Math.min(prompt + completion, Number.MAX_SAFE_INTEGER);
  const reserved = tokenCount(o, 'reserved_tokens') ?? 0;
  const parts: UpdateBody['parts'] = {};
  for (const f of EXTRA_COUNTS) {
    const n = tokenCount(o, f);
    if (n !== undefined) parts[f] = n;
  }
  const metadataErrors: MetadataError[] = [];
  const est = o.estimated;
  if (est !== undefined && est !== null && typeof est !== 'boolean') {
    metadataErrors.push({ field: 'estimated', error: `must be a boolean, got ${shown(est)}` });
  }
  const body: UpdateBody = {
    keys,
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total },
    reserved,
    estimated: est === true,
    parts,
    metadataErrors,
  };
  const reservationId = idField(o, 'reservation_id', metadataErrors);
  if (reservationId !== undefined) body.reservationId = reservationId;
  const requestId = idField(o, 'request_id', metadataErrors);
  if (requestId !== undefined) body.requestId = requestId;
  const model = idField(o, 'model', metadataErrors);
  if (model !== undefined) body.model = model;
  return body;
}
