// A stand-in for a sidecar's outbound HTTP listener, in a real Envoy: the given HTTP filters
// (e.g. an EnvoyFilter's patch) run before the router, and every request goes to one upstream.
import * as http from 'http';
import type { AddressInfo } from 'net';
import { startEnvoy, EnvoyHandle } from '../../../test-support/envoy';

export interface Recorded {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface Upstream {
  port: number;
  /** Every request it received, in order. */
  requests: Recorded[];
  close(): Promise<void>;
}

/** An HTTP server on a port of its own that records each request and answers 200 `{}`. */
export async function recordingUpstream(): Promise<Upstream> {
  const requests: Recorded[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const LISTENER = 'outbound';

/** Envoy with `httpFilters` then the router on one listener, sending everything to 127.0.0.1:`upstreamPort`. */
export async function startSidecar(httpFilters: object[], upstreamPort: number): Promise<EnvoyHandle & { port: number }> {
  const envoy = await startEnvoy({
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 0 } } },
    static_resources: {
      listeners: [
        {
          name: LISTENER,
          address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: LISTENER,
                    route_config: { virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'upstream' } }] }] },
                    http_filters: [
                      ...httpFilters,
                      { name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        {
          name: 'upstream',
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: {
            cluster_name: 'upstream',
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: upstreamPort } } } }] }],
          },
        },
      ],
    },
  });
  return { ...envoy, port: envoy.ports[LISTENER] };
}
