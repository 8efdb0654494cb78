import { ProxyWasmHost, HostOptions, Stream, HeaderList, HttpCall } from '../emulator/host';

export * from '../emulator/host';

/** The seed scenario's pluginConfig, unchanged. */
export const SEED_CONFIG = {
  matches: [{ host: { exact: 'dashscope.aliyuncs.com' } }],
  rateLimitKeys: ['{{request.headers.user-type}}'],
  rateLimitService: { service: 'asm-llm-token-rate-limit-example.default.svc.cluster.local', port: 80 },
};
export const SEED_CLUSTER = 'outbound|80||asm-llm-token-rate-limit-example.default.svc.cluster.local';

export const ALLOW = { status: 200, body: '{"allow":true,"description":"ok"}' };
export const DENY = { status: 200, body: '{"allow":false,"description":"regular-user is being rate-limited"}' };

export function newHost(config: object | string | Buffer = SEED_CONFIG, opts: HostOptions = {}): ProxyWasmHost {
  const h = new ProxyWasmHost(opts);
  if (!h.configure(config)) throw new Error(`configure failed: ${h.logsAt(4).join('\n')}`);
  return h;
}

export function withConfig(extra: object): object {
  return { ...SEED_CONFIG, ...extra };
}

export function reqHeaders(extra: HeaderList = [], host = 'dashscope.aliyuncs.com', path = '/v1/chat/completions'): HeaderList {
  return [[':method', 'POST'], [':path', path], [':authority', host], ['content-type', 'application/json'], ...extra];
}

/** Bytes of a UTF-8 string as a header value (the emulator's header strings are byte strings). */
export function utf8(s: string): string {
  return Buffer.from(s, 'utf8').toString('latin1');
}

/** Decoded rate-limit keys of a check call. */
export function checkKeys(call: HttpCall): string[] {
  const path = call.headers.find(([k]) => k === ':path')![1];
  const prefix = '/ratelimit?ratelimit_keys=';
  expect(path.startsWith(prefix)).toBe(true);
  return JSON.parse(decodeURIComponent(path.slice(prefix.length).split('&')[0]));
}

export function header(h: HeaderList, name: string): string | undefined {
  return h.find(([k]) => k === name)?.[1];
}

/** A matched request whose check was answered `reply`. Returns the stream. */
export function checkedRequest(h: ProxyWasmHost, reply: object | 'fail' = ALLOW, extra: HeaderList = [['user-type', 'regular-user']]): Stream {
  const s = h.newStream();
  expect(s.sendRequestHeaders(reqHeaders(extra))).toBe(1);
  const call = h.pendingCalls().find((c) => c.contextId === s.id)!;
  expect(call).toBeDefined();
  h.reply(call.token, reply as any);
  return s;
}

/** Every report call (usage update) sent so far, retries included, parsed as sent. */
export function reportCalls(h: ProxyWasmHost): any[] {
  return h.httpCalls.filter((c) => header(c.headers, ':path') === '/update_ratelimit_record').map((c) => JSON.parse(c.body.toString('utf8')));
}

/** Report ids: a random per-VM prefix (24 hex digits), '-', a counter. */
export const REQUEST_ID = /^[0-9A-F]{24}-[0-9]+$/;

/**
 * The reports sent so far, parsed: what they charge, without the fields that only label them
 * (request_id, checked for its form here, and model; see reportCalls for the whole body).
 */
export function reports(h: ProxyWasmHost): any[] {
  return reportCalls(h).map((r) => {
    expect(r.request_id).toMatch(REQUEST_ID);
    const { request_id: _id, model: _model, ...rest } = r;
    return rest;
  });
}

/** Sends a full response through the stream, split into the given chunks. */
export function respond(s: Stream, contentType: string, chunks: (string | Buffer)[], extra: HeaderList = []): void {
  s.sendResponseHeaders([[':status', '200'], ['content-type', contentType], ...extra]);
  chunks.forEach((c, i) => expect(s.sendResponseBody(c, i === chunks.length - 1)).toBe(0));
  if (chunks.length === 0) s.sendResponseBody('', true);
}

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The message of a local reply: `error.message` of the OpenAI-style error object (the default
 * `rejectBody`), checked for its shape here, or the whole body of a text reply.
 */
export function message(lr: { headers: HeaderList; body: Buffer }): string {
  const ct = header(lr.headers, 'content-type');
  if (ct === 'application/json') {
    const o = JSON.parse(lr.body.toString('utf8'));
    expect(Object.keys(o)).toEqual(['error']);
    expect(Object.keys(o.error)).toEqual(['message', 'type', 'param', 'code']);
    return o.error.message;
  }
  expect(ct).toBe('text/plain; charset=utf-8');
  return lr.body.toString('utf8');
}
