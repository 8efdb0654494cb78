/**
 * No Docker engine runs here, so docker-compose is checked for consistency with the local stack:
 * same Envoy config (rendered by the same code), same plugin config and rules, matching ports.
 */
import * as fs from 'fs';
import * as path from 'path';
import { parse } from 'yaml';
import { COMPOSE, COMPOSE_ENVOY_FILE, renderComposeEnvoyConfig } from '../src/compose-config';
import { REPO, PLUGIN_CONFIG_FILE, readJson } from '../src/harness/paths';
import { RLS_PORT, RLS_SERVICE } from '../src/harness/envoy-config';

const compose = parse(fs.readFileSync(path.join(REPO, 'e2e/docker-compose.yml'), 'utf8'));
const envoyYaml = parse(fs.readFileSync(COMPOSE_ENVOY_FILE, 'utf8'));

function cluster(name: string) {
  const c = envoyYaml.static_resources.clusters.find((x: { name: string }) => x.name === name);
  if (!c) throw new Error(`no cluster ${name}`);
  return c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
}

test('the committed compose Envoy config is exactly what the shared renderer produces', () => {
  expect(fs.readFileSync(COMPOSE_ENVOY_FILE, 'utf8')).toBe(renderComposeEnvoyConfig());
});

test('Envoy mounts that config and the built plugin at the paths the config names', () => {
  const vols: string[] = compose.services.envoy.volumes;
  expect(vols).toContain('./envoy/envoy.compose.yaml:/etc/envoy/envoy.yaml:ro');
  expect(vols).toContain(`../plugin/build/plugin.wasm:${COMPOSE.wasmPath}:ro`);
  const wasm = envoyYaml.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.config;
  expect(wasm.vm_config.code.local.filename).toBe(COMPOSE.wasmPath);
  expect(wasm.vm_config.runtime).toBe('envoy.wasm.runtime.v8');
  expect(JSON.parse(wasm.configuration.value)).toEqual(readJson(PLUGIN_CONFIG_FILE));
});

test('ports and host names agree between compose services and the Envoy clusters', () => {
  expect(compose.services.envoy.ports).toContain(`${COMPOSE.envoyPort}:${COMPOSE.envoyPort}`);
  expect(envoyYaml.static_resources.listeners[0].address.socket_address.port_value).toBe(COMPOSE.envoyPort);
  const rls = cluster(`outbound|${RLS_PORT}||${RLS_SERVICE}`);
  expect(compose.services[rls.address]).toBeDefined();
  expect(compose.services[rls.address].environment.PORT).toBe(String(rls.port_value));
  const llm = cluster('llm_upstream');
  expect(compose.services[llm.address].command).toEqual(['node', 'dist/mock-llm.js', String(llm.port_value), '0.0.0.0']);
});

test('the service gets the same rules file as the local stack and Redis by the compose name', () => {
  const svc = compose.services.ratelimit;
  expect(svc.volumes).toContain(`./config/rate-limit-config.json:${svc.environment.RATE_LIMIT_CONFIG_FILE}:ro`);
  const [host, port] = svc.environment.REDIS_ADDRESS.split(':');
  expect(compose.services[host]).toBeDefined();
  expect(port).toBe('6379');
  expect(fs.existsSync(path.join(REPO, svc.build.dockerfile))).toBe(true);
});
