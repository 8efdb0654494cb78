/**
 * A local OpenAI-compatible chat-completions server standing in for the paid LLM API.
 * It answers any POST path (the seed posts to "/", DashScope's compatible mode uses
 * /compatible-mode/v1/chat/completions, OpenAI /v1/chat/completions), plain JSON or SSE,
 * and GET .../models with a model list,
 * with a deterministic usage: by default the seed's prompt 10, completion 95, total 105.
 *
 * Per-request controls (request headers), so that e2e scenarios are reproducible:
 *   x-mock-usage: "P,C"          usage to report (total = P + C)
 *   x-mock-omit-usage: "1"       no usage object at all (and no usage chunk when streaming)
 *   x-mock-status: "500"         answer with this status and an OpenAI-style error body, no usage
 *   x-mock-delay-ms: "N"         wait before the response headers
 *   x-mock-chunk-delay-ms: "N"   wait between SSE events
 *   x-mock-chunks: "N"           number of content events when streaming (default 5)
 *   x-mock-answer-chars: "N"     answer with N characters of Latin text instead of the Chinese answer
 *   x-mock-pause-before-usage-ms: "N"  when streaming, wait N ms after the last content event, before
 *                                the events that carry the final usage (a client may hang up meanwhile)
 *
 * POST .../v1/messages answers as Anthropic's Messages API: JSON, or (stream: true) its events —
 * message_start with the usage's input_tokens and a placeholder output_tokens: 1, content_block_delta
 * events, then message_delta with the final output_tokens, and message_stop. x-mock-usage "P,C" sets
 * input_tokens and output_tokens (default 10, 95).
 */
import * as http from 'http';
import { AddressInfo } from 'net';

export interface MockLlm {
  port: number;
  /** Complete requests received so far (every path), newest last. */
  requests: MockRequest[];
  /** Requests reset before their body ended: never answered. */
  aborted: MockRequest[];
  close(): Promise<void>;
}

export interface MockRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The exact bytes the mock sent back, complete once `ended` is set. */
  sent: string;
  /** Date.now() when the mock finished its response (undefined while still writing). */
  ended?: number;
}

export const SEED_USAGE = { prompt_tokens: 10, completion_tokens: 95, total_tokens: 105 };
const ANSWER = '我是通义千问，由阿里云开发的大规模语言模型。我可以回答问题、创作文字、编写代码，也可以表达观点、玩游戏等。';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function num(h: string | string[] | undefined, dflt: number): number {
  const v = Number(Array.isArray(h) ? h[0] : h);
  return Number.isFinite(v) && v >= 0 ? v : dflt;
}

function usageFor(req: http.IncomingMessage) {
  const spec = req.headers['x-mock-usage'];
  if (typeof spec === 'string') {
    const [p, c] = spec.split(',').map((s) => Number(s.trim()));
    if (Number.isInteger(p) && Number.isInteger(c)) return { prompt_tokens: p, completion_tokens: c, total_tokens: p + c };
  }
  return { ...SEED_USAGE };
}

/** The answer's text: the Chinese seed answer, or x-mock-answer-chars characters of Latin text. */
function answerFor(req: http.IncomingMessage): string {
  const n = num(req.headers['x-mock-answer-chars'], -1);
  if (n < 0) return ANSWER;
  return 'The quick brown fox jumps over the lazy dog. '.repeat(Math.ceil(n / 45)).slice(0, n);
}

