/**
 * How the harness and `make up` learn the ports of what they start: each process binds port 0
 * and reports the port it got. No number is picked in advance, so two processes can never be
 * handed the same one, and no other process can take it in between.
 */
import * as fs from 'fs';
import { request } from './http';

/**
 * The first JSON log line with msg "listening" (the service: port and admin_port; the mock LLM:
 * port), or undefined if there is none yet.
 */
export function listeningLine(output: string): Record<string, unknown> | undefined {
  for (const line of output.split('\n')) {
    if (!line.includes('"listening"')) continue;
    try {
      const rec = JSON.parse(line);
      if (rec.msg === 'listening' && typeof rec.port === 'number') return rec;
    } catch {
      /* not JSON (or not whole yet): keep looking */
    }
  }
  return undefined;
}

/** Envoy's admin port, from the file its --admin-address-path names (written once the admin listener is bound), or undefined if not there yet. */
export function envoyAdminPort(addressFile: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(addressFile, 'utf8').trim();
  } catch {
    return undefined;
  }
  const m = /:(\d+)$/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The port Envoy's listener `name` is bound to (admin /listeners), or undefined if it is not bound yet. */
export async function envoyListenerPort(adminPort: number, name: string): Promise<number | undefined> {
  const r = await request(adminPort, { path: '/listeners?format=json', timeoutMs: 1000 });
  if (r.status !== 200) return undefined;
  const statuses: { name: string; local_address?: { socket_address?: { port_value?: number } } }[] = JSON.parse(r.body).listener_statuses ?? [];
  const port = statuses.find((s) => s.name === name)?.local_address?.socket_address?.port_value;
  return port ? port : undefined;
}
