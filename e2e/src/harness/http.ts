import * as http from 'http';

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * Plain HTTP/1.1 request on 127.0.0.1. Unlike fetch, it lets a test set the Host header,
 * which is how requests reach Envoy "for" dashscope.aliyuncs.com.
 */
export function request(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer; timeoutMs?: number } = {},
): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(opts.timeoutMs ?? 10000, () => req.destroy(new Error(`request to :${port}${opts.path ?? '/'} timed out`)));
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** A chat completion request as the seed's curl sends it. */
export function chat(port: number, host: string, headers: Record<string, string> = {}, body?: object): Promise<HttpResult> {
  const payload = JSON.stringify(body ?? { messages: [{ role: 'user', content: '介绍一下你自己' }] });
  return request(port, {
    method: 'POST',
    path: '/',
    headers: { host, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), ...headers },
    body: payload,
  });
}

export interface StreamResult extends HttpResult {
  startedAt: number;
  /** When the first body bytes arrived. */
  firstChunkAt: number;
  endAt: number;
}

/** A streaming chat request; records when the first bytes and the end arrived. */
export function chatStream(port: number, host: string, headers: Record<string, string> = {}, body?: object, abortAfterBytes?: number): Promise<StreamResult> {
  const payload = JSON.stringify(body ?? { messages: [{ role: 'user', content: '介绍一下你自己' }], stream: true, stream_options: { include_usage: true } });
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    let firstChunkAt = 0;
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        agent: false,
        headers: { host, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        const done = () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            startedAt,
            firstChunkAt,
            endAt: Date.now(),
          });
        res.on('data', (c: Buffer) => {
          firstChunkAt ||= Date.now();
          chunks.push(c);
          n += c.length;
          if (abortAfterBytes !== undefined && n >= abortAfterBytes) {
            req.destroy(); // the client hangs up mid-stream
            done();
          }
        });
        res.on('end', done);
        res.on('error', () => undefined);
      },
    );
    req.on('error', (e) => (abortAfterBytes !== undefined ? undefined : reject(e)));
    req.end(payload);
  });
}

/** The message of the plugin's local reply: `error.message` of an OpenAI-style error body, else the body text. */
export function errorMessage(body: string): string {
  try {
    const o = JSON.parse(body);
    if (o && typeof o.error?.message === 'string') return o.error.message;
  } catch {
    /* a text body */
  }
  return body;
}