/** An Anthropic Messages API answer (JSON, or its event stream). */
async function anthropic(
  res: http.ServerResponse,
  parsed: { stream?: boolean; model?: string },
  answer: string,
  u: { prompt_tokens: number; completion_tokens: number },
  req: http.IncomingMessage,
  pauseBeforeUsage: number,
  seq: number,
): Promise<void> {
  const id = `msg_mock_${seq}`;
  const model = parsed.model ?? 'claude-sonnet-4-5';
  const usage = { input_tokens: u.prompt_tokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: u.completion_tokens };
  if (!parsed.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(
      JSON.stringify({
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [{ type: 'text', text: answer }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage,
      }),
    );
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const event = (type: string, o: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...o })}\n\n`);
  const n = Math.max(1, num(req.headers['x-mock-chunks'], 5));
  const delay = num(req.headers['x-mock-chunk-delay-ms'], 0);
  const piece = Math.ceil(answer.length / n);
  event('message_start', {
    message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } },
  });
  event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
  event('ping', {});
  for (let i = 0; i < n; i++) {
    if (res.destroyed) return;
    event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: answer.slice(i * piece, (i + 1) * piece) } });
    if (delay) await sleep(delay);
  }
  if (pauseBeforeUsage) await sleep(pauseBeforeUsage);
  if (res.destroyed) return;
  event('content_block_stop', { index: 0 });
  event('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.output_tokens } });
  event('message_stop', {});
  res.end();
}

export function createMockLlm(port = 0, host = '127.0.0.1'): Promise<MockLlm> {
  const requests: MockLlm['requests'] = [];
  const aborted: MockLlm['aborted'] = [];
  let seq = 0;
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    try {
      for await (const c of req) chunks.push(c as Buffer);
    } catch {
      // The request was reset before its body ended (e.g. Envoy refused it after forwarding
      // its headers): a real API drops it, and so does the mock, keeping only a record.
      aborted.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), sent: '' });
      return;
    }
    const body = Buffer.concat(chunks).toString('utf8');
    const rec: MockRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, sent: '' };
    requests.push(rec);
    // Record what goes out, so tests can compare it byte for byte with what the client got.
    const write = res.write.bind(res) as (c: string) => boolean;
    res.write = ((c: string) => {
      rec.sent += c;
      return write(c);
    }) as typeof res.write;
    res.on('error', () => undefined); // a client that disconnects is not the mock's failure
    res.on('finish', () => (rec.ended = Date.now()));
    res.on('close', () => (rec.ended ??= Date.now()));

    if (req.method === 'GET' && req.url === '/__mock/requests') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ count: requests.length - 1 }));
      requests.pop();
      return;
    }
    if (req.method === 'GET' && (req.url ?? '').split('?')[0].endsWith('/models')) {
      // A model list, as OpenAI-compatible APIs answer it: no usage, nothing generated.
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'qwen-plus', object: 'model', created: 0, owned_by: 'mock' }] }));
      return;
    }
    await sleep(num(req.headers['x-mock-delay-ms'], 0));

    const status = num(req.headers['x-mock-status'], 200);
    if (status !== 200) {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: `mock error ${status}`, type: 'mock_error', code: status } }));
      return;
    }
    let parsed: { stream?: boolean; model?: string; stream_options?: { include_usage?: boolean } };
    try {
      parsed = body ? JSON.parse(body) : {};
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'request body is not JSON', type: 'invalid_request_error' } }));
      return;
    }
    const answer = answerFor(req);
    const pauseBeforeUsage = num(req.headers['x-mock-pause-before-usage-ms'], 0);
    if ((req.url ?? '').split('?')[0].endsWith('/v1/messages')) {
      await anthropic(res, parsed, answer, usageFor(req), req, pauseBeforeUsage, ++seq);
      return;
    }
    const id = `chatcmpl-mock-${++seq}`;
    const model = parsed.model ?? 'qwen-plus';
    const created = Math.floor(Date.now() / 1000);
    const omitUsage = req.headers['x-mock-omit-usage'] === '1';
    const usage = usageFor(req);

    if (parsed.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const n = Math.max(1, num(req.headers['x-mock-chunks'], 5));
      const delay = num(req.headers['x-mock-chunk-delay-ms'], 0);
      const piece = Math.ceil(answer.length / n);
      const event = (o: object) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      for (let i = 0; i < n; i++) {
        if (res.destroyed) return; // the client went away mid-stream
        const delta = i === 0 ? { role: 'assistant', content: answer.slice(0, piece) } : { content: answer.slice(i * piece, (i + 1) * piece) };
        event({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: null }] });
        if (delay) await sleep(delay);
      }
      event({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
      if (pauseBeforeUsage) await sleep(pauseBeforeUsage);
      if (res.destroyed) return;
      // As OpenAI does: the usage chunk only when the client asked for it, with empty choices.
      if (parsed.stream_options?.include_usage && !omitUsage) {
        event({ id, object: 'chat.completion.chunk', created, model, choices: [], usage });
      }
      res.write('data: [DONE]\n\n');
      res.end();
      return;
    }

    const completion: Record<string, unknown> = {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: answer }, finish_reason: 'stop' }],
    };
    if (!omitUsage) completion.usage = usage; // last, as in the seed's example body
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(JSON.stringify(completion));
    res.end();
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(port, host, () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        requests,
        aborted,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
    });
  });
}

// CLI: node e2e/dist/mock-llm.js [port] [host]   (host 0.0.0.0 in a container)
if (require.main === module) {
  void createMockLlm(Number(process.argv[2] ?? 0), process.argv[3] ?? '127.0.0.1').then((m) => {
    console.log(JSON.stringify({ msg: 'listening', service: 'mock-llm', port: m.port }));
    const stop = () => m.close().then(() => process.exit(0));
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
