/**
 * A stand-in rate-limit service that answers only with the reference protocol's exact shapes
 * (the vendor's Go service): `{"allow":true,"description":"ok"}`, `{"allow":false,"description":
 * "<key> is being rate-limited"}`, an empty 200 on update. It records every call, so tests can
 * check what the plugin sends, and can be made slow or failing.
 */
import * as http from 'http';
import { AddressInfo } from 'net';

export interface StandinCall {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Standin {
  port: number;
  calls: StandinCall[];
  /** Keys answered `allow: false`. */
  limited: Set<string>;
  /** Delay before each answer, in ms. */
  delayMs: number;
  /** Status for check calls (200 = protocol answer). */
  checkStatus: number;
  close(): Promise<void>;
}

export function startStandin(): Promise<Standin> {
  const state = { calls: [] as StandinCall[], limited: new Set<string>(), delayMs: 0, checkStatus: 200 };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const call = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
    state.calls.push(call);
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
    if (res.destroyed) return;
    const url = new URL(call.path, 'http://x');
    if (req.method === 'GET' && url.pathname === '/ratelimit') {
      if (state.checkStatus !== 200) {
        res.writeHead(state.checkStatus).end();
        return;
      }
      let keys: string[];
      try {
        keys = JSON.parse(url.searchParams.get('ratelimit_keys') ?? '[]');
      } catch {
        keys = []; // the reference allows a malformed list
      }
      const hit = keys.find((k) => state.limited.has(k));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(hit === undefined ? { allow: true, description: 'ok' } : { allow: false, description: `${hit} is being rate-limited` }));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/update_ratelimit_record') {
      try {
        JSON.parse(call.body);
      } catch {
        res.writeHead(400).end();
        return;
      }
      res.writeHead(200).end();
      return;
    }
    res.writeHead(404).end();
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const s: Standin = Object.assign(state, {
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((r) => {
            server.closeAllConnections();
            server.close(() => r());
          }),
      });
      resolve(s);
    });
  });
}
