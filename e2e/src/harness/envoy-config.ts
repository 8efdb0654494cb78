/**
 * The one Envoy bootstrap used everywhere: e2e tests, `make demo`/`make up`, benchmarks and
 * (rendered with container host names) docker-compose. Every request goes to the LLM upstream;
 * the Wasm filter decides which ones are rate-limited, as an Istio sidecar would.
 */
export const RLS_SERVICE = 'asm-llm-token-rate-limit-example.default.svc.cluster.local';
export const RLS_PORT = 80;

export interface Endpoint {
  host: string;
  port: number;
  /** Originate TLS to this endpoint (a real LLM API over https), with SNI and Host set to `host`. */
  tls?: boolean;
}

export interface EnvoyConfigOptions {
  listen: Endpoint;
  admin: Endpoint;
  llm: Endpoint;
  /** Where the rate-limit service really listens (reached through the Istio-style cluster name). */
  rateLimitService: Endpoint;
  /** Path of plugin.wasm as Envoy sees it; omit for a plain Envoy without the plugin (baseline). */
  wasmPath?: string;
  /** The plugin's configuration object (the WasmPlugin's pluginConfig). */
  pluginConfig?: unknown;
  /** Other HTTP filters, placed before the plugin (e.g. the Istio manifests' Lua filter in its test). */
  httpFilters?: object[];
  /**
   * Scope the plugin in Envoy: only requests for these hosts enter the Wasm filter; the catch-all
   * virtual host disables it (route FilterConfig.disabled), so other requests never reach the VM.
   */
  pluginOnlyForHosts?: string[];
}

const WASM_FILTER = 'envoy.filters.http.wasm';
export const LLM_ROUTE = 'llm_route';
export const LLM_CLUSTER = 'llm_upstream';
/** The listener clients send to (admin /listeners names its port when it was bound to port 0). */
export const LISTENER = 'llm_egress';

function cluster(name: string, ep: Endpoint) {
  const tls = ep.tls
    ? {
        transport_socket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext', sni: ep.host },
        },
      }
    : {};
  return {
    name,
    type: 'STRICT_DNS',
    dns_lookup_family: 'V4_ONLY',
    connect_timeout: '1s',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: ep.host, port_value: ep.port } } } }] }],
    },
    ...tls,
  };
}

function virtualHosts(o: EnvoyConfigOptions): object[] {
  // Named, so that match rules can use the route a request took (xds.route_name) instead of its Host.
  const routes = [
    { name: LLM_ROUTE, match: { prefix: '/' }, route: { cluster: LLM_CLUSTER, timeout: '120s', ...(o.llm.tls ? { host_rewrite_literal: o.llm.host } : {}) } },
  ];
  const hosts = o.pluginOnlyForHosts;
  if (!hosts?.length) return [{ name: 'all', domains: ['*'], routes }];
  return [
    { name: 'llm', domains: hosts.flatMap((h) => [h, `${h}:*`]), routes },
    {
      name: 'all',
      domains: ['*'],
      routes,
      typed_per_filter_config: { [WASM_FILTER]: { '@type': 'type.googleapis.com/envoy.config.route.v3.FilterConfig', disabled: true } },
    },
  ];
}

export function envoyConfig(o: EnvoyConfigOptions): object {
  const filters: object[] = [...(o.httpFilters ?? [])];
  if (o.wasmPath) {
    filters.push({
      name: WASM_FILTER,
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm',
        config: {
          name: 'llm-token-ratelimit',
          // Istio leaves root_id empty when the WasmPlugin has no pluginName: do the same.
          root_id: '',
          configuration: {
            '@type': 'type.googleapis.com/google.protobuf.StringValue',
            value: JSON.stringify(o.pluginConfig ?? {}),
          },
          vm_config: {
            vm_id: 'llm-token-ratelimit',
            runtime: 'envoy.wasm.runtime.v8',
            code: { local: { filename: o.wasmPath } },
          },
          // Like the WasmPlugin's FAIL_OPEN: a crashed plugin lets traffic through.
          // (failure_policy replaces the deprecated fail_open.)
          failure_policy: 'FAIL_OPEN',
        },
      },
    });
  }
  filters.push({ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } });

  return {
    admin: { address: { socket_address: { address: o.admin.host, port_value: o.admin.port } } },
    static_resources: {
      listeners: [
        {
          name: LISTENER,
          address: { socket_address: { address: o.listen.host, port_value: o.listen.port } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'llm_egress',
                    route_config: {
                      name: 'llm',
                      virtual_hosts: virtualHosts(o),
                    },
                    http_filters: filters,
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters: [
        cluster(LLM_CLUSTER, o.llm),
        // The name an Istio sidecar gives the service's cluster: the seed's pluginConfig works unchanged.
        cluster(`outbound|${RLS_PORT}||${RLS_SERVICE}`, o.rateLimitService),
      ],
    },
  };
}
