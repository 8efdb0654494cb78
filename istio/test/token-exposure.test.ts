// Why the plugin runs in a gateway (docs/security.md, "In a mesh: where the plugin runs"): a
// real Envoy running the real plugin with wasmplugin.yaml's pluginConfig, handed over the way
// istiod hands it to a proxy, returns that configuration, service token included, from its
// admin endpoint GET /config_dump. In a sidecar that endpoint is on the application's localhost
// (port 15000). manifests.test.ts checks that the only proxy the WasmPlugin selects is the
// gateway's, which has no application container.
import * as fs from 'fs';
import * as path from 'path';
import { find, loadAll, REPO_DIR } from './lib/manifests';
import { recordingUpstream, startSidecar, Upstream } from './lib/sidecar';

const WASM = path.join(REPO_DIR, 'plugin/build/plugin.wasm');

/** The HTTP filter istiod makes of a WasmPlugin: pluginConfig as JSON text in a StringValue. */
function wasmFilter(pluginConfig: unknown): object {
  return {
    name: 'envoy.filters.http.wasm',
    typed_config: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm',
      config: {
        name: 'llm-egress.llm-token-ratelimit',
        root_id: '',
        configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: JSON.stringify(pluginConfig) },
        vm_config: { vm_id: 'llm-token-ratelimit', runtime: 'envoy.wasm.runtime.v8', code: { local: { filename: WASM } } },
        failure_policy: 'FAIL_OPEN',
      },
    },
  };
}

/** Every object inside `x` (at any depth) for which `pick` is true. */
function findAll(x: any, pick: (o: any) => boolean, out: any[] = []): any[] {
  if (Array.isArray(x)) x.forEach((e) => findAll(e, pick, out));
  else if (x && typeof x === 'object') {
    if (pick(x)) out.push(x);
    Object.values(x).forEach((e) => findAll(e, pick, out));
  }
  return out;
}

let envoy: Awaited<ReturnType<typeof startSidecar>> | undefined;
let upstream: Upstream | undefined;

afterAll(async () => {
  await envoy?.stop();
  await upstream?.close();
});

test('a proxy that runs the plugin returns the service token to whoever reaches its admin port (/config_dump)', async () => {
  if (!fs.existsSync(WASM)) throw new Error(`${WASM} not found: run \`make plugin\` from the repository root`);
  const { pluginConfig } = find(loadAll(), 'WasmPlugin', 'llm-token-ratelimit').spec;
  const token: string = pluginConfig.rateLimitService.token;
  expect(token.length).toBeGreaterThanOrEqual(16);
  upstream = await recordingUpstream();
  envoy = await startSidecar([wasmFilter(pluginConfig)], upstream.port);
  // The module is loaded and configured (a configuration it refused would make the VM fail).
  const stats = await (await fetch(`http://127.0.0.1:${envoy.adminPort}/stats?filter=wasm`)).text();
  expect(stats).toMatch(/^wasm\.envoy\.wasm\.runtime\.v8\.active: [1-9]/m);
  expect(envoy.output()).not.toMatch(/invalid pluginConfig/);

  const res = await fetch(`http://127.0.0.1:${envoy.adminPort}/config_dump`);
  expect(res.status).toBe(200);
  // The filter appears in the bootstrap and in the listener it runs in: each copy has the token.
  const filters = findAll(await res.json(), (o) => o.name === 'envoy.filters.http.wasm' && o.typed_config);
  expect(filters.length).toBeGreaterThan(0);
  for (const f of filters) expect(JSON.parse(f.typed_config.config.configuration.value).rateLimitService.token).toBe(token);
});
