/**
 * A WebSocket upstream in the style of a Realtime API, over node:http's 'upgrade' event (Node has
 * no WebSocket server of its own). A session answers 101, then sends `deltas` text frames
 * `{"type":"response.text.delta","delta":"…"}` and, if asked (`x-ws-done: 1`), a `response.done`
 * carrying usage; it stays open until the client closes. Plain HTTP requests get 404.
 * Also a raw client (`wsHandshake`) that reads what a session delivered.
 */
import * as crypto from 'crypto';
import * as http from 'http';
import * as net from 'net';
import { AddressInfo } from 'net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC11B85';
export const DELTA_TEXT = 'The quick brown fox jumps over the lazy dog. '; // 45 characters a frame

export interface WsUpstream {
  port: number;
  /** Upgrade requests that reached it. */
  sessions: number;
  close(): Promise<void>;
}

/** One unmasked server text frame. */
export function textFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0x81, n]) : Buffer.from([0x81, 126, n >> 8, n & 0xff]);
  return Buffer.concat([head, payload]);
}

export async function startWsUpstream(deltas = 10): Promise<WsUpstream> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => {
    res.writeHead(404).end();
  });
  const up: WsUpstream = { port: 0, sessions: 0, close: () => Promise.resolve() };
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    up.sessions++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const accept = crypto
      .createHash('sha1')
      .update(String(req.headers['sec-websocket-key']) + GUID)
      .digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    for (let i = 0; i < deltas; i++) socket.write(textFrame(JSON.stringify({ type: 'response.text.delta', delta: DELTA_TEXT })));
    if (req.headers['x-ws-done'] === '1') {
      socket.write(textFrame(JSON.stringify({ type: 'response.done', response: { usage: { input_tokens: 200, output_tokens: 300, total_tokens: 500 } } })));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  up.port = (server.address() as AddressInfo).port;
  up.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return up;
}

export interface WsResult {
  /** The status line's code (0 if none arrived). */
  status: number;
  head: string;
  /** What followed the head: a local reply's body, or the session's frames. */
  rest: Buffer;
}

/**
 * Opens a WebSocket session through `port` (raw HTTP/1.1), reads for `readMs` (or until the
 * server closes) and closes it, as a client that leaves before any response.done would.
 */
export function wsHandshake(port: number, host: string, path: string, headers: Record<string, string> = {}, readMs = 500): Promise<WsResult> {
  return new Promise((resolve) => {
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    const s = net.connect(port, '127.0.0.1', () =>
      s.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`,
      ),
    );
    const chunks: Buffer[] = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      const head = end < 0 ? all.toString('latin1') : all.subarray(0, end).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(head);
      resolve({ status: m ? Number(m[1]) : 0, head, rest: end < 0 ? Buffer.alloc(0) : all.subarray(end + 4) });
    };
    const timer = setTimeout(finish, readMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', finish);
    s.on('error', finish);
  });
}

/** The text of the unmasked text frames in `b` (a session's server side). */
export function framesText(b: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i + 2 <= b.length) {
    let n = b[i + 1] & 0x7f;
    let at = i + 2;
    if (n === 126) {
      if (at + 2 > b.length) break;
      n = b.readUInt16BE(at);
      at += 2;
    }
    if (at + n > b.length) break;
    if ((b[i] & 0x0f) === 1) out.push(b.subarray(at, at + n).toString('utf8'));
    i = at + n;
  }
  return out;
}
